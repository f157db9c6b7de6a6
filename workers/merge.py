"""Merge a LoRA stack into a base checkpoint: W' = W + sum_i scale_i * B_i @ A_i.

The base is streamed shard by shard and tensor by tensor through range readers, so
peak memory is one tensor (plus its fp32 accumulator) plus the adapters, whatever the
model's size. Output shards keep the base's names, tensor order and sharding, so every
header is known before any data is computed and each file is hashed as it is written.

Everything the stack needs is checked before the first byte is written (:func:`plan_merge`):
an adapter that does not fit the base fails fast with a :class:`MergeError`, whose
``code`` is stable for clients. Reader exceptions propagate untouched: they are
infrastructure failures the task retries.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.lora import (
    PEFT_PREFIX,
    AdapterConfigError,
    LoraConfig,
    base_weight_name,
    group_lora_tensors,
    parse_adapter_config,
)
from workers.safetensors_io import (
    RangeReader,
    SafetensorsError,
    SafetensorsHeader,
    TensorInfo,
    file_reader,
    load_tensor,
    read_header,
    read_tensor_bytes,
    torch_dtype,
)
from workers.safetensors_writer import (
    OutputFile,
    SafetensorsWriter,
    TensorSpec,
    WriteBehind,
    tensor_bytes,
    write_bytes,
)

if TYPE_CHECKING:
    import torch

#: Float dtypes a delta can be merged into. F8 is a quantized storage format, not one.
MERGEABLE_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
_DTYPE_ALIASES = {
    "F16": "F16",
    "FP16": "F16",
    "FLOAT16": "F16",
    "HALF": "F16",
    "BF16": "BF16",
    "BFLOAT16": "BF16",
    "F32": "F32",
    "FP32": "F32",
    "FLOAT32": "F32",
    "FLOAT": "F32",
}
#: Tensor names that only quantized checkpoints carry (GPTQ/AWQ, bitsandbytes, FP8).
_QUANTIZED_NAME = re.compile(
    r"\.(qweight|qzeros|g_idx|scales|absmax|nested_absmax|quant_map|nested_quant_map|"
    r"quant_state(\.[\w.]+)?|SCB|weight_format|weight_scale|weight_scale_inv|input_scale)$"
)
#: LoRA config options whose merge is not W + s*B@A, or that change the model's structure.
_UNMERGEABLE_OPTIONS = (
    "velora_config",
    "alora_invocation_tokens",
    "monteclora_config",
    "use_bdlora",
    "arrow_config",
    "kasa_config",
    "layer_replication",
    "target_parameters",
    "trainable_token_indices",
    "megatron_config",
    "use_qalora",
)
#: init_lora_weights values that rewrite the base during training (PiSSA-style residual
#: bases) or that target a quantized base: the saved adapter does not apply to the original.
_BASE_MODIFYING_INITS = ("pissa", "olora", "corda", "loftq", "mica")
#: Bytes per range read when copying untouched tensors.
COPY_CHUNK = 16 * 1024 * 1024
#: Weight files a merge replaces; every other base file is carried over unchanged.
_WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".h5",
    ".msgpack",
    ".onnx",
    ".ot",
    ".tflite",
    ".npz",
    ".pkl",
)


class MergeError(Exception):
    """The stack cannot be merged into this base (the user's files, not infrastructure)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One readable file: its name in the repository, its size and a range reader."""

    name: str
    size: int
    read: RangeReader


@dataclass(frozen=True)
class BaseModelFiles:
    """The base's safetensors shards (in index order) and its small JSON files."""

    shards: Sequence[SourceFile]
    index_json: bytes | None = None
    index_name: str = "model.safetensors.index.json"
    config_json: bytes | None = None


@dataclass(frozen=True)
class AdapterFiles:
    """A PEFT adapter: ``adapter_config.json`` bytes and ``adapter_model.safetensors``."""

    config_json: bytes
    weights: SourceFile
    name: str = "adapter"


@dataclass(frozen=True)
class LoraFactors:
    """One adapted module's factors, as stored (``a``: r x in, ``b``: out x r)."""

    module: str
    a: torch.Tensor
    b: torch.Tensor
    scale: float
    embedding: bool
    #: ``lora_B.bias`` (PEFT ``lora_bias=True``), added to the base bias times ``scale``.
    bias: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    config: LoraConfig
    modules: dict[str, LoraFactors]
    #: Full tensors that replace base tensors (modules_to_save, trained biases), keyed by
    #: their base-model path as PEFT saves them (``score.weight``).
    saved: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeResult:
    """The written files (shards in base order, then the index) and what changed."""

    files: list[OutputFile]
    merged_tensors: tuple[str, ...]
    device: str
    base_bytes: int
    seconds: float


# --------------------------------------------------------------------------- adapters


def check_mergeable(config: LoraConfig, name: str) -> None:
    """Refuse configs whose weights do not mean W + scale * B @ A on the original base."""
    if config.use_dora:
        raise MergeError(
            "dora_unsupported",
            f"{name}: DoRA adapters (use_dora) cannot be merged yet; the magnitude "
            "vector rescales the merged weight column by column.",
        )
    for option in _UNMERGEABLE_OPTIONS:
        if config.raw.get(option):
            raise MergeError(
                "unsupported_lora_variant",
                f"{name}: {option} is set; adapters using it cannot be merged into plain weights.",
            )
    init = config.raw.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_MODIFYING_INITS):
        raise MergeError(
            "base_modifying_init",
            f"{name}: init_lora_weights={init!r} trains against a modified base. Re-save the "
            "adapter with PEFT's path_initial_model_for_weight_conversion to get a plain LoRA.",
        )


