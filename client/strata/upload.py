"""Pushing a folder: hash locally, upload only what the hub lacks, straight to storage.

The hub answers an upload session with, per file, ``exists`` (nothing to send), a
presigned ``put``, or ``multipart`` part URLs. Parts of every file go up in parallel
from one thread pool; the commit then publishes the version (201) or queues a job that
hashes large files first (202), which :class:`~strata.client.Client` follows.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import StrataError, UsageError
from strata.http import Transport
from strata.progress import Progress

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz")
#: What the hub accepts (hub/registry/names.py); other files are skipped with a warning.
ACCEPTED_NAMES = frozenset(
    {
        "adapter_config.json",
        "config.json",
        "generation_config.json",
        "README.md",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "chat_template.jinja",
        ".gitattributes",
    }
)
ACCEPTED_SUFFIXES = (".safetensors", ".safetensors.index.json", ".jsonl", ".txt", ".parquet")
HASH_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, with forward slashes
    local: Path
    size: int
    sha256: str = ""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def refusal_reason(name: str) -> str | None:
    """Why the hub would refuse a file name, or None if it accepts it."""
    lower = name.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        return "pickle-based format (the hub accepts safetensors only)"
    if lower.endswith(".py"):
        return "Python code"
    if name not in ACCEPTED_NAMES and not lower.endswith(ACCEPTED_SUFFIXES):
        return "not an accepted file type"
    return None


def collect_files(
    folder: Path, *, exclude: Iterable[str] = ()
) -> tuple[list[LocalFile], list[Skipped]]:
    """The files of ``folder`` to push; hidden entries, excluded globs and refused types out."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a directory.", code="not_a_directory")
    patterns = list(exclude)
    files: list[LocalFile] = []
    skipped: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            local = Path(dirpath) / filename
            rel = local.relative_to(folder).as_posix()
            if filename.startswith(".") and filename != ".gitattributes":
                continue
            if any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(filename, p) for p in patterns):
                skipped.append(Skipped(rel, "excluded"))
                continue
            if not local.is_file():
                continue
            reason = refusal_reason(filename)
            if reason:
                skipped.append(Skipped(rel, reason))
                continue
            files.append(LocalFile(rel, local, local.stat().st_size))
    if not files:
        raise UsageError(f"{folder} holds no file the hub accepts.", code="no_files")
    return files, skipped


def hash_files(files: list[LocalFile], *, workers: int, progress: bool) -> list[LocalFile]:
    total = sum(f.size for f in files)
    with (
        Progress(total, "Hashing", enabled=progress) as bar,
        ThreadPoolExecutor(max(1, min(workers, len(files), os.cpu_count() or 2))) as pool,
    ):

        def one(f: LocalFile) -> LocalFile:
            digest = hashlib.sha256()
            with f.local.open("rb") as fh:
                while chunk := fh.read(HASH_CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
            return LocalFile(f.path, f.local, f.size, digest.hexdigest())

        return list(pool.map(one, files))


class FileSlice:
    """``length`` bytes of a file from ``offset``, as a sized stream for a PUT body."""

    def __init__(self, path: Path, offset: int, length: int, bar: Progress) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self.bar = bar
        self._fh = path.open("rb")
        self._pos = 0
        self._reported = 0
        self._fh.seek(offset)

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        left = self.length - self._pos
        if left <= 0:
            return b""
        n = left if n is None or n < 0 else min(n, left)
        data = self._fh.read(n)
        self._pos += len(data)
        if self._pos > self._reported:
            self.bar.update(self._pos - self._reported)
            self._reported = self._pos
        return data

    def rewind(self) -> None:
        self._fh.seek(self.offset)
        self._pos = 0

    def close(self) -> None:
        self._fh.close()


@dataclass
class UploadResult:
    session: dict[str, Any]
    parts: dict[str, list[dict[str, Any]]]
    uploaded_files: int
    reused_files: int
    bytes_uploaded: int


def upload_session(
    transport: Transport,
    repo: str,
    files: list[LocalFile],
    *,
    workers: int,
    progress: bool,
) -> UploadResult:
    """Open a session, send the bytes the hub lacks, and return what the commit needs."""
    by_path = {f.path: f for f in files}
    _, session = transport.post_json(
        f"repos/{repo}/uploads",
        {"files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]},
    )
    instructions: list[dict[str, Any]] = session.get("files") or []
    todo = [i for i in instructions if not i.get("exists")]
    total = sum(by_path[i["path"]].size for i in todo)
    parts: dict[str, list[dict[str, Any]]] = {}
    lock = threading.Lock()

    def put(url: str, headers: dict[str, str], f: LocalFile, offset: int, length: int) -> str:
        body = FileSlice(f.local, offset, length, bar)
        try:
            response = transport.request(
                "PUT",
                url,
                hub=False,
                headers={**headers, "Content-Length": str(length)},
                data=body,
                rewind=body.rewind,
                timeout=(10.0, 600.0),
            )
        finally:
            body.close()
        return response.headers.get("ETag", "")

    def put_whole(url: str, headers: dict[str, str], f: LocalFile) -> None:
        put(url, headers, f, 0, f.size)

    def send_part(path: str, number: int, url: str, offset: int, length: int) -> None:
        etag = put(url, {}, by_path[path], offset, length)
        if not etag:
            raise StrataError(f"{path}: storage gave no ETag for part {number}.", code="no_etag")
        with lock:
            parts.setdefault(path, []).append({"part_number": number, "etag": etag})

    with (
        Progress(total, f"Uploading to {repo}", enabled=progress) as bar,
        ThreadPoolExecutor(workers, thread_name_prefix="strata-up") as pool,
    ):
        futures = []
        for item in todo:
            f = by_path[item["path"]]
            if "multipart" in item:
                spec = item["multipart"]
                part_size = int(spec["part_size"])
                for p in spec["parts"]:
                    number = int(p["part_number"])
                    offset = (number - 1) * part_size
                    length = max(0, min(part_size, f.size - offset))
                    futures.append(
                        pool.submit(send_part, f.path, number, str(p["url"]), offset, length)
                    )
            elif "put" in item:
                spec = item["put"]
                headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
                futures.append(pool.submit(put_whole, str(spec["url"]), headers, f))
            else:
                raise StrataError(
                    f"The hub gave no upload instructions for {item.get('path')}.",
                    code="bad_upload_answer",
                )
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    for given in parts.values():
        given.sort(key=lambda p: int(p["part_number"]))
    return UploadResult(
        session=session,
        parts=parts,
        uploaded_files=len(todo),
        reused_files=len(instructions) - len(todo),
        bytes_uploaded=total,
    )
