"""A 200 MB file: multipart push with a verification job, parallel pull, resume after a kill."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.client.conftest import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SIZE_MB = 200
#: Parallel ranged parts for the interrupted pull (the default is one stream per file).
PART = 32 * 1024 * 1024


def write_big_jsonl(path: Path, size_mb: int) -> str:
    """``size_mb`` MiB of JSON lines with random text; returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    line_payload = 64 * 1024 - len('{"text": ""}\n')
    with path.open("wb") as fh:
        for _ in range(size_mb * 16):
            text = os.urandom(line_payload // 2).hex().encode() + b"x" * (line_payload % 2)
            line = b'{"text": "' + text + b'"}\n'
            fh.write(line)
            digest.update(line)
    assert path.stat().st_size == size_mb * 1024 * 1024
    return digest.hexdigest()


def journal_bytes(path: Path) -> int:
    try:
        return sum(b - a for a, b in json.loads(path.read_text())["ranges"])
    except (FileNotFoundError, ValueError, KeyError):
        return 0


def test_200mb_push_pull_and_resume_after_kill(hub: Hub, celery_worker: object) -> None:
    big = hub.tmp / "big" / "train.jsonl"
    sha = write_big_jsonl(big, SIZE_MB)
    size = big.stat().st_size

    # Push through the Python API: presigned multipart parts, then a finalize job (202).
    client = hub.client()
    pushed = client.push(big.parent, "alice/big-data", kind="dataset", message="200 MB")
    assert pushed.label == "v1"
    assert pushed.status == "valid"
    assert pushed.uploaded_files == 1
    assert pushed.bytes_uploaded == size
    assert [(f["path"], f["size"], f["sha256"]) for f in pushed.version["files"]] == [
        ("train.jsonl", size, sha)
    ]

    # Start a pull and kill it once part of the file is on disk.
    journal = hub.cache / "blobs" / f"{sha}.partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "strata", "pull", "alice/big-data@v1", "--quiet"],
        env=hub.env(STRATA_MAX_WORKERS="2", STRATA_PART_SIZE=str(PART), STRATA_LIMIT_RATE="40M"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while journal_bytes(journal) < 40 * 1024 * 1024:
        assert proc.poll() is None, "the pull ended before it could be killed"
        assert time.monotonic() < deadline, "the pull made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not (hub.cache / "blobs" / sha).exists()
    assert (hub.cache / "blobs" / f"{sha}.partial").exists()
    on_disk = journal_bytes(journal)
    assert 0 < on_disk < size

    # Run it again: only the missing ranges travel, and the blob is verified.
    resumed = hub.cli_json("pull", "alice/big-data@v1", STRATA_PART_SIZE=str(PART))
    stats = resumed["stats"]
    assert stats["bytes_resumed"] >= on_disk
    assert stats["bytes_downloaded"] + stats["bytes_resumed"] == size
    assert stats["bytes_downloaded"] < size
    assert stats["range_requests"] > 0
    blob = hub.cache / "blobs" / sha
    assert not journal.exists()
    digest = hashlib.sha256()
    with blob.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == sha
    assert os.path.samefile(Path(resumed["path"]) / "train.jsonl", blob)

    # A plain pull with default settings into a folder: nothing travels.
    out = hub.tmp / "out"
    again = hub.cli_json("pull", "alice/big-data", "-o", str(out))
    assert again["stats"]["bytes_downloaded"] == 0
    assert (out / "train.jsonl").stat().st_size == size

    # A fresh cache pulls the file in one stream (the default) and verifies it.
    other = hub.client(cache_dir=hub.tmp / "cache2")
    result = other.pull("alice/big-data@v1")
    assert result.stats.bytes_downloaded == size
    assert result.stats.range_requests == 0

    # A single-stream download cut short resumes with one Range request from where it was.
    cache3 = hub.tmp / "cache3"
    (cache3 / "blobs").mkdir(parents=True)
    cut = 123_456_789
    with big.open("rb") as src, (cache3 / "blobs" / f"{sha}.partial").open("wb") as dst:
        dst.write(src.read(cut))
    (cache3 / "blobs" / f"{sha}.partial.json").write_text(
        json.dumps({"size": size, "ranges": [[0, cut]]})
    )
    third = hub.client(cache_dir=cache3).pull("alice/big-data@v1")
    assert third.stats.bytes_resumed == cut
    assert third.stats.bytes_downloaded == size - cut
    assert third.stats.range_requests == 1
    assert (cache3 / "blobs" / sha).stat().st_size == size