def _is_saved_tensor(key: str, config: LoraConfig, lora_modules: Iterable[str]) -> bool:
    """Whether PEFT would load ``key`` into the base model (so merge_and_unload keeps it).

    Those are trained biases (``bias="all"``/``"lora_only"``), modules_to_save, and the
    base weights of adapted embedding layers (PEFT's ``save_embedding_layers``, in case
    the vocabulary was resized). A wrapped layer's own tensors sit under ``.base_layer``.
    """
    module, _, param = key.rpartition(".")
    wrapped = module.removesuffix(".base_layer")
    if param == "bias" and config.bias != "none":
        return True
    if module.endswith(".base_layer") and wrapped in lora_modules:
        return True
    return any(re.search(rf"(^|\.){re.escape(m)}(\.|$)", module) for m in config.modules_to_save)


def load_adapter(files: AdapterFiles) -> LoadedAdapter:
    """Parse, check and load one adapter fully (adapters are small next to the base)."""
    name = files.name
    try:
        config = parse_adapter_config(files.config_json)
    except AdapterConfigError as exc:
        raise MergeError(exc.code, f"{name}: {exc.message}") from exc
    check_mergeable(config, name)
    read = files.weights.read
    try:
        header = read_header(read, files.weights.size)
    except SafetensorsError as exc:
        raise MergeError("invalid_adapter", f"{name}: {exc.message}") from exc
    # Writable copies: LoadedAdapter is public, and adapters are small.
    tensors = {n: load_tensor(read, header, n) for n in header.tensors}
    for n, t in tensors.items():
        if not t.is_floating_point():
            raise MergeError("invalid_adapter", f"{name}: tensor {n} is not floating point.")

    grouped, rest = group_lora_tensors(tensors)
    lora_bias = {k.removesuffix(".lora_B.bias"): k for k in rest if k.endswith(".lora_B.bias")}
    modules: dict[str, LoraFactors] = {}
    for module, entry in grouped.items():
        if "magnitude" in entry.tensors:
            raise MergeError(
                "dora_unsupported", f"{name}: {module} carries a DoRA magnitude vector."
            )
        if set(entry.tensors) != {"A", "B"}:
            raise MergeError(
                "incomplete_module", f"{name}: {module} lacks lora_A or lora_B weights."
            )
        a, b = tensors[entry.tensors["A"]], tensors[entry.tensors["B"]]
        if a.ndim != 2 or b.ndim != 2:
            raise MergeError(
                "unsupported_layer",
                f"{name}: {module} is not a linear or embedding layer "
                "(convolution LoRA cannot be merged yet).",
            )
        rank = config.rank_for(module)
        if a.shape[0] != rank or b.shape[1] != rank:
            raise MergeError(
                "rank_mismatch",
                f"{name}: {module} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, "
                f"but the config gives it rank {rank}.",
            )
        bias_key = lora_bias.pop(PEFT_PREFIX + module, None)
        modules[module] = LoraFactors(
            module,
            a,
            b,
            config.scale_for(module),
            entry.embedding,
            tensors[bias_key] if bias_key else None,
        )
    if lora_bias:
        raise MergeError("incomplete_module", f"{name}: lora_B.bias without factors.")

    saved: dict[str, torch.Tensor] = {}
    for key in rest:
        if key.endswith(".lora_B.bias"):
            continue
        path = key.removeprefix(PEFT_PREFIX)
        if "lora_" in key or not _is_saved_tensor(path, config, modules):
            raise MergeError(
                "unexpected_tensor",
                f"{name}: tensor {key} is neither a LoRA factor nor a module the config "
                "saves (modules_to_save, bias).",
            )
        saved[path.replace(".base_layer.", ".")] = tensors[key]
    return LoadedAdapter(name, config, modules, saved)


