"""LoRA semantics shared by validation, merging and composing.

One place decides how a PEFT ``adapter_config.json`` is read, how adapter tensor names
map to base-model weights and what scale each module gets, so the validator and the
merger cannot drift apart. PEFT is the reference: names and pattern matching follow
``peft.utils.other.get_pattern_key`` and PEFT's saved state-dict layout.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

#: PEFT saves adapter tensors under this prefix (the adapter name itself is dropped).
PEFT_PREFIX = "base_model.model."

MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_DEPTH = 8

#: Adapter tensor suffix -> the LoRA part it holds.
_PART_SUFFIXES: dict[str, str] = {
    ".lora_A.weight": "A",
    ".lora_B.weight": "B",
    ".lora_embedding_A": "A",
    ".lora_embedding_B": "B",
    ".lora_magnitude_vector": "magnitude",
    ".lora_magnitude_vector.weight": "magnitude",
}


class AdapterConfigError(ValueError):
    """``adapter_config.json`` cannot be used. ``code`` is stable for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LoraConfig:
    """The parts of a PEFT LoRA config that decide shapes and merge arithmetic."""

    r: int
    lora_alpha: float
    target_modules: tuple[str, ...] | str | None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    modules_to_save: tuple[str, ...] = ()
    bias: str = "none"
    use_dora: bool = False
    base_model_name_or_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def rank_for(self, module: str) -> int:
        key = pattern_key(self.rank_pattern, module)
        return int(self.rank_pattern[key]) if key is not None else self.r

    def alpha_for(self, module: str) -> float:
        key = pattern_key(self.alpha_pattern, module)
        return float(self.alpha_pattern[key]) if key is not None else self.lora_alpha

    def scale_for(self, module: str) -> float:
        """alpha/r, or alpha/sqrt(r) with rsLoRA, exactly as PEFT's ``LoraLayer``."""
        r = self.rank_for(module)
        alpha = self.alpha_for(module)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def pattern_key(patterns: Collection[str], module: str) -> str | None:
    """The first pattern that matches ``module`` the way PEFT's ``get_pattern_key`` does."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, iteratively: recursion could overflow on hostile input."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, level)
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_CONFIG_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_adapter_config(data: bytes) -> LoraConfig:
    """Parse ``adapter_config.json`` with size and depth limits; refuse what we cannot honour."""
    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterConfigError(
            "config_too_large",
            f"adapter_config.json is {len(data)} bytes; the limit is {MAX_CONFIG_BYTES}.",
        )
    try:
        raw = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise AdapterConfigError(
            "config_not_json", f"adapter_config.json is not valid JSON ({exc})."
        ) from exc
    if not isinstance(raw, dict):
        raise AdapterConfigError("config_not_json", "adapter_config.json must be a JSON object.")
    if _depth(raw) > MAX_CONFIG_DEPTH:
        raise AdapterConfigError(
            "config_too_deep", f"adapter_config.json nests deeper than {MAX_CONFIG_DEPTH} levels."
        )
    peft_type = raw.get("peft_type")
    if peft_type != "LORA":
        raise AdapterConfigError(
            "unsupported_peft_type",
            f"peft_type is {peft_type!r}; Strata checks and merges LoRA adapters only "
            "(peft_type 'LORA').",
        )
    r = raw.get("r", 8)
    if type(r) is not int or r <= 0:
        raise AdapterConfigError("bad_rank", f"r must be a positive integer, not {r!r}.")
    alpha = raw.get("lora_alpha", 8)
    if not _finite_number(alpha):
        raise AdapterConfigError("bad_alpha", f"lora_alpha must be a number, not {alpha!r:.80}.")

    target = raw.get("target_modules")
    target_modules: tuple[str, ...] | str | None
    if target is None or isinstance(target, str):
        target_modules = target
    elif isinstance(target, list) and all(isinstance(t, str) for t in target):
        target_modules = tuple(target)
    else:
        raise AdapterConfigError(
            "bad_target_modules", "target_modules must be a string (regex) or a list of names."
        )

    rank_pattern = _pattern_map(raw, "rank_pattern", positive_int=True)
    alpha_pattern = _pattern_map(raw, "alpha_pattern", positive_int=False)

    to_save = raw.get("modules_to_save") or []
    if not isinstance(to_save, list) or not all(isinstance(m, str) for m in to_save):
        raise AdapterConfigError("bad_modules_to_save", "modules_to_save must be a list of names.")
    bias = raw.get("bias", "none")
    if bias not in ("none", "all", "lora_only"):
        raise AdapterConfigError("bad_bias", f"bias must be none, all or lora_only, not {bias!r}.")
    base = raw.get("base_model_name_or_path")
    return LoraConfig(
        r=r,
        lora_alpha=float(alpha),
        target_modules=target_modules,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
        use_rslora=bool(raw.get("use_rslora", False)),
        fan_in_fan_out=bool(raw.get("fan_in_fan_out", False)),
        modules_to_save=tuple(to_save),
        bias=bias,
        use_dora=bool(raw.get("use_dora", False)),
        base_model_name_or_path=base if isinstance(base, str) else None,
        raw=raw,
    )


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; JSON does not, and they would poison the report.
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _finite_number(value: Any) -> bool:
    """An int or float usable as a float: not bool, not NaN/inf, not an int too big for float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _pattern_map(raw: dict[str, Any], key: str, *, positive_int: bool) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise AdapterConfigError(f"bad_{key}", f"{key} must be an object.")
    for pattern, number in value.items():
        ok = type(number) is int and number > 0 if positive_int else _finite_number(number)
        if not ok:
            raise AdapterConfigError(
                f"bad_{key}", f"{key}[{pattern!r:.80}] = {number!r:.80} is not valid."
            )
        try:
            # Compile the form pattern_key() uses: some keys compile alone but not wrapped
            # (inline global flags), and would otherwise fail later, at lookup time.
            re.compile(rf"(.*\.)?({pattern})$")
        except (re.error, RecursionError, OverflowError) as exc:
            # Deep nesting raises RecursionError and huge repeat counts OverflowError.
            raise AdapterConfigError(
                f"bad_{key}", f"{key} key {pattern!r:.80} is not a valid regex ({exc})."
            ) from exc
    return dict(value)


