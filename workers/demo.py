"""Build the demo's adapters: real PEFT LoRAs on the MiniLM base, deterministic.

They are not trained (that would take minutes on a laptop); their weights are seeded
random values of a realistic scale, which is enough to exercise validation, merging,
stacking and benchmarks end to end.
"""

from __future__ import annotations

from pathlib import Path

from workers.packaged_models import minilm_dir


def build_minilm_lora(
    out_dir: Path, *, rank: int, targets: list[str], seed: int, scale: float = 0.02
) -> Path:
    """Save a PEFT LoRA adapter for MiniLM into ``out_dir`` and return it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(minilm_dir())
    model = get_peft_model(
        base,
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    model.save_pretrained(str(out_dir))
    return out_dir