def _load(read: RangeReader, header: SafetensorsHeader, info: TensorInfo) -> torch.Tensor:
    """Load a base tensor without the copy ``load_tensor`` makes to get a writable buffer."""
    import torch

    data = read_tensor_bytes(read, header, info.name)
    if info.numel == 0:
        return torch.empty(info.shape, dtype=torch_dtype(info.dtype))
    # Read-only is fine: the result is only ever a source for copies and matmuls.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(data, dtype=torch_dtype(info.dtype)).reshape(info.shape)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class LowRankOp:
    factors: LoraFactors
    #: Embeddings and Conv1D-style (fan_in_fan_out) weights store the delta transposed.
    transpose: bool


@dataclass(frozen=True)
class ReplaceOp:
    tensor: torch.Tensor


@dataclass(frozen=True)
class BiasOp:
    bias: torch.Tensor
    scale: float


MergeOp = LowRankOp | ReplaceOp | BiasOp


@dataclass(frozen=True)
class ShardPlan:
    source: SourceFile
    header: SafetensorsHeader
    #: Output tensors in the base's data order (same names and shapes, maybe a new dtype).
    specs: list[TensorSpec]


@dataclass(frozen=True)
class MergePlan:
    shards: list[ShardPlan]
    #: Base tensor name -> what the stack does to it, in stack order.
    ops: dict[str, list[MergeOp]]
    index: dict[str, Any] | None

    @property
    def base_bytes(self) -> int:
        return sum(s.source.size for s in self.shards)


def normalize_dtype(dtype: str | None) -> str | None:
    if dtype is None:
        return None
    code = _DTYPE_ALIASES.get(dtype.upper().removeprefix("TORCH."))
    if code is None:
        raise MergeError(
            "unsupported_dtype", f"Output dtype {dtype!r} is not one of F16, BF16 or F32."
        )
    return code


def _read_base_headers(base: BaseModelFiles) -> list[tuple[SourceFile, SafetensorsHeader]]:
    if not base.shards:
        raise MergeError("invalid_base", "The base has no safetensors weight files.")
    out = []
    for shard in base.shards:
        if shard.name.endswith(".gguf"):
            raise _quantized(f"{shard.name} is a GGUF file")
        try:
            header = read_header(shard.read, shard.size)
        except SafetensorsError as exc:
            if shard.size >= 4 and shard.read(0, 4) == b"GGUF":
                raise _quantized(f"{shard.name} is a GGUF file") from exc
            raise MergeError("invalid_base", f"{shard.name}: {exc.message}") from exc
        out.append((shard, header))
    return out


def _quantized(why: str) -> MergeError:
    return MergeError(
        "quantized_base",
        f"The base is quantized ({why}). Merge into the 16-bit base model, then quantize "
        "the merged model.",
    )


def _check_not_quantized(
    base: BaseModelFiles, headers: list[tuple[SourceFile, SafetensorsHeader]]
) -> None:
    if base.config_json is not None:
        try:
            config = json.loads(base.config_json)
        except ValueError:
            config = None
        if isinstance(config, dict) and config.get("quantization_config"):
            raise _quantized("config.json has a quantization_config")
    for _, header in headers:
        for name in header.tensors:
            if _QUANTIZED_NAME.search(name):
                raise _quantized(f"it has quantization tensors such as {name}")


def _check_index(
    base: BaseModelFiles, headers: list[tuple[SourceFile, SafetensorsHeader]]
) -> dict[str, Any] | None:
    if base.index_json is None:
        if len(headers) > 1:
            raise MergeError("invalid_base", "A sharded base needs its index JSON.")
        return None
    try:
        index: dict[str, Any] = json.loads(base.index_json)
    except ValueError as exc:
        raise MergeError("invalid_base", f"{base.index_name} is not JSON: {exc}") from exc
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise MergeError("invalid_base", f"{base.index_name} has no weight_map object.")
    actual = {name: shard.name for shard, header in headers for name in header.tensors}
    if weight_map != actual:
        raise MergeError(
            "invalid_base",
            f"{base.index_name} does not describe the shards: its weight_map and the "
            "shard headers disagree.",
        )
    return index


