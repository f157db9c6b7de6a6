"""Progress bars: shown on stderr for transfers that last over a second, on a terminal only."""

from __future__ import annotations

import os
import sys
import threading
from types import TracebackType
from typing import Any


def progress_enabled(quiet: bool = False) -> bool:
    """Bars only when a person is watching: not with --quiet, not when piped."""
    if quiet or os.environ.get("STRATA_QUIET", "").lower() in ("1", "true", "yes"):
        return False
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A thread-safe byte counter with an optional tqdm bar (appears after 1 s)."""

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                delay=1.0,
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=0.2,
            )

    def update(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def status_line(message: str, *, enabled: bool) -> None:
    """A transient line on stderr (job progress), overwritten by the next one."""
    if enabled:
        sys.stderr.write("\r\x1b[2K" + message[:200])
        sys.stderr.flush()


def end_status(*, enabled: bool) -> None:
    if enabled:
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()
