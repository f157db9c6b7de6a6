"""Compose a stack, or a weighted set of sibling adapters, into one PEFT LoRA adapter.

Every input module contributes w_i * s_i * B_i @ A_i (s_i its LoRA scale, w_i its weight;
1 for a stack). Two methods:

* ``exact``: rank concatenation. A' stacks the A_i, B' places the w_i * s_i * B_i side
  by side, so B' @ A' is the summed delta exactly; each module gets rank sum(r_i) and
  alpha = rank (scale 1) through rank_pattern/alpha_pattern.
* ``svd``: the best rank-k approximation of the summed delta, computed from the factors
  (QR of both, SVD of the small core) without forming the out x in delta. The relative
  Frobenius error of each module and of the whole adapter is reported.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from workers.lora import PEFT_PREFIX
from workers.merge import (
    AdapterFiles,
    LoadedAdapter,
    LoraFactors,
    MergeError,
    default_device,
    load_adapter,
    normalize_dtype,
)
from workers.safetensors_io import torch_dtype
from workers.safetensors_writer import OutputFile, write_bytes, write_safetensors

if TYPE_CHECKING:
    import torch

Method = Literal["exact", "svd"]
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


class ComposeError(MergeError):
    """The inputs cannot be composed (a :class:`MergeError`, so one handler catches both)."""


@dataclass(frozen=True)
class ComposedModule:
    module: str
    a: torch.Tensor
    b: torch.Tensor
    embedding: bool
    #: ||delta - B' @ A'||_F / ||delta||_F (0 for exact, and for an all-zero delta).
    error: float
    #: Frobenius energies (sum of squared singular values) kept out of the total.
    discarded_energy: float
    total_energy: float

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass(frozen=True)
class ComposeResult:
    """The new adapter's files, its config, the recipe and the approximation errors."""

    files: list[OutputFile]
    config: dict[str, Any]
    recipe: dict[str, Any]
    ranks: dict[str, int]
    module_errors: dict[str, float]
    #: Relative Frobenius error of all modules' deltas taken together.
    total_error: float


def _gather(
    adapters: Sequence[LoadedAdapter], weights: Sequence[float]
) -> dict[str, list[tuple[float, LoraFactors]]]:
    """Module -> (weight, factors) for every adapter that has it, checking they agree."""
    modules: dict[str, list[tuple[float, LoraFactors]]] = {}
    for adapter, weight in zip(adapters, weights, strict=True):
        if adapter.saved:
            raise ComposeError(
                "saved_modules_unsupported",
                f"{adapter.name} saves whole tensors ({next(iter(adapter.saved))}, from "
                "modules_to_save, bias or embedding layers); a LoRA cannot express a "
                "weighted mix of those. Merge the stack instead.",
            )
        for module, factors in adapter.modules.items():
            if factors.bias is not None:
                raise ComposeError(
                    "lora_bias_unsupported",
                    f"{adapter.name}: {module} has a LoRA bias (lora_bias); composing those "
                    "is not supported yet.",
                )
            modules.setdefault(module, []).append((weight, factors))
    for module, parts in modules.items():
        _, first = parts[0]
        for _, other in parts[1:]:
            if (
                other.embedding != first.embedding
                or other.a.shape[1] != first.a.shape[1]
                or other.b.shape[0] != first.b.shape[0]
            ):
                raise ComposeError(
                    "incompatible_adapters",
                    f"{module} has different layer types or shapes in different adapters; "
                    "they were trained on different bases.",
                )
    return modules