@dataclass
class LoraModule:
    """The tensors of one adapted module, keyed by part (``A``, ``B``, ``magnitude``)."""

    module: str
    tensors: dict[str, str] = field(default_factory=dict)
    embedding: bool = False


def split_adapter_key(name: str) -> tuple[str, str] | None:
    """``base_model.model.x.q_proj.lora_A.weight`` -> ``("x.q_proj", "A")``; None if not LoRA."""
    for suffix, part in _PART_SUFFIXES.items():
        if name.endswith(suffix):
            module = name[: -len(suffix)]
            return module.removeprefix(PEFT_PREFIX), part
    return None


def group_lora_tensors(names: Iterable[str]) -> tuple[dict[str, LoraModule], list[str]]:
    """Group adapter tensor names by module; return the modules and the names left over."""
    modules: dict[str, LoraModule] = {}
    rest: list[str] = []
    for name in names:
        split = split_adapter_key(name)
        if split is None:
            rest.append(name)
            continue
        module, part = split
        entry = modules.setdefault(module, LoraModule(module))
        entry.tensors[part] = name
        entry.embedding = entry.embedding or ".lora_embedding_" in name
    return modules, rest


def base_weight_name(module: str, base_names: Collection[str]) -> str | None:
    """The base tensor a LoRA module adapts.

    Checkpoints do not always agree with the PEFT module path on a leading prefix
    (a ``BertModel`` checkpoint may or may not carry ``bert.``), so after an exact
    match we accept exactly one base weight whose name ends with the module path.
    """
    exact = f"{module}.weight"
    if exact in base_names:
        return exact
    suffix = f".{exact}"
    candidates = [n for n in base_names if n.endswith(suffix)]
    if len(candidates) == 1:
        return candidates[0]
    # The other direction: the adapter carries a prefix (``bert.``) the checkpoint lacks.
    parts = module.split(".")
    for i in range(1, len(parts)):
        shorter = ".".join(parts[i:]) + ".weight"
        if shorter in base_names:
            return shorter
    return None
