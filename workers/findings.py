"""What adapter validation reports: findings, per-module statistics and the report itself.

Plain dataclasses with no Django or torch dependency, so the Celery task can store
``Report.to_json()`` as-is and the web layer can render it without importing workers.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
Status = Literal["valid", "invalid"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a person should know about an upload.

    ``code`` is a stable snake_case identifier clients may branch on; ``message`` is a
    sentence saying what is wrong and what to do about it.
    """

    code: str
    severity: Severity
    message: str
    tensor: str | None = None
    module: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN/Infinity; a statistic that is not finite is reported as null.
    if value is None or not math.isfinite(value):
        return None
    return value


@dataclass(slots=True)
class ModuleStats:
    """Numbers for one LoRA module. Norms are Frobenius norms; ``delta_norm`` is of scale·B·A."""

    module: str
    rank: int
    alpha: float
    scale: float
    dtype: str
    a_max_abs: float | None = None
    b_max_abs: float | None = None
    a_norm: float | None = None
    b_norm: float | None = None
    delta_norm: float | None = None
    zero: bool | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("a_max_abs", "b_max_abs", "a_norm", "b_norm", "delta_norm", "scale", "alpha"):
            data[key] = _finite_or_none(data[key])
        return data


@dataclass(slots=True)
class Report:
    """The outcome of validating one upload. Only errors make it ``invalid``."""

    status: Status
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    module_stats: list[ModuleStats] = field(default_factory=list)
    #: adapter_config.json with ``base_model_name_or_path`` set to the hub's base id;
    #: None when the config could not be parsed.
    normalized_config: dict[str, Any] | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def normalized_config_bytes(self) -> bytes | None:
        """The normalized adapter_config.json as the bytes to store beside the weights."""
        if self.normalized_config is None:
            return None
        return (json.dumps(self.normalized_config, indent=2, sort_keys=True) + "\n").encode()

    def to_json(self) -> dict[str, Any]:
        """A JSON-serializable dict (no NaN, no tuples that matter)."""
        return {
            "status": self.status,
            "findings": [f.to_json() for f in self.findings],
            "facts": self.facts,
            "module_stats": [m.to_json() for m in self.module_stats],
            "normalized_config": self.normalized_config,
        }


class FindingCollector:
    """Collects findings, capping repeats of one code so a broken 10k-tensor file stays readable."""

    def __init__(self, max_per_code: int = 20) -> None:
        self.max_per_code = max_per_code
        self._findings: list[Finding] = []
        self._counts: Counter[str] = Counter()
        self._severity: dict[str, Severity] = {}

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        *,
        tensor: str | None = None,
        module: str | None = None,
    ) -> None:
        self._counts[code] += 1
        self._severity.setdefault(code, severity)
        if self._counts[code] <= self.max_per_code:
            self._findings.append(Finding(code, severity, message, tensor, module))

    def error(self, code: str, message: str, **where: str | None) -> None:
        self.add(code, "error", message, **where)

    def warning(self, code: str, message: str, **where: str | None) -> None:
        self.add(code, "warning", message, **where)

    def info(self, code: str, message: str, **where: str | None) -> None:
        self.add(code, "info", message, **where)

    def has_errors(self) -> bool:
        return any(s == "error" for s in self._severity.values())

    def has(self, code: str) -> bool:
        return self._counts[code] > 0

    def result(self) -> list[Finding]:
        """Findings in the order found, plus one summary per code that hit the cap."""
        out = list(self._findings)
        for code, count in self._counts.items():
            if count > self.max_per_code:
                out.append(
                    Finding(
                        code,
                        self._severity[code],
                        f"{count - self.max_per_code} more findings with code {code!r} "
                        "were left out; fix the ones listed and upload again.",
                    )
                )
        return out
