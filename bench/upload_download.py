"""Benchmark pushing and pulling one large file through the hub against direct S3.

Starts everything on loopback ports: a moto S3 server, a fresh PostgreSQL database
(``strata_bench`` by default, dropped and recreated), ``gunicorn hub.wsgi`` with 2 sync
workers and a Celery worker (large session pushes are verified by a ``finalize_upload``
job). Then, with the same ``--size-mb`` bytes and the same S3 endpoint, it times:

* push, direct: boto3 ``upload_file`` (managed multipart, 8 MB parts, 10 threads) and
  one ``put_object``;
* push, hub, one request: a streamed ``multipart/form-data`` POST to
  ``/api/v1/repos/{ns}/{name}/versions`` (the hub spools, hashes, then stores the blob);
* push, hub, upload session: declare, PUT the presigned part URLs (4 threads), commit,
  and wait until the version is published (the worker rereads and hashes the object);
* pull, direct: boto3 ``get_object`` streamed to a file (one stream; ``download_file``
  too with ``--download-file``: moto answers parallel ranged GETs slowly);
* pull, hub: GET the file URL, follow the 302 to the presigned S3 URL, stream to a file
  (interleaved with the direct pulls, ``--pull-repeat`` rounds).

While the hub pushes run, the gunicorn workers' RSS is sampled (psutil, every 20 ms).
Prints a table and one JSON line with the median seconds, MB/s, ratios (hub / direct),
the hub's 302 latency and the peak RSS. Goals: pull >= 0.9x direct S3; web peak RSS
< 200 MB during a 1 GB push.

Usage::

    .venv/bin/python bench/upload_download.py --size-mb 200
    .venv/bin/python bench/upload_download.py              # 1024 MiB
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    free_port,
    fresh_database,
    hub_env,
    run_seed,
    sha256_of,
    start_hub,
    start_moto,
    workspace,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MIB = 1024 * 1024

SEED = r"""
import json
from hub.accounts.services import token_create, user_create
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.storage import S3BlobStore, get_blob_store

store = get_blob_store()
assert isinstance(store, S3BlobStore)
store.ensure_bucket()
user = user_create(username="bench", password="bench-password-123")
actor = Actor(user=user, write_scope=True)
for name in ("via-request", "via-session"):
    services.repository_create(actor=actor, namespace="bench", name=name, kind="dataset")
print(json.dumps({"token": token_create(user=user, name="bench", scope="write").secret,
                  "bucket": store.bucket}))
"""


def write_data(path: Path, size: int) -> str:
    """``size`` random bytes (incompressible, and different per file: no dedupe)."""
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(8 * MIB, left))
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


class MultipartBody:
    """A ``multipart/form-data`` body streamed from disk, with a known length.

    Iterable (1 MiB chunks) and sized, so ``requests`` sends it with a Content-Length
    and without loading the file into memory.
    """

    def __init__(self, field: str, path: Path, metadata: dict[str, Any]) -> None:
        self.boundary = f"bench-{uuid.uuid4().hex}"
        b = self.boundary
        self.head = (
            f'--{b}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
            f"{json.dumps(metadata)}\r\n"
            f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{field}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{b}--\r\n".encode()
        self.path = path
        self.length = len(self.head) + path.stat().st_size + len(self.tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.path.open("rb") as fh:
            while chunk := fh.read(MIB):
                yield chunk
        yield self.tail


class RssSampler:
    """Peak RSS of a gunicorn master's worker processes, sampled in a thread."""

    def __init__(self, master_pid: int, interval: float = 0.02) -> None:
        import psutil

        self.master = psutil.Process(master_pid)
        self.interval = interval
        self.peak: dict[int, int] = {}
        self.baseline = {p.pid: p.memory_info().rss for p in self.master.children()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for proc in self.master.children():
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(self.peak.values(), default=0) / MIB

    @property
    def baseline_mb(self) -> float:
        return max(self.baseline.values(), default=0) / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--repeat", type=int, default=1, help="push rounds (fresh bytes each)")
    parser.add_argument("--pull-repeat", type=int, default=3, help="pull rounds")
    parser.add_argument(
        "--download-file", action="store_true", help="also time boto3 download_file (slow on moto)"
    )
    parser.add_argument("--db", default="postgres://postgres@127.0.0.1:5432/strata_bench")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--part-threads", type=int, default=4, help="session PUT threads")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and database")
    args = parser.parse_args()

    with workspace("strata-bench-updown-", keep=args.keep, database=args.db) as (tmp, procs):
        results = run(args, tmp, procs)
    print(json.dumps(results))


