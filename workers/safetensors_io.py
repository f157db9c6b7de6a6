"""Strict safetensors parsing: the one parser that checking, loading and merging share.

The reference ``safetensors`` library is lenient in ways a public hub cannot be
(duplicate keys silently overwrite, unknown fields are ignored, any string is a tensor
name). This module parses the header itself, from range reads, and refuses anything the
format does not define. Tensor data is then read only through the offsets it validated,
so a file that passes :func:`read_header` can never be interpreted two ways.

No Django, no Celery: readers are plain callables so the same code runs over S3 range
reads, a local file or bytes in memory.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is a worker dependency; header parsing must not need it.
    import torch

#: ``read(offset, length) -> bytes``. Must return exactly ``length`` bytes or raise.
RangeReader = Callable[[int, int], bytes]

#: Bytes per element for every dtype the safetensors format defines.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
FLOAT_DTYPES = frozenset({"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"})

DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_TENSORS = 200_000
MAX_TENSOR_NAME_LENGTH = 512
_ENTRY_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
#: NUL and other control characters (what ``ord(ch) < 32 or ord(ch) == 127`` tests), as
#: one regex: a per-character Python loop dominated header parsing for large adapters.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class SafetensorsError(ValueError):
    """The bytes are not a well-formed safetensors file. ``code`` is stable for clients."""

    def __init__(self, code: str, message: str, *, tensor: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.tensor = tensor


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    #: Offsets relative to the start of the data section, as in the file.
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    #: Absolute file offset where the data section begins (8 + header length).
    data_start: int
    file_size: int

    def manifest(self) -> dict[str, dict[str, Any]]:
        """Tensor name -> ``{"dtype", "shape"}``, the form stored on base model versions."""
        return {
            name: {"dtype": info.dtype, "shape": list(info.shape)}
            for name, info in sorted(self.tensors.items())
        }


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SafetensorsError(
                "duplicate_tensor_key",
                f"The header names {key!r} twice; the reference loader would silently "
                "keep only the last one. Re-save the file with unique tensor names.",
                tensor=key,
            )
        result[key] = value
    return result


def check_tensor_name(name: str) -> None:
    """Refuse names that cannot be a module path: empty, NUL, path-like or overlong."""
    if not name:
        raise SafetensorsError("bad_tensor_name", "A tensor has an empty name.", tensor=name)
    if len(name) > MAX_TENSOR_NAME_LENGTH:
        raise SafetensorsError(
            "bad_tensor_name",
            f"A tensor name is {len(name)} characters long; the limit is {MAX_TENSOR_NAME_LENGTH}.",
            tensor=name[:80],
        )
    if _CONTROL_CHARS.search(name):
        raise SafetensorsError(
            "bad_tensor_name", "A tensor name contains NUL or control characters.", tensor=name
        )
    if "/" in name or "\\" in name or name.startswith(".") or ".." in name:
        raise SafetensorsError(
            "bad_tensor_name",
            f"Tensor name {name!r} looks like a file path; tensor names are dotted module paths.",
            tensor=name,
        )


def parse_header(
    header_bytes: bytes,
    *,
    file_size: int,
    max_tensors: int = DEFAULT_MAX_TENSORS,
) -> SafetensorsHeader:
    """Parse and check the JSON header (without its 8-byte length prefix)."""
    data_start = 8 + len(header_bytes)
    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError("header_not_utf8", "The header is not valid UTF-8.") from exc
    if not text.lstrip().startswith("{"):
        raise SafetensorsError("header_not_json", "The header is not a JSON object.")
    try:
        raw = json.loads(text, object_pairs_hook=_reject_duplicates)
    except SafetensorsError:
        raise
    except (ValueError, RecursionError) as exc:
        raise SafetensorsError("header_not_json", f"The header is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise SafetensorsError("header_not_json", "The header is not a JSON object.")

    metadata_raw = raw.pop("__metadata__", None)
    metadata: dict[str, str] = {}
    if metadata_raw is not None:
        if not isinstance(metadata_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata_raw.items()
        ):
            raise SafetensorsError("bad_metadata", "__metadata__ must map strings to strings.")
        metadata = metadata_raw

    if not raw:
        raise SafetensorsError("no_tensors", "The file contains no tensors.")
    if len(raw) > max_tensors:
        raise SafetensorsError(
            "too_many_tensors",
            f"The header lists {len(raw)} tensors; the limit is {max_tensors}.",
        )

    tensors: dict[str, TensorInfo] = {}
    for name, entry in raw.items():
        check_tensor_name(name)
        tensors[name] = _parse_entry(name, entry)

    _check_layout(tensors, data_len=file_size - data_start)
    return SafetensorsHeader(
        tensors=tensors, metadata=metadata, data_start=data_start, file_size=file_size
    )


def _parse_entry(name: str, entry: Any) -> TensorInfo:
    if not isinstance(entry, dict):
        raise SafetensorsError("bad_tensor_entry", "A tensor entry is not an object.", tensor=name)
    unknown = set(entry) - _ENTRY_FIELDS
    if unknown:
        raise SafetensorsError(
            "unknown_tensor_field",
            f"Tensor entry has fields the format does not define: {sorted(unknown)}.",
            tensor=name,
        )
    missing = _ENTRY_FIELDS - set(entry)
    if missing:
        raise SafetensorsError(
            "bad_tensor_entry", f"Tensor entry lacks {sorted(missing)}.", tensor=name
        )
    dtype = entry["dtype"]
    # A list or object here used to escape as TypeError (unhashable), not a finding.
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise SafetensorsError("unknown_dtype", f"Unknown dtype {dtype!r}.", tensor=name)
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**40 for d in shape):
        raise SafetensorsError(
            "bad_shape", "Shape must be a list of non-negative integers.", tensor=name
        )
    offsets = entry["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SafetensorsError(
            "bad_offsets", "data_offsets must be [begin, end] with begin <= end.", tensor=name
        )
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    if info.nbytes != info.numel * DTYPE_SIZES[dtype]:
        raise SafetensorsError(
            "size_mismatch",
            f"{info.nbytes} bytes are stored for a {dtype} tensor of shape {list(shape)}, "
            f"which needs {info.numel * DTYPE_SIZES[dtype]}.",
            tensor=name,
        )
    return info


def _check_layout(tensors: dict[str, TensorInfo], *, data_len: int) -> None:
    """Tensors must tile the data section exactly: no gaps, overlaps or trailing bytes."""
    cursor = 0
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin != cursor:
            raise SafetensorsError(
                "bad_offsets",
                "Tensor data overlaps another tensor or leaves a gap.",
                tensor=info.name,
            )
        cursor = info.end
    if cursor != data_len:
        raise SafetensorsError(
            "bad_offsets",
            f"The data section is {data_len} bytes but the tensors cover {cursor}: the file "
            "is truncated or has trailing bytes.",
        )


def read_header(
    read: RangeReader,
    file_size: int,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_tensors: int = DEFAULT_MAX_TENSORS,
) -> SafetensorsHeader:
    """Read and check a header with two range reads, whatever the file's size."""
    if file_size < 8:
        raise SafetensorsError("truncated", "The file is shorter than the 8-byte header length.")
    (header_len,) = struct.unpack("<Q", read(0, 8))
    if header_len > max_header_bytes:
        raise SafetensorsError(
            "header_too_large",
            f"The header is {header_len} bytes; the limit is {max_header_bytes}.",
        )
    if 8 + header_len > file_size:
        raise SafetensorsError("truncated", "The header runs past the end of the file.")
    return parse_header(read(8, header_len), file_size=file_size, max_tensors=max_tensors)


