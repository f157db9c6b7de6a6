"""The numeric half of adapter validation: one streaming pass over the tensor data.

Every float tensor is checked for NaN/Inf; for each LoRA module the r-by-r Gram matrices
AAᵀ and BᵀB are accumulated, which give the exact Frobenius norm of the update
``scale·B·A`` (``||BA||²_F = trace((BᵀB)(AAᵀ))``) without ever forming B·A. Data is read in
file order through the validated offsets, a bounded chunk at a time, so peak memory is
two chunks (the one being scanned and the one being read ahead) plus one lora_A,
which a Gram needs whole, however large the upload is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from workers.findings import FindingCollector, ModuleStats
from workers.safetensors_io import (
    FLOAT_DTYPES,
    RangeReader,
    SafetensorsError,
    SafetensorsHeader,
    TensorInfo,
    torch_dtype,
)

# aminmax and matmul have no float8 kernels on CPU; those tensors are upcast first.
_NATIVE_REDUCE = frozenset({"F16", "BF16", "F32", "F64"})
#: Safety margin on the cheap overflow bound, far above the f32 rounding of a Gram diagonal.
_BOUND_MARGIN = 1.001


@dataclass(frozen=True, slots=True)
class TensorRef:
    """Where one tensor lives: an index into the scanned files and its header entry."""

    file: int
    info: TensorInfo


@dataclass(frozen=True, slots=True)
class ModulePlan:
    """A LoRA module whose halves passed the structural checks and can be scanned together."""

    module: str
    a: TensorRef
    b: TensorRef
    rank: int
    alpha: float
    scale: float
    #: dtype of the base weight the delta is merged into; None when the base is unknown.
    base_dtype: str | None


@dataclass(slots=True)
class _Acc:
    """Running statistics of one tensor over its pieces."""

    low: float = math.inf
    high: float = -math.inf
    nan: int = 0
    inf: int = 0
    gram: torch.Tensor | None = None

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0

    @property
    def max_abs(self) -> float:
        return max(abs(self.low), abs(self.high)) if self.low <= self.high else 0.0


@dataclass(slots=True)
class ScanResult:
    module_stats: list[ModuleStats] = field(default_factory=list)
    scanned_bytes: int = 0
    nonfinite_tensors: int = 0
    zero_modules: int = 0


def _finfo_max(dtype: str) -> float | None:
    if dtype not in FLOAT_DTYPES:
        return None
    return float(torch.finfo(torch_dtype(dtype)).max)


def _read_exact(read: RangeReader, offset: int, length: int) -> bytes:
    data = read(offset, length)
    # Never trust a reader that returns fewer bytes than asked for without raising.
    if len(data) != length:
        raise SafetensorsError("truncated", "The file ended before the data it declares.")
    return data


def _view(buf: bytes, info: TensorInfo, offset: int, rows: int | None = None) -> torch.Tensor:
    """A read-only tensor over ``buf`` at ``offset``; copies only when misaligned.

    Viewing the reader's bytes directly saves a copy that costs as much as the read
    itself. torch warns that the buffer is not writable; nothing here writes to it
    (aminmax, upcasts and matmuls only read).
    """
    dtype = torch_dtype(info.dtype)
    shape = info.shape if rows is None else (rows, *info.shape[1:])
    count = math.prod(shape)
    if offset % dtype.itemsize:
        buf, offset = bytes(buf[offset : offset + count * dtype.itemsize]), 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        return torch.frombuffer(buf, dtype=dtype, count=count, offset=offset).reshape(shape)


@dataclass(frozen=True, slots=True)
class _Read:
    """One range read and the tensors (or row blocks of one tensor) it holds."""

    offset: int
    length: int
    #: (tensor, offset of its data inside the read, rows in this block or None for all)
    members: tuple[tuple[TensorInfo, int, int | None], ...]


def _plan_reads(header: SafetensorsHeader, whole: set[str], chunk_bytes: int) -> list[_Read]:
    """Reads in file order: small tensors coalesced up to ``chunk_bytes``, big ones split
    into row blocks (except names in ``whole``, which a Gram needs in one piece)."""
    ordered = [t for t in sorted(header.tensors.values(), key=lambda t: t.begin) if t.numel]
    reads: list[_Read] = []
    i = 0
    while i < len(ordered):
        info = ordered[i]
        start = header.data_start + info.begin
        if info.nbytes > chunk_bytes and info.name not in whole and info.shape:
            row_bytes = info.nbytes // info.shape[0]
            step = max(1, chunk_bytes // row_bytes)
            for first in range(0, info.shape[0], step):
                rows = min(step, info.shape[0] - first)
                reads.append(_Read(start + first * row_bytes, rows * row_bytes, ((info, 0, rows),)))
            i += 1
            continue
        j = i + 1  # tensors tile the data section, so consecutive ones are contiguous
        while j < len(ordered) and ordered[j].end - info.begin <= chunk_bytes:
            j += 1
        members = tuple((m, m.begin - info.begin, None) for m in ordered[i:j])
        reads.append(_Read(start, ordered[j - 1].end - info.begin, members))
        i = j
    return reads


def _pieces(
    read: RangeReader, reads: list[_Read], pool: ThreadPoolExecutor
) -> Iterator[tuple[TensorInfo, torch.Tensor]]:
    """Yield tensor pieces, fetching the next read in the background (one read ahead),
    so I/O overlaps computation; memory stays at two chunks."""
    pending: Future[bytes] | None = None
    for index, planned in enumerate(reads):
        buf = (
            pending.result()
            if pending is not None
            else _read_exact(read, planned.offset, planned.length)
        )
        pending = None
        if index + 1 < len(reads):
            following = reads[index + 1]
            pending = pool.submit(_read_exact, read, following.offset, following.length)
        for info, offset, rows in planned.members:
            yield info, _view(buf, info, offset, rows)


def _as_matrix(piece: torch.Tensor) -> torch.Tensor:
    """Flatten to 2-D and upcast to a dtype CPU matmul is exact enough in (f32 or f64)."""
    matrix = piece.reshape(piece.shape[0], -1)
    return matrix if matrix.dtype in (torch.float32, torch.float64) else matrix.float()


def _gram(piece: torch.Tensor, part: str) -> torch.Tensor:
    """AAᵀ for lora_A, BᵀB for (a row block of) lora_B, returned in float64.

    f32 is ~3x faster than f64 here and the r-by-r result is summed in f64; when a finite
    tensor's squares overflow f32 we redo the piece in f64.
    """
    m = _as_matrix(piece)
    g = m @ m.T if part == "A" else m.T @ m
    if not bool(torch.isfinite(g).all()):
        m = m.double()
        g = m @ m.T if part == "A" else m.T @ m
    return g.double()


def _update(acc: _Acc, piece: torch.Tensor, dtype: str, part: str | None) -> None:
    values = piece if dtype in _NATIVE_REDUCE else piece.float()
    low, high = torch.aminmax(values)
    lo, hi = float(low), float(high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # aminmax propagates NaN, so this branch is exact; count only on the rare bad path.
        acc.nan += int(torch.isnan(values).sum())
        acc.inf += int(torch.isinf(values).sum())
        return
    acc.low, acc.high = min(acc.low, lo), max(acc.high, hi)
    if part is not None and acc.finite:
        g = _gram(piece, part)
        acc.gram = g if acc.gram is None else acc.gram + g


def scan_numbers(
    files: Sequence[tuple[RangeReader, SafetensorsHeader]],
    plans: Sequence[ModulePlan],
    findings: FindingCollector,
    *,
    saved_base_dtypes: dict[str, str] | None = None,
    chunk_bytes: int = 16 * 1024 * 1024,
    exact_chunk_elements: int = 1 << 24,
    threads: int | None = None,
) -> ScanResult:
    """Scan every float tensor once; report NaN/Inf, all-zero updates and dtype overflow.

    ``saved_base_dtypes`` maps full tensors kept verbatim (modules_to_save) to the base
    dtype they will be cast to. Raises whatever the readers raise; SafetensorsError from a
    short read is the caller's to turn into a finding. ``threads`` sets torch's intra-op
    threads for the duration of the scan.
    """
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _scan(files, plans, findings, saved_base_dtypes, chunk_bytes, exact_chunk_elements)
    finally:
        if threads:
            torch.set_num_threads(previous)


def _scan(
    files: Sequence[tuple[RangeReader, SafetensorsHeader]],
    plans: Sequence[ModulePlan],
    findings: FindingCollector,
    saved_base_dtypes: dict[str, str] | None,
    chunk_bytes: int,
    exact_chunk_elements: int,
) -> ScanResult:
    parts: dict[tuple[int, str], str] = {}
    for plan in plans:
        parts[(plan.a.file, plan.a.info.name)] = "A"
        parts[(plan.b.file, plan.b.info.name)] = "B"
    accs: dict[tuple[int, str], _Acc] = {}
    result = ScanResult()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan-read") as pool:
        for index, (read, header) in enumerate(files):
            whole = {name for (f, name), part in parts.items() if f == index and part == "A"}
            reads = _plan_reads(header, whole, chunk_bytes)
            _scan_file(index, _pieces(read, reads, pool), parts, accs, result)

    for (_file, name), acc in accs.items():
        if not acc.finite:
            result.nonfinite_tensors += 1
            findings.error(
                "non_finite_values",
                f"{name} holds {acc.nan} NaN and {acc.inf} infinite values; merging or "
                "serving it would corrupt every output. Re-export the adapter from a "
                "checkpoint whose training loss was finite.",
                tensor=name,
            )
            continue
        base_dtype = (saved_base_dtypes or {}).get(name)
        limit = _finfo_max(base_dtype) if base_dtype else None
        if limit is not None and acc.max_abs > limit:
            findings.error(
                "weight_overflows_base_dtype",
                f"{name} holds values up to {acc.max_abs:.3g}, beyond the largest "
                f"{base_dtype} value ({limit:.3g}) of the base it replaces.",
                tensor=name,
            )

    for plan in plans:
        stats = _module_stats(plan, accs, files, findings, exact_chunk_elements)
        result.module_stats.append(stats)
        result.zero_modules += bool(stats.zero)
    return result


def _scan_file(
    index: int,
    pieces: Iterator[tuple[TensorInfo, torch.Tensor]],
    parts: dict[tuple[int, str], str],
    accs: dict[tuple[int, str], _Acc],
    result: ScanResult,
) -> None:
    for info, piece in pieces:
        if info.dtype not in FLOAT_DTYPES:
            continue  # refused by the structural checks; nothing numeric to learn
        key = (index, info.name)
        acc = accs.setdefault(key, _Acc())
        _update(acc, piece, info.dtype, parts.get(key))
        result.scanned_bytes += piece.numel() * piece.element_size()


def _module_stats(
    plan: ModulePlan,
    accs: dict[tuple[int, str], _Acc],
    files: Sequence[tuple[RangeReader, SafetensorsHeader]],
    findings: FindingCollector,
    exact_chunk_elements: int,
) -> ModuleStats:
    a = accs.get((plan.a.file, plan.a.info.name), _Acc())
    b = accs.get((plan.b.file, plan.b.info.name), _Acc())
    dtype = plan.a.info.dtype if plan.a.info.dtype == plan.b.info.dtype else "mixed"
    stats = ModuleStats(plan.module, plan.rank, plan.alpha, plan.scale, dtype)
    if not (a.finite and b.finite):
        return stats
    stats.a_max_abs, stats.b_max_abs = a.max_abs, b.max_abs
    # Empty tensors never reach the scan; treat them as zero.
    ga = a.gram if a.gram is not None else torch.zeros(plan.rank, plan.rank, dtype=torch.float64)
    gb = b.gram if b.gram is not None else torch.zeros(plan.rank, plan.rank, dtype=torch.float64)
    a_sq, b_sq = float(torch.trace(ga)), float(torch.trace(gb))
    stats.a_norm, stats.b_norm = math.sqrt(a_sq), math.sqrt(b_sq)
    # trace(GB·GA) = Σ GB∘GA since both are symmetric; rounding can dip a zero below 0.
    delta_sq = max(0.0, float((gb * ga).sum()))
    stats.delta_norm = abs(plan.scale) * math.sqrt(delta_sq)
    stats.zero = a.max_abs == 0.0 or b.max_abs == 0.0 or plan.scale == 0.0
    limit = _finfo_max(plan.base_dtype) if plan.base_dtype else None
    if limit is None or stats.zero:
        return stats
    # max|scale·(BA)_ij| <= |scale|·||B_i||·||A_:j|| <= |scale|·||B||_F·||A||_F. Cheap, but
    # may exceed the limit when the product does not, so confirm exactly before failing.
    bound = abs(plan.scale) * stats.a_norm * stats.b_norm * _BOUND_MARGIN
    if bound <= limit:
        return stats
    peak = _exact_delta_max(plan, files, exact_chunk_elements)
    if peak > limit:
        findings.error(
            "delta_overflows_base_dtype",
            f"Merging {plan.module} adds values up to {peak:.3g}, beyond the largest "
            f"{plan.base_dtype} value ({limit:.3g}); the merged weight would hold infinities. "
            "Lower lora_alpha or rescale lora_B.",
            module=plan.module,
        )
    return stats


def _exact_delta_max(
    plan: ModulePlan,
    files: Sequence[tuple[RangeReader, SafetensorsHeader]],
    chunk_elements: int,
) -> float:
    """max |scale·B·A| computed exactly in float64, reading a block of B's rows at a time."""
    read, header = files[plan.a.file]
    a_info = plan.a.info
    a_buf = _read_exact(read, header.data_start + a_info.begin, a_info.nbytes)
    a = _view(a_buf, a_info, 0).reshape(a_info.shape[0], -1).double()
    read, header = files[plan.b.file]
    b_info = plan.b.info
    row_bytes = b_info.nbytes // b_info.shape[0]
    step = max(1, chunk_elements // max(1, a.shape[1]))
    peak = 0.0
    for first in range(0, b_info.shape[0], step):
        rows = min(step, b_info.shape[0] - first)
        offset = header.data_start + b_info.begin + first * row_bytes
        block = _view(_read_exact(read, offset, rows * row_bytes), b_info, 0, rows)
        product = block.reshape(rows, -1).double() @ a
        peak = max(peak, float(product.abs().max()))
    return abs(plan.scale) * peak