def run(
    args: argparse.Namespace, tmp: Path, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    import boto3
    import requests
    from botocore.config import Config

    s3_port, hub_port = free_port(), free_port()
    hub = f"http://127.0.0.1:{hub_port}"
    env = hub_env(
        dict(os.environ),
        tmp=tmp,
        db=args.db,
        redis=args.redis,
        s3_port=s3_port,
        bucket="strata-bench",
        hub=hub,
    )
    env["FILE_UPLOAD_TEMP_DIR"] = str(tmp / "spool")
    (tmp / "spool").mkdir()
    logs = tmp / "logs"
    logs.mkdir()
    start_moto(s3_port, logs, procs)
    fresh_database(args.db, env, ROOT)
    seed = run_seed(SEED, env, ROOT)
    auth = {"Authorization": f"Bearer {seed['token']}"}
    bucket = seed["bucket"]

    gunicorn = start_hub(
        hub_port,
        env,
        logs / "gunicorn.log",
        procs,
        *("-w", str(args.gunicorn_workers), "--timeout", "1800", "--log-level", "warning"),
    )
    procs.append(
        subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "workers.app", "worker"),
                *("-Q", "cpu,gpu", "-c", "1", "-l", "warning"),
                *("--without-gossip", "--without-mingle", "-n", f"bench-{os.getpid()}@%h"),
            ],
            cwd=ROOT,
            env=env,
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )

    size = args.size_mb * MIB
    print(f"writing 2 x {args.size_mb} MiB of random bytes...", file=sys.stderr)
    files: dict[str, tuple[Path, str]] = {}
    for name in ("via-request", "via-session"):
        path = tmp / f"{name}.parquet"
        files[name] = (path, write_data(path, size))
    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fixed test credentials
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    http = requests.Session()
    #: What the hub push stored: the pulls (hub and direct) read that same object.
    pulled: dict[str, str] = {}

    def fresh(name: str) -> None:
        """New bytes at the start of a file, so later rounds are not deduplicated."""
        path, _ = files[name]
        with path.open("r+b") as fh:
            fh.write(os.urandom(64))
        files[name] = (path, sha256_of(path))

    # --- contenders: each returns a file to check (untimed) or None -------------------

    Result = tuple[Path, str] | None

    def push_direct_upload_file(round_no: int) -> Result:
        s3.upload_file(str(files["via-request"][0]), bucket, f"direct/{round_no}/a")
        return None

    def push_direct_put_object(round_no: int) -> Result:
        with files["via-request"][0].open("rb") as fh:
            s3.put_object(Bucket=bucket, Key=f"direct/{round_no}/b", Body=fh)
        return None

    def push_hub_request(round_no: int) -> Result:
        path, sha = files["via-request"]
        body = MultipartBody("train.parquet", path, {"message": f"round {round_no}"})
        answer = http.post(
            f"{hub}/api/v1/repos/bench/via-request/versions",
            data=body,
            headers={**auth, "Content-Type": body.content_type},
            timeout=3600,
        )
        assert answer.status_code == 201, answer.text[:500]
        (pushed,) = answer.json()["files"]
        assert pushed["sha256"] == sha, pushed
        pulled.update(label=answer.json()["label"], sha=sha)
        pulled["key"] = f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"
        return None

    def push_hub_session(round_no: int) -> Result:
        path, sha = files["via-session"]
        declared = {"path": "train.parquet", "size": size, "sha256": sha}
        started = http.post(
            f"{hub}/api/v1/repos/bench/via-session/uploads",
            json={"files": [declared]},
            headers=auth,
            timeout=120,
        )
        assert started.status_code == 201, started.text[:500]
        session = started.json()
        (instruction,) = session["files"]
        assert not instruction["exists"], "the hub already had these bytes"
        parts: list[dict[str, Any]] = []
        if "put" in instruction:
            with path.open("rb") as fh:
                sent = http.put(
                    instruction["put"]["url"],
                    data=fh,
                    headers=instruction["put"]["headers"],
                    timeout=3600,
                )
            assert sent.ok, sent.text[:500]
        else:
            part_size = instruction["multipart"]["part_size"]

            def put_part(part: dict[str, Any]) -> dict[str, Any]:
                n = part["part_number"]
                with path.open("rb") as fh:
                    fh.seek((n - 1) * part_size)
                    data = fh.read(part_size)
                sent = requests.put(part["url"], data=data, timeout=3600)
                assert sent.ok, sent.text[:500]
                return {"part_number": n, "etag": sent.headers["ETag"]}

            with ThreadPoolExecutor(args.part_threads) as pool:
                parts = list(pool.map(put_part, instruction["multipart"]["parts"]))
        committed = http.post(
            f"{hub}/api/v1/uploads/{session['id']}/commit",
            json={"parts": {"train.parquet": parts} if parts else {}},
            headers=auth,
            timeout=3600,
        )
        assert committed.status_code in (201, 202), committed.text[:500]
        while committed.status_code == 202:  # the worker hashes the object, then publishes
            state = http.get(f"{hub}/api/v1/uploads/{session['id']}", headers=auth, timeout=60)
            if state.json()["state"] == "committed":
                break
            assert state.json()["state"] == "verifying", state.text[:500]
            time.sleep(0.1)
        return None

    def pull_direct_get_object(round_no: int) -> Result:
        target = tmp / "pulled-direct-get"
        body = s3.get_object(Bucket=bucket, Key=pulled["key"])["Body"]
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(MIB):
                fh.write(chunk)
        return target, pulled["sha"]

    def pull_direct_download_file(round_no: int) -> Result:
        target = tmp / "pulled-direct-download"
        s3.download_file(bucket, pulled["key"], str(target))
        return target, pulled["sha"]

    def pull_hub(round_no: int) -> Result:
        target = tmp / "pulled-hub"
        url = f"{hub}/api/v1/repos/bench/via-request/versions/{pulled['label']}/files/train.parquet"
        with http.get(url, headers=auth, stream=True, timeout=3600) as answer:
            assert answer.status_code == 200, answer.text[:500]
            assert [r.status_code for r in answer.history] == [302]
            with target.open("wb") as fh:
                for chunk in answer.iter_content(MIB):
                    fh.write(chunk)
        return target, pulled["sha"]

    pushes: dict[str, Callable[[int], Result]] = {
        "push direct upload_file": push_direct_upload_file,
        "push direct put_object": push_direct_put_object,
        "push hub one request": push_hub_request,  # the pulls read what this stored
        "push hub upload session": push_hub_session,
    }
    pulls: dict[str, Callable[[int], Result]] = {
        "pull direct get_object": pull_direct_get_object,
        "pull hub (302 to S3)": pull_hub,
    }
    if args.download_file:  # moto serves parallel ranged GETs slowly: opt in
        pulls["pull direct download_file"] = pull_direct_download_file

    seconds: dict[str, list[float]] = {name: [] for name in [*pushes, *pulls]}
    rss: dict[str, dict[str, float]] = {}

    def timed(name: str, fn: Callable[[int], Result], round_no: int) -> None:
        sampler = RssSampler(gunicorn.pid) if "hub" in name else None
        started = time.perf_counter()
        if sampler is not None:
            with sampler:
                result = fn(round_no)
        else:
            result = fn(round_no)
        elapsed = time.perf_counter() - started
        seconds[name].append(elapsed)
        if result is not None:
            target, sha = result
            assert target.stat().st_size == size, (name, target.stat().st_size)
            assert sha256_of(target) == sha, f"{name}: wrong bytes"
            target.unlink()
        if sampler is not None and name.startswith("push"):
            previous = rss.get(name, {}).get("peak_mb", 0.0)
            rss[name] = {
                "baseline_mb": round(sampler.baseline_mb, 1),
                "peak_mb": round(max(previous, sampler.peak_mb), 1),
            }
        print(f"round {round_no + 1}: {name:26} {elapsed:8.2f}s", file=sys.stderr)

    for round_no in range(args.repeat):
        if round_no:
            fresh("via-request")
            fresh("via-session")
        for name, fn in pushes.items():
            timed(name, fn, round_no)
    for round_no in range(args.pull_repeat):  # interleaved, so both see the same moto
        for name, fn in pulls.items():
            timed(name, fn, round_no)

    # The hub's share of a pull: answering the file URL with a 302 (DB reads, the
    # download count, presigning), measured alone.
    file_url = (
        f"{hub}/api/v1/repos/bench/via-request/versions/{pulled['label']}/files/train.parquet"
    )
    redirects = []
    for _ in range(9):
        started = time.perf_counter()
        answer = http.get(file_url, headers=auth, allow_redirects=False, timeout=60)
        redirects.append(time.perf_counter() - started)
        assert answer.status_code == 302, answer.text[:500]
    redirect_ms = statistics.median(redirects) * 1000

    median = {name: statistics.median(times) for name, times in seconds.items()}
    mb = size / 1e6
    rate = {name: mb / t for name, t in median.items()}
    ratios = {
        "push hub one request / upload_file": rate["push hub one request"]
        / rate["push direct upload_file"],
        "push hub one request / put_object": rate["push hub one request"]
        / rate["push direct put_object"],
        "push hub upload session / upload_file": rate["push hub upload session"]
        / rate["push direct upload_file"],
        "pull hub / get_object": rate["pull hub (302 to S3)"] / rate["pull direct get_object"],
    }
    if "pull direct download_file" in rate:
        ratios["pull hub / download_file"] = (
            rate["pull hub (302 to S3)"] / rate["pull direct download_file"]
        )
    web_peak = max(r["peak_mb"] for r in rss.values())

    print()
    print(
        f"{args.size_mb} MiB; medians of {args.repeat} push and {args.pull_repeat} pull rounds; "
        f"{os.cpu_count()} CPUs; moto S3 on loopback"
    )
    print(f"{'contender':28} {'seconds':>9} {'MB/s':>9}   web worker peak RSS")
    for name, t in median.items():
        memory = (
            f"{rss[name]['peak_mb']:.0f} MB (idle {rss[name]['baseline_mb']:.0f} MB)"
            if name in rss
            else ""
        )
        print(f"{name:28} {t:9.2f} {rate[name]:9.1f}   {memory}")
    print()
    for name, value in ratios.items():
        print(f"{name:40} {value:5.2f}x")
    print(f"{'hub 302 answer (median of 9)':40} {redirect_ms:5.1f} ms")
    pull_ok = ratios["pull hub / get_object"] >= 0.9
    memory_ok = web_peak < 200
    print(f"goal pull >= 0.9x direct (single stream): {'met' if pull_ok else 'NOT met'}")
    print(f"goal web peak RSS < 200 MB: {'met' if memory_ok else 'NOT met'} ({web_peak:.0f} MB)")
    return {
        "bench": "upload_download",
        "size_mib": args.size_mb,
        "repeat": args.repeat,
        "pull_repeat": args.pull_repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": {k: round(v, 3) for k, v in median.items()},
        "mb_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "hub_redirect_ms": round(redirect_ms, 1),
        "web_rss_mb": rss,
        "goals": {"pull_ge_0_9x_direct": pull_ok, "web_peak_rss_lt_200mb": memory_ok},
    }


if __name__ == "__main__":
    main()