def _base_tensor_name(path: str, names: set[str]) -> str | None:
    """Like :func:`base_weight_name`, for any parameter (``x.bias``), not just weights."""
    module, _, param = path.rpartition(".")
    suffix = f".{param}"
    by_weight = {n.removesuffix(suffix) + ".weight" for n in names if n.endswith(suffix)}
    found = base_weight_name(module, by_weight)
    return None if found is None else found.removesuffix(".weight") + f".{param}"


def plan_merge(
    base: BaseModelFiles, stack: Sequence[AdapterFiles | LoadedAdapter], *, dtype: str | None = None
) -> MergePlan:
    """Read the base headers, load the stack and check that every adapter fits."""
    if not stack:
        raise MergeError("empty_stack", "The stack has no adapters.")
    out_dtype = normalize_dtype(dtype)
    headers = _read_base_headers(base)
    _check_not_quantized(base, headers)
    index = _check_index(base, headers)
    infos: dict[str, TensorInfo] = {}
    for _, header in headers:
        for name, info in header.tensors.items():
            if name in infos:
                raise MergeError("invalid_base", f"{name} is stored in more than one shard.")
            infos[name] = info
    names = set(infos)

    ops: dict[str, list[MergeOp]] = {}
    for item in stack:
        adapter = item if isinstance(item, LoadedAdapter) else load_adapter(item)
        # Within one adapter a saved module replaces the weight before any delta lands on it.
        for path, tensor in adapter.saved.items():
            target = _base_tensor_name(path, names)
            if target is None:
                raise MergeError(
                    "module_not_in_base",
                    f"{adapter.name}: saved module weight {path} has no counterpart in the base.",
                )
            _check_float(target, infos[target])
            _check_shape(adapter.name, path, tuple(tensor.shape), infos[target])
            ops.setdefault(target, []).append(ReplaceOp(tensor))
        for module, factors in adapter.modules.items():
            target = base_weight_name(module, names)
            if target is None:
                raise MergeError(
                    "module_not_in_base",
                    f"{adapter.name}: module {module} has no weight in the base.",
                )
            info = infos[target]
            _check_float(target, info)
            transpose = _orientation(adapter, factors, info)
            ops.setdefault(target, []).append(LowRankOp(factors, transpose))
            if factors.bias is not None:
                bias_name = target.removesuffix(".weight") + ".bias"
                if bias_name not in infos:
                    raise MergeError(
                        "module_not_in_base",
                        f"{adapter.name}: {module} has a LoRA bias but the base layer has none.",
                    )
                _check_float(bias_name, infos[bias_name])
                _check_shape(adapter.name, module, tuple(factors.bias.shape), infos[bias_name])
                ops.setdefault(bias_name, []).append(BiasOp(factors.bias, factors.scale))

    shards = []
    for shard, header in headers:
        ordered = sorted(header.tensors.values(), key=lambda t: t.begin)
        specs = [
            TensorSpec(
                t.name,
                out_dtype if out_dtype and t.dtype in MERGEABLE_DTYPES else t.dtype,
                t.shape,
            )
            for t in ordered
        ]
        shards.append(ShardPlan(shard, header, specs))
    return MergePlan(shards, ops, index)


def _check_float(name: str, info: TensorInfo) -> None:
    if info.dtype not in MERGEABLE_DTYPES:
        raise _quantized(f"{name} is stored as {info.dtype}")


def _check_shape(adapter: str, what: str, shape: tuple[int, ...], info: TensorInfo) -> None:
    if shape != info.shape:
        raise MergeError(
            "shape_mismatch",
            f"{adapter}: {what} has shape {list(shape)} but the base's {info.name} is "
            f"{list(info.shape)}; the adapter was trained on another base.",
        )


