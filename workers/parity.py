"""Output parity between a merged model and the unmerged base + PEFT stack.

Recorded on every merge artifact for models small enough to load: the merge is exact
arithmetic, so a large difference means the merged files do not mean what the stack
means (wrong module mapping, wrong scale, a silently dropped adapter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ParityReport:
    #: ``logits`` for causal LMs, ``last_hidden_state`` for encoders.
    output: str
    max_abs_diff: float
    mean_abs_diff: float
    #: Largest absolute reference output, to read the differences against.
    max_abs_reference: float
    tokens: int
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load_model(model_dir: Path, dtype: torch.dtype, device: str) -> tuple[Any, str]:
    """A causal LM when the config names one, else the bare encoder (e.g. BertModel)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    causal = any(a.endswith("ForCausalLM") for a in config.architectures or ())
    cls = AutoModelForCausalLM if causal else AutoModel
    model: Any = cls.from_pretrained(model_dir, dtype=dtype)
    return model.to(device).eval(), "logits" if causal else "last_hidden_state"


def fixed_inputs(
    vocab_size: int, *, batch: int = 2, seq_len: int = 16, seed: int = 0
) -> torch.Tensor:
    """Deterministic token ids, the same on every machine for a given vocabulary size."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=generator)


def _forward(model: Any, output: str, input_ids: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        result = model(input_ids=input_ids.to(model.device))
    values: torch.Tensor = getattr(result, output)
    return values.float().cpu()


def stack_parity(
    base_dir: Path,
    adapter_dirs: Sequence[Path],
    merged_dir: Path,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    input_ids: torch.Tensor | None = None,
) -> ParityReport:
    """Compare merged outputs with base + the stack applied unmerged (all adapters active).

    Both models run in ``dtype`` (default fp32, an exact upcast of 16-bit weights), so the
    difference measures the merge, not 16-bit activation noise. The models are loaded one
    after the other, never both at once.
    """
    import torch
    from peft import PeftModel

    torch_dtype = getattr(torch, dtype)
    model, output = _load_model(base_dir, torch_dtype, device)
    if input_ids is None:
        input_ids = fixed_inputs(model.config.vocab_size)
    names = [f"stack_{i}" for i in range(len(adapter_dirs))]
    peft: Any = PeftModel.from_pretrained(model, adapter_dirs[0], adapter_name=names[0])
    for name, adapter_dir in zip(names[1:], adapter_dirs[1:], strict=True):
        peft.load_adapter(adapter_dir, adapter_name=name)
    # Every adapter active at once sums their contributions: exactly what a stack means.
    peft.base_model.set_adapter(names)
    reference = _forward(peft, output, input_ids)
    del peft, model

    merged, _ = _load_model(merged_dir, torch_dtype, device)
    result = _forward(merged, output, input_ids)
    diff = (result - reference).abs()
    return ParityReport(
        output=output,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        max_abs_reference=float(reference.abs().max()),
        tokens=int(input_ids.numel()),
        dtype=dtype,
    )