def file_reader(fh: IO[bytes]) -> RangeReader:
    """A :data:`RangeReader` over a seekable binary file."""

    def read(offset: int, length: int) -> bytes:
        fh.seek(offset)
        data = fh.read(length)
        if len(data) != length:
            raise SafetensorsError("truncated", "The file ended before the data it declares.")
        return data

    return read


def bytes_reader(data: bytes) -> RangeReader:
    """A :data:`RangeReader` over bytes in memory (tests, small configs)."""
    view = memoryview(data)

    def read(offset: int, length: int) -> bytes:
        if offset + length > len(view):
            raise SafetensorsError("truncated", "The file ended before the data it declares.")
        return bytes(view[offset : offset + length])

    return read


def read_tensor_bytes(read: RangeReader, header: SafetensorsHeader, name: str) -> bytes:
    info = header.tensors[name]
    return read(header.data_start + info.begin, info.nbytes)


_TORCH_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


def torch_dtype(dtype: str) -> torch.dtype:
    import torch

    dtype_obj: torch.dtype = getattr(torch, _TORCH_DTYPES[dtype])
    return dtype_obj


def load_tensor(read: RangeReader, header: SafetensorsHeader, name: str) -> torch.Tensor:
    """Load one tensor through validated offsets. BF16 and F8 are handled by torch."""
    import torch

    info = header.tensors[name]
    raw = bytearray(read_tensor_bytes(read, header, name))
    if info.numel == 0:
        return torch.empty(info.shape, dtype=torch_dtype(info.dtype))
    # safetensors stores little-endian data; every platform we deploy on is little-endian.
    return torch.frombuffer(raw, dtype=torch_dtype(info.dtype)).reshape(info.shape)


def iter_tensors(
    read: RangeReader, header: SafetensorsHeader
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield tensors one at a time in file order, so peak memory is one tensor."""
    for info in sorted(header.tensors.values(), key=lambda t: t.begin):
        yield info.name, load_tensor(read, header, info.name)
