"""Benchmark ``strata pull`` against huggingface_hub and a direct boto3 download.

Starts its own hub on loopback: a moto S3 server, gunicorn serving ``hub.wsgi`` against
a fresh PostgreSQL database (``strata_bench_client`` by default) and, with ``--push``, a
Celery worker (large pushes are verified by a job). It publishes one ``--size-mb`` file
of JSON lines in a dataset repository, then, in interleaved rounds, downloads it with:

* ``strata``: the Python API, ``Client.pull`` into an empty cache (parallel ranged GETs
  on the presigned URL, sha256 verified while downloading, blob moved into the cache).
* ``huggingface_hub``: ``snapshot_download`` from the same hub through its Hugging Face
  routes (``<hub>/hf``), into an empty cache. Skipped, and said so, if they are absent.
* ``boto3``: one streamed ``get_object`` of the same S3 object into a file, no hashing:
  the floor. ``boto3+sha256`` also hashes while streaming: the same work strata does.
  ``--transfer-manager`` adds ``download_file`` (default TransferConfig: 8 MB
  ranged GETs on 10 threads), which moto serves very slowly (it rereads the object for
  every range), so it is off by default.

Reports the median seconds and MB/s of each, and the ratios the goals are stated in:
strata vs huggingface_hub (goal >= 1.0x) and strata vs boto3 (goal within 10%).

Usage::

    .venv/bin/python bench/client.py --size-mb 200
    .venv/bin/python bench/client.py --size-mb 1024 --repeat 3 --push
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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
MB = 1024 * 1024

SEED = r"""
import json, os
from hub.accounts.services import token_create, user_create
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.storage import S3BlobStore, get_blob_store

path, size, sha = os.environ["BENCH_PATH"], int(os.environ["BENCH_SIZE"]), os.environ["BENCH_SHA"]
store = get_blob_store()
assert isinstance(store, S3BlobStore)
store.ensure_bucket()
user = user_create(username="bench", password="bench-password-123")
token = token_create(user=user, name="bench", scope="write").secret
actor = Actor(user=user, write_scope=True)
repo = services.repository_create(actor=actor, namespace="bench", name="big-data", kind="dataset")
with open(path, "rb") as fh:
    blob = services.blob_ingest(services.IncomingFile("data.jsonl", size, sha, fh))
published = services.version_publish(actor=actor, repository=repo, files=[("data.jsonl", blob)])
print(json.dumps({"token": token, "bucket": store.bucket, "key": blob.storage_key,
                  "label": published.version.label}))
