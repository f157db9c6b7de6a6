"""Speed and memory of one forward pass: latency, tokens/second and peak working memory.

Memory is the *working* memory of a forward pass, over what was resident before it
(the weights are reported separately as ``weights_bytes``):

* CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the pass
  (tensors only; the caching allocator's reserve is not counted).
* CPU: the process's peak resident set size minus its RSS before the pass. Freed heap
  memory is first handed back to the OS (glibc ``malloc_trim``): otherwise the pass would
  reuse pages that earlier passes left resident and show almost no growth. The peak is
  the kernel's high-water mark (``VmHWM``), reset through ``/proc/self/clear_refs``;
  where that is not allowed, a thread samples RSS every millisecond (which can miss
  short spikes). ``memory_method`` in the result says which one was used. This is an
  estimate: anything else the process allocates meanwhile counts too.

Memory is measured on a separate pass after the timed ones, so neither the reset nor a
sampling thread slows down the timings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True, slots=True)
class SpeedStats:
    batch: int
    seq_len: int
    warmup: int
    repeats: int
    latency_median_s: float
    latency_min_s: float
    latency_max_s: float
    tokens_per_second: float
    peak_bytes: int
    memory_method: str
    weights_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _trim_heap() -> None:
    """Give freed heap pages back to the OS (a no-op where libc has no malloc_trim)."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _rss_bytes() -> int:
    rss = _status_kb("VmRSS")
    if rss is not None:
        return rss
    import psutil  # only where /proc is missing; psutil comes with accelerate

    return int(psutil.Process().memory_info().rss)


class _RssSampler:
    """Polls RSS in a thread; the fallback where the kernel's peak cannot be reset."""

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def measure_peak(run: Callable[[], object], device: torch.device) -> tuple[int, str]:
    """Working memory of ``run()`` over what was allocated before it, and how measured."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, "cuda_max_allocated"
    _trim_heap()
    before = _rss_bytes()
    if _reset_rss_peak():
        run()
        peak = _status_kb("VmHWM") or 0
        return max(0, peak - before), "cpu_rss_hwm"
    with _RssSampler() as sampler:
        run()
    return max(0, sampler.peak - before), "cpu_rss_sampled"


def weights_bytes(model: Any) -> int:
    """Bytes of parameters and buffers (tied weights counted once)."""
    seen: set[int] = set()
    total = 0
    for t in (*model.parameters(), *model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def fixed_ids(vocab_size: int, batch: int, seq_len: int, seed: int) -> torch.Tensor:
    """The same token ids on every machine for a given vocabulary size and seed."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=generator)


def measure_speed(
    model: Any,
    input_ids: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    device: torch.device,
) -> tuple[SpeedStats, torch.Tensor]:
    """Time ``repeats`` forward passes after ``warmup`` ones; returns the stats and the
    output (logits or last hidden state, float32 on the CPU) to compare models with."""
    import torch

    ids = input_ids.to(device)
    mask = torch.ones_like(ids)
    out: dict[str, torch.Tensor] = {}

    def forward() -> None:
        with torch.inference_mode():
            result = model(input_ids=ids, attention_mask=mask)
        value = getattr(result, "logits", None)
        out["value"] = value if value is not None else result.last_hidden_state

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        forward()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        sync()
        times.append(time.perf_counter() - start)
    output = out["value"].float().cpu()
    out.clear()  # so the memory pass starts without the last output resident
    peak, method = measure_peak(forward, device)
    median = statistics.median(times)
    stats = SpeedStats(
        batch=int(ids.shape[0]),
        seq_len=int(ids.shape[1]),
        warmup=warmup,
        repeats=repeats,
        latency_median_s=median,
        latency_min_s=min(times),
        latency_max_s=max(times),
        tokens_per_second=ids.numel() / median,
        peak_bytes=peak,
        memory_method=method,
        weights_bytes=weights_bytes(model),
    )
    return stats, output
