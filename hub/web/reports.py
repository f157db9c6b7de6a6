"""Turn a version's report JSON into what pages show: findings, facts, compatibility.

Reports come from workers (``workers.findings.Report.to_json`` for adapters, the manifest
handler for base models). Everything here renders only what is present and tolerates
missing or oddly typed values: a report is data, not a contract the page may crash on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
MAX_MODULE_ROWS = 400


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    tensor: str = ""
    module: str = ""


@dataclass(frozen=True)
class Fact:
    label: str
    value: str
    mono: bool = False


@dataclass(frozen=True)
class Compat:
    engine: str
    level: str  # ok | warn | bad
    text: str


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def facts_of(report: Any) -> dict[str, Any]:
    return _dict(_dict(report).get("facts"))


def findings_of(report: Any) -> list[Finding]:
    out = []
    for raw in _dict(report).get("findings") or []:
        if not isinstance(raw, dict):
            continue
        severity = str(raw.get("severity") or "info")
        out.append(
            Finding(
                code=str(raw.get("code") or ""),
                severity=severity if severity in _SEVERITY_ORDER else "info",
                message=str(raw.get("message") or ""),
                tensor=str(raw.get("tensor") or ""),
                module=str(raw.get("module") or ""),
            )
        )
    return sorted(out, key=lambda f: _SEVERITY_ORDER[f.severity])


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    counts = {"error": 0, "warning": 0, "info": 0}
    for f in findings:
        counts[f.severity] += 1
    return counts


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "—"
    return str(value)


def human_bytes(n: Any) -> str:
    try:
        size = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def human_count(n: Any) -> str:
    try:
        value = float(n)
    except (TypeError, ValueError):
        return str(n)
    if abs(value) < 10_000:
        return f"{value:,.0f}"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            short = f"{value / scale:.1f}".removesuffix(".0")
            return f"{short}{unit}"
    return f"{value:,.0f}"


# (key, label, formatter, monospace)
_ADAPTER_FACTS: list[tuple[str, str, Any, bool]] = [
    ("layout", "Layout", _text, False),
    ("max_rank", "Rank", _text, False),
    ("ranks", "Ranks by module", _text, False),
    ("lora_alpha", "Alpha", _text, False),
    ("target_modules", "Target modules", _text, True),
    ("targeted_module_names", "Modules with LoRA", _text, True),
    ("lora_module_count", "LoRA modules", _text, False),
    ("dtypes", "Data types", _text, True),
    ("tensor_count", "Tensors", _text, False),
    ("tensor_bytes", "Weights size", human_bytes, False),
    ("use_dora", "DoRA", _text, False),
    ("use_rslora", "rsLoRA", _text, False),
    ("bias", "Bias", _text, True),
    ("modules_to_save", "Modules saved in full", _text, True),
    ("numeric_scan", "Numbers scanned", _text, False),
    ("zero_modules", "All-zero modules", _text, False),
    ("base_checked", "Checked against base", _text, False),
]
_BASE_FACTS: list[tuple[str, str, Any, bool]] = [
    ("architecture", "Architecture", _text, True),
    ("model_type", "Model type", _text, True),
    ("parameters", "Parameters", human_count, False),
    ("dtype", "Data type", _text, True),
    ("dtypes", "Tensors by type", _text, True),
    ("tensors", "Tensors", _text, False),
    ("shards", "Weight files", _text, False),
    ("quantized", "Quantized", _text, False),
]


def fact_rows(kind: str, facts: dict[str, Any]) -> list[Fact]:
    table = _BASE_FACTS if kind == "base_model" else _ADAPTER_FACTS
    rows = []
    for key, label, fmt, mono in table:
        value = facts.get(key)
        if value is None or value == [] or value == {}:
            continue
        if key == "max_rank" and facts.get("r") not in (None, value):
            rows.append(Fact(label, f"{value} (config r = {facts['r']})", mono))
            continue
        if key == "dtypes" and isinstance(value, dict):
            value = {k: human_count(v) for k, v in value.items()}
        rows.append(Fact(label, fmt(value), mono))
    return rows


def compatibility(facts: dict[str, Any], findings: list[Finding]) -> list[Compat]:
    """What engines make of this adapter, from the facts the validator recorded."""
    if not facts:
        return []
    codes = {f.code for f in findings}
    out: list[Compat] = []
    rank = facts.get("max_rank")
    default = facts.get("vllm_default_max_lora_rank") or 16
    if "rank_above_vllm_max" in codes:
        out.append(Compat("vLLM", "bad", f"Rank {rank} is above the largest rank vLLM serves."))
    elif isinstance(rank, int):
        if facts.get("fits_vllm_default_rank", rank <= default):
            out.append(
                Compat("vLLM", "ok", f"Rank {rank} fits the default max_lora_rank {default}.")
            )
        else:
            out.append(
                Compat("vLLM", "warn", f"Rank {rank}: start vLLM with --max-lora-rank {rank}.")
            )
    if facts.get("use_dora"):
        out.append(Compat("vLLM", "bad", "DoRA adapters are not served by vLLM."))
    if facts.get("modules_to_save"):
        out.append(Compat("vLLM", "bad", "Full module copies (modules_to_save) are not served."))
    if facts.get("lora_on_embedding"):
        out.append(Compat("Serving engines", "warn", "LoRA on an embedding layer."))
    if facts.get("lora_on_lm_head"):
        out.append(Compat("Serving engines", "warn", "LoRA on the output head (lm_head)."))
    if facts.get("layout") == "peft" and "error" not in {f.severity for f in findings}:
        out.append(Compat("PEFT", "ok", "Loads with PeftModel.from_pretrained."))
    return out


@dataclass(frozen=True)
class ModuleRow:
    module: str
    rank: Any
    alpha: Any
    delta_norm: Any
    zero: bool


def module_stats(report: Any) -> tuple[list[ModuleRow], int]:
    """Per-module statistics (bounded), and how many there are in all."""
    raw = _dict(report).get("module_stats") or []
    if not isinstance(raw, list):
        return [], 0
    rows = []
    for item in raw[:MAX_MODULE_ROWS]:
        if isinstance(item, dict) and item.get("module"):
            rows.append(
                ModuleRow(
                    module=str(item["module"]),
                    rank=item.get("rank"),
                    alpha=item.get("alpha"),
                    delta_norm=item.get("delta_norm"),
                    zero=bool(item.get("zero")),
                )
            )
    return rows, len(raw)
