"""Streaming safetensors writer that hashes while it writes.

Merged and composed files are hashed on the way out, never by rereading them: a merged
checkpoint is gigabytes and the worker may upload it while the next shard is computed.
Writing is possible before any data exists because the header depends only on names,
dtypes and shapes, which the caller knows up front (a merge keeps the base's layout).
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from workers.safetensors_io import DTYPE_SIZES, torch_dtype

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True)
class OutputFile:
    """A finished output file: its name in the artifact, size, sha256 and where it lies."""

    path: str
    size: int
    sha256: str
    local_path: Path


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_SIZES[self.dtype]


def build_header(specs: Sequence[TensorSpec], metadata: Mapping[str, str] | None = None) -> bytes:
    """The 8-byte length prefix plus JSON header, tensors laid out in ``specs`` order.

    The JSON is padded with spaces to a multiple of 8 bytes, as the reference writer
    does, so the data section stays aligned for zero-copy loaders.
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for spec in specs:
        if spec.name in header or spec.name == "__metadata__":
            raise ValueError(f"duplicate tensor name {spec.name!r}")
        if spec.dtype not in DTYPE_SIZES:
            raise ValueError(f"unknown dtype {spec.dtype!r}")
        header[spec.name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return len(body).to_bytes(8, "little") + body


def dtype_code(dtype: torch.dtype) -> str:
    """The safetensors dtype string for a torch dtype (``torch.bfloat16`` -> ``"BF16"``)."""
    for code in DTYPE_SIZES:
        if torch_dtype(code) == dtype:
            return code
    raise ValueError(f"safetensors cannot store {dtype}")


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A zero-copy little-endian byte view of a CPU tensor (works for bf16, unlike numpy)."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


class HashingWriter:
    """Write bytes to a binary sink, counting and hashing them on the way."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hash.update(data)
        self._sink.write(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class SafetensorsWriter:
    """Write one safetensors file: the header at once, then data in layout order.

    Data may be appended in any chunking (a run of untouched tensors can be copied as one
    byte range); :meth:`finish` refuses a file whose data section is short or long.
    """

    def __init__(
        self,
        local_path: Path,
        name: str,
        specs: Sequence[TensorSpec],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.local_path = local_path
        self.data_size = sum(spec.nbytes for spec in specs)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = local_path.open("wb")
        self._out = HashingWriter(self._fh)
        self._out.write(build_header(specs, metadata))
        self._data_start = self._out.size

    @property
    def position(self) -> int:
        """Bytes of the data section written so far."""
        return self._out.size - self._data_start

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.position + len(data) > self.data_size:
            raise ValueError(f"{self.name}: more data than the header declares")
        self._out.write(data)

    def write_tensor(self, tensor: torch.Tensor) -> None:
        self.write(tensor_bytes(tensor))

    def finish(self) -> OutputFile:
        self._fh.close()
        if self.position != self.data_size:
            raise ValueError(
                f"{self.name}: wrote {self.position} data bytes, the header declares "
                f"{self.data_size}"
            )
        return OutputFile(self.name, self._out.size, self._out.hexdigest(), self.local_path)

    def abort(self) -> None:
        """Close and remove a partial file after an error."""
        self._fh.close()
        self.local_path.unlink(missing_ok=True)


Chunk = bytes | bytearray | memoryview


class WriteBehind:
    """Run writes (hash + file write) on one background thread, in submission order.

    Both hashlib and file writes release the GIL, so hashing and writing one tensor
    overlaps with reading and computing the next. ``put`` blocks while ``depth`` writes
    are queued, so at most ``in_flight`` submitted buffers are alive and unwritten: a
    caller that reuses buffers must rotate through at least ``in_flight + 1`` of them.
    """

    def __init__(self, depth: int = 1) -> None:
        self.in_flight = depth + 1  # queued + the one being written
        self._queue: queue.Queue[tuple[Callable[[Chunk], None], Chunk] | None] = queue.Queue(
            maxsize=depth
        )
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._cancelled:
                    item[0](item[1])
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def put(self, write: Callable[[Chunk], None], data: Chunk) -> None:
        self._raise()
        self._queue.put((write, data))

    def wait(self) -> None:
        """Block until every submitted write is done; re-raise a write's error here."""
        self._queue.join()
        self._raise()

    def cancel(self) -> None:
        """Drop pending writes (after an error elsewhere) and wait for the thread to idle."""
        self._cancelled = True
        self._queue.join()
        self._cancelled = False
        self._error = None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cancelled = exc[0] is not None
        self._queue.put(None)
        self._thread.join()


def write_bytes(local_path: Path, name: str, data: bytes) -> OutputFile:
    """Write a small file (a JSON index or config) and hash it."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    with local_path.open("wb") as fh:
        out = HashingWriter(fh)
        out.write(data)
    return OutputFile(name, out.size, out.hexdigest(), local_path)


def write_safetensors(
    local_path: Path,
    name: str,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> OutputFile:
    """Write small in-memory tensors (an adapter) through the same hashing writer."""
    specs = [TensorSpec(n, dtype_code(t.dtype), tuple(t.shape)) for n, t in tensors.items()]
    writer = SafetensorsWriter(local_path, name, specs, metadata)
    try:
        for tensor in tensors.values():
            writer.write_tensor(tensor.cpu())
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