def _orientation(adapter: LoadedAdapter, f: LoraFactors, info: TensorInfo) -> bool:
    """Whether the delta B @ A lands transposed on the stored weight.

    PEFT decides by layer type (embeddings and GPT-2 Conv1D store weights in x out);
    the checkpoint only has shapes, so shapes decide and ``fan_in_fan_out`` breaks the
    tie for square weights.
    """
    straight = (int(f.b.shape[0]), int(f.a.shape[1]))
    flipped = straight[::-1]
    if f.embedding:
        fits, transpose = info.shape == flipped, True
    elif straight[0] == straight[1]:
        fits, transpose = info.shape == straight, adapter.config.fan_in_fan_out
    else:
        fits, transpose = info.shape in (straight, flipped), info.shape == flipped
    if not fits:
        raise MergeError(
            "shape_mismatch",
            f"{adapter.name}: {f.module} has a {list(straight)} update but the base's "
            f"{info.name} is {list(info.shape)}; the adapter was trained on another base.",
        )
    return transpose


# --------------------------------------------------------------------------- compute


class _Workspace:
    """Reusable flat buffers: fresh multi-MB allocations each cost page faults that are
    several times slower than the arithmetic done in them."""

    def __init__(self, device: torch.device, slots: int) -> None:
        self.device = device
        self.slots = slots
        self._next = 0
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def next_slot(self) -> int:
        """Rotate result buffers: one may be queued and one written while we fill the next."""
        self._next = (self._next + 1) % self.slots
        return self._next

    def get(self, slot: str, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
        import torch

        numel = 1
        for dim in shape:
            numel *= dim
        buf = self._buffers.get((slot, dtype))
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=self.device)
            self._buffers[(slot, dtype)] = buf
        return buf[:numel].view(tuple(shape))


def _apply(acc: torch.Tensor, ops: Sequence[MergeOp]) -> None:
    """Apply the stack's ops to the fp32 accumulator, in stack order."""
    for op in ops:
        if isinstance(op, ReplaceOp):
            acc.copy_(op.tensor)
        elif isinstance(op, BiasOp):
            acc.add_(op.bias.to(acc.device, acc.dtype) * op.scale)
        else:
            f = op.factors
            a = f.a.to(acc.device, acc.dtype)
            b = f.b.to(acc.device, acc.dtype)
            # One fused pass, acc += scale * (B @ A), instead of PEFT's three (matmul into
            # a temporary, scale it, add it): over twice as fast, and it differs from
            # PEFT's fp32 result only by where the scale product is rounded (~1 fp32 ULP,
            # which after rounding to 16 bits almost never shows).
            if op.transpose:
                acc.addmm_(a.T, b.T, alpha=f.scale)
            else:
                acc.addmm_(b, a, alpha=f.scale)


def _merge_tensor(
    source: torch.Tensor,
    ops: Sequence[MergeOp],
    out_dtype: torch.dtype,
    ws: _Workspace,
    slot: int,
) -> torch.Tensor:
    """W' for one tensor. The result lives in workspace ``slot`` until it is written."""
    import torch

    # Accumulate the whole stack in fp32 (fp64 for fp64 bases) and round once at the end.
    acc_dtype = torch.float64 if source.dtype == torch.float64 else torch.float32
    same = acc_dtype == out_dtype
    acc = ws.get(f"acc{slot}" if same else "acc", acc_dtype, source.shape)
    acc.copy_(source)
    _apply(acc, ops)
    if same:
        return acc.cpu()
    result = ws.get(f"out{slot}", out_dtype, source.shape)
    result.copy_(acc)
    return result.cpu()