def _concat(
    parts: Sequence[tuple[float, LoraFactors]], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """B' = [w_i s_i B_i ...], A' = [A_i; ...]: B' @ A' is the weighted summed delta."""
    import torch

    a = torch.cat([f.a.to(device, dtype) for _, f in parts], dim=0)
    b = torch.cat([f.b.to(device, dtype) * (w * f.scale) for w, f in parts], dim=1)
    return a, b


def _truncate(
    a: torch.Tensor, b: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Best rank-``rank`` factors of B @ A via QR + SVD of the small core (Eckart-Young).

    B = Qb Rb and A^T = Qa Ra give B @ A = Qb (Rb Ra^T) Qa^T, so the singular values of
    the r' x r' core are those of the delta. The kept singular values are split evenly
    (sqrt on each side) so neither factor carries the whole scale.
    """
    import torch

    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    k = min(rank, int(s.shape[0]))
    root = s[:k].sqrt()
    new_b = (qb @ u[:, :k]) * root
    new_a = root[:, None] * (vh[:k] @ qa.T)
    energy = s.square()
    return new_a, new_b, float(energy[k:].sum()), float(energy.sum())


def _compose_module(
    module: str,
    parts: Sequence[tuple[float, LoraFactors]],
    method: Method,
    rank: int | None,
    device: torch.device,
) -> ComposedModule:
    import torch

    embedding = parts[0][1].embedding
    if method == "exact":
        a, b = _concat(parts, device, torch.float32)
        return ComposedModule(module, a.cpu(), b.cpu(), embedding, 0.0, 0.0, 0.0)
    assert rank is not None
    # fp64 for the decomposition: the factors are small, and the reported error should
    # reflect truncation, not round-off.
    a, b = _concat(parts, device, torch.float64)
    new_a, new_b, discarded, total = _truncate(a, b, rank)
    error = math.sqrt(discarded / total) if total > 0 else 0.0
    return ComposedModule(
        module, new_a.float().cpu(), new_b.float().cpu(), embedding, error, discarded, total
    )


def _tensor_names(m: ComposedModule) -> tuple[str, str]:
    prefix = PEFT_PREFIX + m.module
    if m.embedding:
        return f"{prefix}.lora_embedding_A", f"{prefix}.lora_embedding_B"
    return f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"


def build_config(
    composed: Sequence[ComposedModule],
    adapters: Sequence[LoadedAdapter],
    base_model_name_or_path: str | None,
) -> dict[str, Any]:
    """A PEFT LoraConfig with scale 1 everywhere: alpha = rank, per module where needed.

    Patterns are anchored full module paths (escaped), so PEFT's suffix matching cannot
    pick up a different module.
    """
    import re

    ranks = {m.module: m.rank for m in composed}
    counts = Counter(ranks.values())
    default = max(counts, key=lambda r: (counts[r], r)) if counts else 1
    patterns = {re.escape(m): r for m, r in sorted(ranks.items()) if r != default}
    fan_in_fan_out = {a.config.fan_in_fan_out for a in adapters}
    task_types = {a.config.raw.get("task_type") for a in adapters}
    base = base_model_name_or_path or adapters[0].config.base_model_name_or_path
    return {
        "peft_type": "LORA",
        "task_type": task_types.pop() if len(task_types) == 1 else None,
        "base_model_name_or_path": base,
        "r": default,
        "lora_alpha": default,
        "rank_pattern": patterns,
        "alpha_pattern": dict(patterns),
        "target_modules": sorted(ranks),
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": fan_in_fan_out.pop() if len(fan_in_fan_out) == 1 else False,
        "bias": "none",
        "lora_bias": False,
        "lora_dropout": 0.0,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def compose_adapters(
    *,
    adapters: Sequence[AdapterFiles | LoadedAdapter],
    out_dir: Path,
    weights: Sequence[float] | None = None,
    method: Method = "exact",
    rank: int | None = None,
    dtype: str = "F32",
    device: str | None = None,
    base_model_name_or_path: str | None = None,
) -> ComposeResult:
    """Write one adapter equal (``exact``) or closest at ``rank`` (``svd``) to the sum of
    the weighted inputs; ``weights`` default to 1 (a stack)."""
    import torch

    if not adapters:
        raise ComposeError("empty_stack", "Nothing to compose: no adapters were given.")
    weights = [1.0] * len(adapters) if weights is None else [float(w) for w in weights]
    if len(weights) != len(adapters) or not all(math.isfinite(w) for w in weights):
        raise ComposeError("bad_weights", "Give one finite weight per adapter.")
    if method not in ("exact", "svd"):
        raise ComposeError("bad_method", f"Unknown method {method!r}; use 'exact' or 'svd'.")
    if method == "svd" and (rank is None or rank < 1):
        raise ComposeError("bad_rank", "The svd method needs a target rank of at least 1.")
    if method == "exact" and rank is not None:
        raise ComposeError(
            "bad_rank", "The exact method takes no rank: it is the sum of the input ranks."
        )
    out_code = normalize_dtype(dtype)
    assert out_code is not None
    loaded = [a if isinstance(a, LoadedAdapter) else load_adapter(a) for a in adapters]
    modules = _gather(loaded, weights)
    dev = torch.device(device or default_device())
    composed = [_compose_module(m, modules[m], method, rank, dev) for m in sorted(modules)]

    tensors: dict[str, torch.Tensor] = {}
    for m in composed:
        name_a, name_b = _tensor_names(m)
        tensors[name_a] = m.a.to(torch_dtype(out_code))
        tensors[name_b] = m.b.to(torch_dtype(out_code))
    config = build_config(composed, loaded, base_model_name_or_path)
    config_bytes = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    files = [
        write_bytes(out_dir / CONFIG_NAME, CONFIG_NAME, config_bytes),
        write_safetensors(out_dir / WEIGHTS_NAME, WEIGHTS_NAME, tensors, {"format": "pt"}),
    ]
    discarded = sum(m.discarded_energy for m in composed)
    total = sum(m.total_energy for m in composed)
    recipe = {
        "method": method,
        "rank": rank,
        "dtype": out_code,
        "inputs": [{"name": a.name, "weight": w} for a, w in zip(loaded, weights, strict=True)],
    }
    return ComposeResult(
        files=files,
        config=config,
        recipe=recipe,
        ranks={m.module: m.rank for m in composed},
        module_errors={m.module: m.error for m in composed},
        total_error=math.sqrt(discarded / total) if total > 0 else 0.0,
    )