"""


def write_data(path: Path, size_mb: int) -> str:
    """JSON lines of random text, ``size_mb`` MiB; returns the sha256."""
    digest = hashlib.sha256()
    payload = 64 * 1024 - len('{"text": ""}\n')
    with path.open("wb") as fh:
        for _ in range(size_mb * 16):
            text = os.urandom(payload // 2).hex().encode() + b"x" * (payload % 2)
            line = b'{"text": "' + text + b'"}\n'
            fh.write(line)
            digest.update(line)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted")
    parser.add_argument("--db", default="postgres://postgres@127.0.0.1:5432/strata_bench_client")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, help="strata download threads (STRATA_MAX_WORKERS)")
    parser.add_argument("--push", action="store_true", help="also time `strata push` of the file")
    parser.add_argument(
        "--transfer-manager",
        action="store_true",
        help="also time boto3 download_file (parallel ranged GETs; very slow on moto)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the client's steps")
    args = parser.parse_args()
    if args.verbose:
        import logging

        logging.basicConfig(format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
        logging.getLogger("strata").setLevel(logging.INFO)

    with workspace("strata-bench-client-", keep=args.keep) as (tmp, procs):
        results = run(args, tmp, procs)
    print(json.dumps(results))


def run(
    args: argparse.Namespace, tmp: Path, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    s3_port, hub_port = free_port(), free_port()
    hub = f"http://127.0.0.1:{hub_port}"
    env = hub_env(
        dict(os.environ),
        tmp=tmp,
        db=args.db,
        redis=args.redis,
        s3_port=s3_port,
        bucket="strata-bench-client",
        hub=hub,
    )
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    for key in [k for k in env if k.startswith("STRATA_") and k != "STRATA_DATA_DIR"]:
        env.pop(key)
    log = (tmp / "logs").resolve()
    log.mkdir(parents=True)

    start_moto(s3_port, log, procs)
    fresh_database(args.db, env, ROOT)

    print(f"writing {args.size_mb} MiB of data...", file=sys.stderr)
    data = tmp / "upload" / "data.jsonl"
    data.parent.mkdir()
    sha = write_data(data, args.size_mb)
    size = data.stat().st_size
    seed = run_seed(
        SEED, {**env, "BENCH_PATH": str(data), "BENCH_SIZE": str(size), "BENCH_SHA": sha}, ROOT
    )
    token = seed["token"]

    start_hub(
        hub_port,
        env,
        log / "gunicorn.log",
        procs,
        *("-w", str(args.gunicorn_workers), "-k", "gthread", "--threads", "4"),
        *("--log-level", "warning"),
    )
    if args.push:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "workers.app",
                    "worker",
                    "-Q",
                    "cpu,gpu",
                    "-c",
                    "1",
                    "-l",
                    "warning",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                stdout=(log / "worker.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )

    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=env["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
        config=Config(s3={"addressing_style": "path"}),
    )

    sys.path.insert(0, str(ROOT / "client"))
    from strata import Client

    if args.workers:
        os.environ["STRATA_MAX_WORKERS"] = str(args.workers)
    ref = f"bench/big-data@{seed['label']}"

    def strata_pull(dest: Path) -> Path:
        client = Client(hub, token, cache_dir=dest, progress=False)
        result = client.pull(ref)
        client.close()
        assert result.stats.bytes_downloaded == size, result.stats
        return result.path / "data.jsonl"

    hf_error = hf_available(hub, token)

    def hf_pull(dest: Path) -> Path:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id="bench/big-data",
            repo_type="dataset",
            revision=seed["label"],
            endpoint=f"{hub}/hf",
            token=token,
            cache_dir=str(dest),
        )
        return Path(folder) / "data.jsonl"

    def boto3_download(dest: Path) -> Path:
        target = dest / "data.jsonl"
        dest.mkdir(parents=True, exist_ok=True)
        s3.download_file(seed["bucket"], seed["key"], str(target))
        return target

    def boto3_get(dest: Path) -> Path:
        target = dest / "data.jsonl"
        dest.mkdir(parents=True, exist_ok=True)
        body = s3.get_object(Bucket=seed["bucket"], Key=seed["key"])["Body"]
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(MB):
                fh.write(chunk)
        return target

    def boto3_get_sha256(dest: Path) -> Path:
        target = dest / "data.jsonl"
        dest.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        body = s3.get_object(Bucket=seed["bucket"], Key=seed["key"])["Body"]
        with target.open("wb") as fh:
            for chunk in body.iter_chunks(MB):
                fh.write(chunk)
                digest.update(chunk)
        assert digest.hexdigest() == sha
        return target

    contenders: dict[str, Callable[[Path], Path]] = {"strata": strata_pull}
    if hf_error is None:
        contenders["huggingface_hub"] = hf_pull
    contenders["boto3"] = boto3_get
    contenders["boto3+sha256"] = boto3_get_sha256
    if args.transfer_manager:
        contenders["boto3-download_file"] = boto3_download

    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for warm in range(args.warmup):
        for name, fn in contenders.items():
            dest = tmp / f"warmup-{name}-{warm}"
            fn(dest)
            shutil.rmtree(dest, ignore_errors=True)
    for round_no in range(args.repeat):
        for name, fn in contenders.items():
            dest = tmp / f"dl-{name}-{round_no}"
            os.sync()  # the previous round's dirty pages must not slow this one
            time.sleep(0.5)
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            path = fn(dest)
            elapsed = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
            cpu[name].append(
                cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
            )
            times[name].append(elapsed)
            if round_no == 0:
                assert path.stat().st_size == size, (name, path.stat().st_size)
                if name != "strata":  # strata verified it already
                    assert sha256_of(path) == sha, f"{name} returned different bytes"
            shutil.rmtree(dest, ignore_errors=True)
            print(
                f"round {round_no + 1}: {name:16} {elapsed:7.2f}s  cpu {cpu[name][-1]:6.2f}s",
                file=sys.stderr,
            )

    push_seconds = None
    if args.push:
        fresh = tmp / "push" / "data.jsonl"
        fresh.parent.mkdir()
        write_data(fresh, args.size_mb)  # new bytes: the hub must not already have them
        os.sync()
        client = Client(hub, token, cache_dir=tmp / "push-cache", progress=False)
        started = time.perf_counter()
        pushed = client.push(fresh.parent, "bench/big-data-pushed", kind="dataset")
        push_seconds = time.perf_counter() - started
        assert pushed.bytes_uploaded == size

    medians = {name: statistics.median(values) for name, values in times.items()}
    size_mb = size / MB
    print(f"\n{size_mb:.0f} MiB, median of {args.repeat} round(s):")
    print(f"{'client':18} {'seconds':>8} {'MB/s':>8} {'client CPU s':>13}")
    for name, seconds in medians.items():
        cpu_s = statistics.median(cpu[name])
        print(f"{name:18} {seconds:8.2f} {size_mb / seconds:8.1f} {cpu_s:13.2f}")
    if push_seconds is not None:
        print(f"{'strata push':18} {push_seconds:8.2f} {size_mb / push_seconds:8.1f}")
    ratios: dict[str, float] = {}
    if "huggingface_hub" in medians:
        ratios["strata_vs_huggingface_hub"] = medians["huggingface_hub"] / medians["strata"]
    else:
        print(f"huggingface_hub: skipped ({hf_error})")
    ratios["strata_vs_boto3"] = medians["boto3"] / medians["strata"]
    ratios["strata_vs_boto3_sha256"] = medians["boto3+sha256"] / medians["strata"]
    if "boto3-download_file" in medians:
        ratios["strata_vs_boto3_download_file"] = medians["boto3-download_file"] / medians["strata"]
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x (throughput ratio; > 1 means strata is faster)")
    return {
        "size_mb": round(size_mb, 1),
        "repeat": args.repeat,
        "seconds": {k: round(v, 3) for k, v in medians.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "client_cpu_seconds": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "push_seconds": round(push_seconds, 3) if push_seconds is not None else None,
        "huggingface_hub": "ok" if hf_error is None else f"skipped: {hf_error}",
        "cpus": os.cpu_count(),
    }


def hf_available(hub: str, token: str) -> str | None:
    """None if the hub answers the Hugging Face routes, else why not."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return "huggingface_hub is not installed"
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{hub}/hf/api/datasets/bench/big-data", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            json.loads(response.read())
    except OSError as exc:
        return f"{hub}/hf routes not mounted or failing ({exc})"
    except ValueError:
        return f"{hub}/hf/api/datasets answered something that is not JSON"
    return None


if __name__ == "__main__":
    main()
