"""Download counts: gathered in memory, written every few seconds in one transaction.

Every counted pull adds one to its version and its repository. Written on the request,
each HEAD of a popular file waited for an UPDATE of the same two rows that every other
pull of that file was updating, so under load the pulls queued on those rows' locks
(and left a dead row version each). Now each web process adds counts up in memory and a
timer writes them ``DOWNLOAD_COUNT_FLUSH_SECONDS`` after the first one arrives: one
UPDATE per version and repository per interval, whatever the traffic.

The price: counts show up a few seconds late, and a process killed with SIGKILL loses
what it had not written (a normal exit writes them). ``DOWNLOAD_COUNT_FLUSH_SECONDS=0``
writes each count on its request instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections import Counter

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from hub.registry.models import Repository, Version

log = logging.getLogger(__name__)


class DownloadCounter:
    """Counts per version and per repository, waiting to be written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: Counter[int] = Counter()
        self._repositories: Counter[int] = Counter()
        self._timer: threading.Timer | None = None

    def add(self, version_id: int, repository_id: int, *, flush_after: float) -> None:
        with self._lock:
            self._versions[version_id] += 1
            self._repositories[repository_id] += 1
            self._schedule(flush_after)

    def flush(self) -> None:
        """Write what is pending. On a database error the counts wait for the next try."""
        with self._lock:
            versions, self._versions = self._versions, Counter()
            repositories, self._repositories = self._repositories, Counter()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not versions:
            return
        try:
            write(versions, repositories)
        except DatabaseError:
            log.warning("download counts not written yet; retrying later", exc_info=True)
            with self._lock:
                self._versions.update(versions)
                self._repositories.update(repositories)
                self._schedule(max(_interval(), 1.0))

    def _schedule(self, after: float) -> None:
        # Called with the lock held: one timer at a time, started by the first count.
        if self._timer is None:
            self._timer = threading.Timer(after, self._flush_on_timer)
            self._timer.daemon = True
            self._timer.start()

    def _flush_on_timer(self) -> None:
        try:
            self.flush()
        finally:
            connection.close()  # this thread's own connection; the thread ends here


def write(versions: Counter[int], repositories: Counter[int]) -> None:
    """Add the counts to the rows, all or nothing."""
    with transaction.atomic():
        # Sorted, so concurrent writers (several web processes) lock rows in one order.
        for pk, count in sorted(versions.items()):
            Version.objects.filter(pk=pk).update(downloads=F("downloads") + count)
        for pk, count in sorted(repositories.items()):
            Repository.objects.filter(pk=pk).update(downloads=F("downloads") + count)


def _interval() -> float:
    return float(settings.DOWNLOAD_COUNT_FLUSH_SECONDS)


_pending = DownloadCounter()


def flush_pending() -> None:
    """Write this process's pending counts now (at exit, and in tests)."""
    _pending.flush()


def _start_afresh() -> None:
    # In a forked child: the parent's timer thread did not come along, nor should its counts.
    global _pending
    _pending = DownloadCounter()


atexit.register(flush_pending)
os.register_at_fork(after_in_child=_start_afresh)


def download_record(version: Version) -> None:
    """Count one download of a version (and of its repository)."""
    interval = _interval()
    if interval <= 0:
        write(Counter({version.pk: 1}), Counter({version.repository_id: 1}))
        return
    _pending.add(version.pk, version.repository_id, flush_after=interval)
