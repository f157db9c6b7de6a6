"""Parallel, resumable, verified downloads into the blob cache.

Files download in parallel on a shared thread pool, each as one stream by default (or cut
into ``STRATA_PART_SIZE`` parts fetched with ``Range`` requests), written in place into
``blobs/<sha256>.partial``. A small journal (``<sha256>.partial.json``) records which byte
ranges are on disk, so a killed download resumes where it stopped with ``Range``
requests. The sha256 is computed while the bytes arrive, and a blob is only moved into
place once it matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests

from strata.cache import Cache, FileEntry
from strata.errors import IntegrityError, NetworkError, StrataError
from strata.http import Transport, backoff_seconds
from strata.progress import Progress

log = logging.getLogger("strata")

CHUNK = 1024 * 1024
#: Default bytes per ranged request: one request per file up to this size.
PART_SIZE = 2 * 1024 * 1024 * 1024
#: The journal is rewritten after this many new bytes, at most every JOURNAL_INTERVAL s.
JOURNAL_EVERY = 4 * 1024 * 1024
JOURNAL_INTERVAL = 0.25
#: Chunks waiting for the hasher, at most; beyond that they are reread from the file.
HASH_QUEUE_MAX = 64


def _env_int(name: str, default: int, minimum: int) -> int:
    try:
        return max(minimum, int(os.environ.get(name, default)))
    except ValueError:
        return default


def default_workers() -> int:
    return _env_int("STRATA_MAX_WORKERS", 8, 1)


def default_part_size() -> int:
    """Bytes per ranged request within one file (``STRATA_PART_SIZE``).

    One stream per file by default: files download in parallel with each other, and a
    single file is not cut up unless it is larger than this. Object stores that reward
    parallel ranged reads of one object (S3 from a fast network) can lower it.
    """
    return _env_int("STRATA_PART_SIZE", PART_SIZE, 1024 * 1024)


def parse_rate(text: str | None) -> float | None:
    """``STRATA_LIMIT_RATE`` as bytes per second: ``500K``, ``20M``, ``1G`` or a number."""
    if not text or not text.strip():
        return None
    text = text.strip().upper().removesuffix("B").removesuffix("/S")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        return None
    return value if value > 0 else None


class RateLimit:
    """Caps the total download rate across threads (``STRATA_LIMIT_RATE``)."""

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.amount = 0

    def consume(self, n: int) -> None:
        with self.lock:
            self.amount += n
            due = self.started + self.amount / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass
class DownloadStats:
    files: int = 0
    files_cached: int = 0
    files_downloaded: int = 0
    bytes_total: int = 0
    bytes_downloaded: int = 0
    bytes_resumed: int = 0
    range_requests: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def merge(self, other: DownloadStats) -> None:
        self.add(
            files=other.files,
            files_cached=other.files_cached,
            files_downloaded=other.files_downloaded,
            bytes_total=other.bytes_total,
            bytes_downloaded=other.bytes_downloaded,
            bytes_resumed=other.bytes_resumed,
            range_requests=other.range_requests,
        )
        self.seconds += other.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_cached": self.files_cached,
            "files_downloaded": self.files_downloaded,
            "bytes_total": self.bytes_total,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_resumed": self.bytes_resumed,
            "range_requests": self.range_requests,
            "seconds": round(self.seconds, 3),
        }


class _Cancelled(StrataError):
    """Another file failed or the user interrupted: stop this transfer quickly."""

    def __init__(self) -> None:
        super().__init__("download cancelled", code="cancelled")


@dataclass(frozen=True)
class RemoteFile:
    entry: FileEntry
    #: The hub URL of the file (answers with a redirect to storage, or the bytes).
    url: str


class _FileJob:
    """One blob being downloaded: its parts, journal, open file and running hash.

    Parts are written in place with ``pwrite``. A single stream hashes its chunks as it
    writes them; with several parts, a hasher thread follows the contiguous written
    prefix (chunks that extend it are handed over in memory, others are read back from the
    page cache), so verification overlaps the transfer instead of adding a pass at the end.
    """

    def __init__(self, cache: Cache, remote: RemoteFile, part_size: int) -> None:
        self.cache = cache
        self.remote = remote
        self.entry = remote.entry
        size = self.entry.size
        self.part_size = min(part_size, size) if size else 1
        count = max(1, -(-size // self.part_size))
        self.spans = [
            (i * self.part_size, min(size, (i + 1) * self.part_size)) for i in range(count)
        ]
        self.done = [0] * count
        self.lock = threading.Lock()
        self.queue: queue.Queue[bytes] = queue.Queue()
        #: Bytes below this are hashed or queued for hashing, in order.
        self.frontier = 0
        self.digest = hashlib.sha256()
        self.hashed_to = 0
        self.writers_done = False
        self.cancelled = False
        self.hash_error: BaseException | None = None
        self.fd = -1
        self.url: str | None = None
        self.hub_stream = False  # the hub serves the bytes itself (no object storage URL)
        self.unjournaled = 0
        self.journaled_at = 0.0
        #: A single part is streamed in order by one thread, which hashes as it writes;
        #: several parts are hashed by a separate thread following the written prefix.
        self.inline = len(self.spans) == 1

    # --- journal -----------------------------------------------------------------------

    def load_journal(self) -> int:
        """Bytes already on disk from an interrupted run (0 when starting over)."""
        partial = self.cache.partial_path(self.entry.sha256)
        journal = self.cache.journal_path(self.entry.sha256)
        try:
            data = json.loads(journal.read_text())
            if data.get("size") != self.entry.size:
                raise ValueError("another file")
            ranges = sorted((int(a), int(b)) for a, b in data["ranges"])
            on_disk = partial.stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            # No usable journal: nothing on disk can be trusted.
            partial.unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
            return 0
        # Written ranges -> the contiguous prefix of each part (any part size works).
        for i, (start, end) in enumerate(self.spans):
            reach = start
            for a, b in ranges:
                if a <= reach < b:
                    reach = b
            self.done[i] = max(0, min(reach, end, on_disk) - start)
        return sum(self.done)

    def save_journal(self) -> None:
        ranges = [[s, s + d] for (s, _), d in zip(self.spans, self.done, strict=True) if d]
        data = {"size": self.entry.size, "ranges": ranges}
        path = self.cache.journal_path(self.entry.sha256)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def record(self, part: int, position: int, data: bytes) -> None:
        """``data`` was written at ``position``: note it, and pass it to the hasher if
        it continues the hashed prefix (so it is hashed from memory, not reread)."""
        n = len(data)
        with self.lock:
            self.done[part] += n
            self.unjournaled += n
            if self.unjournaled >= JOURNAL_EVERY:
                now = time.monotonic()
                if now - self.journaled_at >= JOURNAL_INTERVAL:
                    self.unjournaled = 0
                    self.journaled_at = now
                    self.save_journal()
            if self.inline:
                # One stream, in order: hash right here (see hash_prefix).
                self.frontier += n
            elif position == self.frontier and self.queue.qsize() < HASH_QUEUE_MAX:
                self.queue.put(data)
                self.frontier += n
                return
            else:
                return
        self.digest.update(data)
        self.hashed_to += n

    def hash_prefix(self) -> None:
        """Inline mode: hash what an earlier run left on disk before streaming on."""
        end = self.done[0]
        offset = 0
        while offset < end:
            chunk = os.pread(self.fd, min(8 * CHUNK, end - offset), offset)
            if not chunk:
                raise IntegrityError(f"{self.entry.path}: short read from the cache")
            self.digest.update(chunk)
            offset += len(chunk)
        self.frontier = self.hashed_to = end

    def part_complete(self, part: int) -> bool:
        start, end = self.spans[part]
        return self.done[part] >= end - start

    # --- hashing -----------------------------------------------------------------------

    def _written_end(self) -> int:
        """How far the contiguous written prefix reaches (call with the lock held)."""
        reach = self.frontier
        index = reach // self.part_size
        while index < len(self.spans):
            start, end = self.spans[index]
            written = start + self.done[index]
            if written <= reach and reach < end:
                break
            reach = max(reach, written)
            if written < end:
                break
            index += 1
        return reach

    def hash_loop(self) -> None:
        """The hasher thread: hash the file in order, from memory or from the page cache.

        Chunks that extend the prefix arrive through the queue; bytes written out of
        order (other parts) are read back once the prefix reaches them.
        """
        try:
            while True:
                try:
                    data = self.queue.get(timeout=0.05)
                except queue.Empty:
                    pass
                else:
                    self.digest.update(data)
                    self.hashed_to += len(data)
                    continue
                with self.lock:
                    if not self.queue.empty():
                        continue
                    start, end = self.frontier, self._written_end()
                    self.frontier = end
                    finished = self.writers_done
                offset = start
                while offset < end:
                    chunk = os.pread(self.fd, min(8 * CHUNK, end - offset), offset)
                    if not chunk:
                        raise IntegrityError(f"{self.entry.path}: short read from the cache")
                    self.digest.update(chunk)
                    offset += len(chunk)
                self.hashed_to = end
                if finished and start == end:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the coordinator
            self.hash_error = exc

    def writers_finished(self) -> None:
        with self.lock:
            self.writers_done = True


class Downloader:
    def __init__(
        self,
        transport: Transport,
        cache: Cache,
        *,
        workers: int | None = None,
        part_size: int | None = None,
    ) -> None:
        self.transport = transport
        self.cache = cache
        self.workers = workers or default_workers()
        self.part_size = part_size or default_part_size()
        self._cancel = threading.Event()
        rate = parse_rate(os.environ.get("STRATA_LIMIT_RATE"))
        self._limit = RateLimit(rate) if rate else None

    def fetch(self, files: list[RemoteFile], *, description: str, progress: bool) -> DownloadStats:
        """Make sure every file is in the blob cache, verified. Returns what it took."""
        started = time.monotonic()
        stats = DownloadStats(files=len(files), bytes_total=sum(f.entry.size for f in files))
        unique: dict[str, RemoteFile] = {}
        for f in files:
            if self.cache.has_blob(f.entry):
                stats.add(files_cached=1)
            else:
                unique.setdefault(f.entry.sha256, f)
        todo = list(unique.values())
        if not todo:
            stats.seconds = time.monotonic() - started
            return stats
        total = sum(f.entry.size for f in todo)
        self._cancel.clear()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="strata-dl")
        # One coordinator per file resolves its URL, queues its parts on the shared pool
        # and verifies it; the parts of every file share the same worker threads.
        outer = ThreadPoolExecutor(min(len(todo), self.workers), thread_name_prefix="strata-file")
        with Progress(total, description, enabled=progress) as bar:
            try:
                futures = [
                    outer.submit(self._fetch_one, remote, pool, bar, stats) for remote in todo
                ]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        raise exc
                for fut in futures:
                    fut.result()
            except BaseException:
                self._cancel.set()
                raise
            finally:
                outer.shutdown(wait=True, cancel_futures=True)
                pool.shutdown(wait=True, cancel_futures=True)
        stats.seconds = time.monotonic() - started
        return stats

    # --- one file ----------------------------------------------------------------------

    def _fetch_one(
        self, remote: RemoteFile, pool: ThreadPoolExecutor, bar: Progress, stats: DownloadStats
    ) -> None:
        with self.cache.blob_lock(remote.entry.sha256):
            if self.cache.has_blob(remote.entry):
                stats.add(files_cached=1)
                bar.update(remote.entry.size)
                return
            for attempt in range(2):
                job = _FileJob(self.cache, remote, self.part_size)
                resumed = job.load_journal()
                if resumed:
                    stats.add(bytes_resumed=resumed)
                    bar.update(resumed)
                try:
                    self._run(job, pool, bar, stats, count_download=attempt == 0)
                except IntegrityError:
                    self.cache.partial_path(remote.entry.sha256).unlink(missing_ok=True)
                    self.cache.journal_path(remote.entry.sha256).unlink(missing_ok=True)
                    if attempt == 1:
                        raise
                    log.warning("%s failed verification; downloading it again", remote.entry.path)
                    continue
                self.cache.promote(remote.entry.sha256)
                stats.add(files_downloaded=1)
                return

    def _run(
        self,
        job: _FileJob,
        pool: ThreadPoolExecutor,
        bar: Progress,
        stats: DownloadStats,
        *,
        count_download: bool,
    ) -> None:
        partial = self.cache.partial_path(job.entry.sha256)
        job.fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        hasher = threading.Thread(
            target=job.hash_loop, name=f"strata-hash-{job.entry.sha256[:8]}", daemon=True
        )
        if job.inline:
            job.hash_prefix()
        else:
            hasher.start()
        try:
            try:
                if job.entry.size:
                    started = time.monotonic()
                    self._resolve_url(job, count=count_download)
                    log.info(
                        "%s: located in %.3fs (%s)",
                        job.entry.path,
                        time.monotonic() - started,
                        "hub" if job.hub_stream else "object storage",
                    )
                    started = time.monotonic()
                    pending = [i for i in range(len(job.spans)) if not job.part_complete(i)]
                    futures: list[Future[None]] = [
                        pool.submit(self._fetch_part, job, i, bar, stats) for i in pending
                    ]
                    try:
                        for fut in futures:
                            fut.result()
                    except BaseException:
                        job.cancelled = True
                        for fut in futures:
                            fut.cancel()
                        for fut in futures:
                            if not fut.cancelled():
                                with contextlib.suppress(BaseException):
                                    fut.result()
                        raise
                    log.info(
                        "%s: %d part(s) transferred in %.3fs",
                        job.entry.path,
                        len(futures),
                        time.monotonic() - started,
                    )
            finally:
                with job.lock:
                    if job.entry.size:
                        job.save_journal()
                job.writers_finished()
                if not job.inline:
                    started = time.monotonic()
                    hasher.join()
                    log.info(
                        "%s: hash finished %.3fs later", job.entry.path, time.monotonic() - started
                    )
            if job.hash_error is not None:
                raise job.hash_error
            if job.hashed_to != job.entry.size:
                raise IntegrityError(
                    f"{job.entry.path}: only {job.hashed_to} of {job.entry.size} bytes arrived"
                )
            actual = job.digest.hexdigest()
            if not hmac.compare_digest(actual, job.entry.sha256):
                raise IntegrityError(
                    f"{job.entry.path}: downloaded bytes hash to {actual}, not {job.entry.sha256}",
                    code="sha256_mismatch",
                )
        finally:
            os.close(job.fd)

    def _resolve_url(self, job: _FileJob, *, count: bool) -> None:
        """Ask the hub where the bytes are. A plain GET counts a download; a Range one not."""
        headers = None if count else {"Range": "bytes=0-0"}
        response = self.transport.request(
            "GET", job.remote.url, headers=headers, stream=True, allow_redirects=False
        )
        try:
            if response.status_code in (301, 302, 303, 307, 308):
                job.url = self.transport.resolve_redirect(response)
                job.hub_stream = False
            else:
                job.url = job.remote.url
                job.hub_stream = True
        finally:
            response.close()

    def _fetch_part(self, job: _FileJob, part: int, bar: Progress, stats: DownloadStats) -> None:
        start, end = job.spans[part]
        attempt = 0
        refreshed = False
        while not job.part_complete(part):
            offset = start + job.done[part]
            try:
                self._stream_range(job, part, offset, end, bar, stats)
            except NetworkError as exc:
                if exc.status == 403 or "presigned" in exc.message:
                    if refreshed:
                        raise
                    refreshed = True
                    self._resolve_url(job, count=False)
                    continue
                raise
            except requests.RequestException as exc:
                # A connection dropped mid-body: carry on from the bytes already on disk.
                if attempt >= self.transport.max_retries:
                    raise NetworkError(
                        f"{job.entry.path}: the download kept failing ({type(exc).__name__})",
                        code="network_error",
                    ) from exc
                time.sleep(backoff_seconds(attempt))
                attempt += 1

    def _stream_range(
        self,
        job: _FileJob,
        part: int,
        offset: int,
        end: int,
        bar: Progress,
        stats: DownloadStats,
    ) -> None:
        assert job.url is not None
        whole = offset == 0 and end == job.entry.size
        headers = {} if whole else {"Range": f"bytes={offset}-{end - 1}"}
        if headers:
            stats.add(range_requests=1)
        asked = time.monotonic()
        response = self.transport.request(
            "GET",
            job.url,
            hub=job.hub_stream,
            headers=headers,
            stream=True,
            allow_redirects=not job.hub_stream,
        )
        try:
            if response.status_code in (301, 302, 303, 307, 308):
                # The hub redirected a streamed URL after all (storage backend changed).
                job.url = self.transport.resolve_redirect(response)
                job.hub_stream = False
                return
            if headers and response.status_code != 206:
                raise StrataError(
                    f"{job.entry.path}: the server ignored the Range header "
                    f"(HTTP {response.status_code})",
                    code="range_not_supported",
                )
            log.debug(
                "%s: bytes %d-%d answered in %.3fs",
                job.entry.path,
                offset,
                end,
                time.monotonic() - asked,
            )
            position = offset
            for data in response.iter_content(CHUNK):
                if self._cancel.is_set() or job.cancelled:
                    raise _Cancelled()
                if position + len(data) > end:
                    data = data[: end - position]
                while data:
                    written = os.pwrite(job.fd, data, position)
                    job.record(part, position, data[:written] if written < len(data) else data)
                    position += written
                    bar.update(written)
                    stats.add(bytes_downloaded=written)
                    data = data[written:]
                    if self._limit is not None:
                        self._limit.consume(written)
                if position >= end:
                    break
        finally:
            response.close()