def _write_shard(
    plan: MergePlan, shard: ShardPlan, out_dir: Path, ws: _Workspace, behind: WriteBehind
) -> OutputFile:
    read, header = shard.source.read, shard.header
    writer = SafetensorsWriter(
        out_dir / shard.source.name, shard.source.name, shard.specs, header.metadata
    )
    run: list[int] = []  # [begin, end) of untouched bytes not yet copied

    def flush() -> None:
        # Consecutive untouched tensors are one byte range in and out: copy it in chunks.
        if run:
            for pos in range(run[0], run[1], COPY_CHUNK):
                n = min(COPY_CHUNK, run[1] - pos)
                behind.put(writer.write, read(header.data_start + pos, n))
            run.clear()

    try:
        for spec in shard.specs:
            info = header.tensors[spec.name]
            ops = plan.ops.get(spec.name)
            if not ops and spec.dtype == info.dtype:
                if run and run[1] == info.begin:
                    run[1] = info.end
                else:
                    flush()
                    run.extend((info.begin, info.end))
                continue
            flush()
            source = _load(read, header, info)
            dtype = torch_dtype(spec.dtype)
            if ops:
                result = _merge_tensor(source, ops, dtype, ws, ws.next_slot())
            else:
                result = source.to(dtype)
            behind.put(writer.write, tensor_bytes(result))
        flush()
        behind.wait()
        return writer.finish()
    except BaseException:
        behind.cancel()
        writer.abort()
        raise


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def merge_stack(
    *,
    base: BaseModelFiles,
    stack: Sequence[AdapterFiles | LoadedAdapter],
    out_dir: Path,
    device: str | None = None,
    dtype: str | None = None,
    on_file: Callable[[OutputFile], None] | None = None,
) -> MergeResult:
    """Merge ``stack`` (applied in order) into ``base``; write shards and index to ``out_dir``.

    ``dtype`` (F16, BF16 or F32) recasts every float tensor; by default each keeps the
    base's dtype. ``on_file`` is called as each file is finished, so the caller can upload
    it (and delete it) while the next shard is computed. Non-weight base files (config,
    tokenizer) are not touched: copy those listed by :func:`files_to_carry`.
    """
    import torch

    started = time.perf_counter()
    plan = plan_merge(base, stack, dtype=dtype)
    dev = torch.device(device or default_device())
    files: list[OutputFile] = []
    # TF32 matmuls (if the process enabled them) would cost ~3 decimal digits of the delta.
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    # Leave a core to the write-behind thread (hashing is a full core's work): the
    # conversions and matmuls are memory-bound anyway, and an oversubscribed OpenMP pool
    # spin-waits, which measured ~1.7x slower on two busy cores.
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - 1)))
    try:
        with WriteBehind() as behind:
            ws = _Workspace(dev, slots=behind.in_flight + 1)
            for shard in plan.shards:
                files.append(_write_shard(plan, shard, out_dir, ws, behind))
                if on_file:
                    on_file(files[-1])
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.set_num_threads(threads)
    if plan.index is not None:
        index = dict(plan.index)
        metadata = dict(index.get("metadata") or {})
        metadata["total_size"] = sum(s.nbytes for shard in plan.shards for s in shard.specs)
        index["metadata"] = metadata
        data = (json.dumps(index, indent=2, sort_keys=True) + "\n").encode()
        files.append(write_bytes(out_dir / base.index_name, base.index_name, data))
        if on_file:
            on_file(files[-1])
    return MergeResult(
        files=files,
        merged_tensors=tuple(sorted(plan.ops)),
        device=str(dev),
        base_bytes=plan.base_bytes,
        seconds=time.perf_counter() - started,
    )


def files_to_carry(names: Iterable[str]) -> list[str]:
    """Base files a merged model keeps unchanged: config, tokenizer, generation config...

    Everything except weights (which the merge rewrites), weight indexes, the model card
    (it describes the base, not the merge) and git plumbing.
    """
    keep = []
    for name in names:
        leaf = name.rsplit("/", 1)[-1]
        if (
            leaf.endswith(_WEIGHT_SUFFIXES)
            or leaf.endswith(".index.json")
            or leaf in {"README.md", ".gitattributes"}
            or name.startswith(".")
        ):
            continue
        keep.append(name)
    return sorted(keep)


# --------------------------------------------------------------------------- local files


def local_source(path: Path, files: ExitStack, name: str | None = None) -> SourceFile:
    """A :class:`SourceFile` over a local file, kept open until ``files`` closes."""
    fh = files.enter_context(path.open("rb"))
    return SourceFile(name or path.name, path.stat().st_size, file_reader(fh))


def local_base(model_dir: Path, files: ExitStack) -> BaseModelFiles:
    """The base files of a local model directory (sharded or not)."""
    index_path = model_dir / "model.safetensors.index.json"
    config = model_dir / "config.json"
    config_json = config.read_bytes() if config.exists() else None
    if index_path.exists():
        index_json = index_path.read_bytes()
        names = list(dict.fromkeys(json.loads(index_json)["weight_map"].values()))
        shards = [local_source(model_dir / n, files) for n in sorted(names)]
        return BaseModelFiles(shards, index_json, index_path.name, config_json)
    return BaseModelFiles(
        [local_source(model_dir / "model.safetensors", files)], config_json=config_json
    )


def local_adapter(adapter_dir: Path, files: ExitStack, name: str | None = None) -> AdapterFiles:
    """The files of a local PEFT adapter directory."""
    return AdapterFiles(
        (adapter_dir / "adapter_config.json").read_bytes(),
        local_source(adapter_dir / "adapter_model.safetensors", files),
        name or adapter_dir.name,
    )
