"""Pieces the hub benchmarks share: free ports, moto, scratch databases, seeding."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    """Wait until ``url`` answers, failing early if the process behind it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except OSError as exc:
            if getattr(exc, "code", None):  # an HTTP error answer: it is up
                return
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start within {timeout:.0f}s")


def reset_database(url: str) -> None:
    """Drop and recreate the PostgreSQL database named by ``url``."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """Terminate servers in reverse start order, killing any that do not stop in time."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def hub_env(
    base: dict[str, str], *, tmp: Path, db: str, redis: str, s3_port: int, bucket: str, hub: str
) -> dict[str, str]:
    """The environment of a hub (web and worker) on the benchmark's own services."""
    return {
        **base,
        "DATABASE_URL": db,
        "CELERY_BROKER_URL": redis,
        "STRATA_DATA_DIR": str(tmp / "data"),
        "SECRET_KEY": "bench-secret-key-not-for-production-0123456789abcdef",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "S3_REGION": "us-east-1",
        # moto's fixed test credentials
        "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing",
        "PUBLIC_BASE_URL": hub,
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "LOG_LEVEL": "WARNING",
    }


def start_moto(port: int, logs: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    """Start a moto S3 server on ``port`` (logging under ``logs``) and wait for it."""
    import sys

    moto = Path(sys.executable).parent / "moto_server"
    procs.append(
        subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)],
            stdout=(logs / "moto.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    wait_http(f"http://127.0.0.1:{port}/moto-api/", procs[-1], "moto")


def fresh_database(db: str, env: dict[str, str], root: Path) -> None:
    """Recreate the database ``db`` and migrate it."""
    import sys

    reset_database(db)
    manage = [sys.executable, str(root / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=root, check=True)


def run_seed(script: str, env: dict[str, str], root: Path) -> dict[str, Any]:
    """Run ``script`` in ``manage.py shell``; it prints a JSON object as its last line."""
    import json
    import sys

    done = subprocess.run(
        [sys.executable, str(root / "manage.py"), "shell", "-c", script],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    seed: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seed


@contextmanager
def workspace(
    prefix: str, *, keep: bool, database: str | None = None
) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    """A temporary folder and a list for the processes a benchmark starts. On the way
    out, even after an error, the processes are stopped and, unless ``keep``, the folder
    (and ``database``, when given) removed."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    procs: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, tmp, True)
            if database:
                stack.callback(drop_database, database)
        stack.callback(stop_processes, procs, 20)
        yield tmp, procs


def start_hub(
    port: int, env: dict[str, str], log: Path, procs: list[subprocess.Popen[bytes]], *options: str
) -> subprocess.Popen[bytes]:
    """``gunicorn hub.wsgi`` on loopback port ``port`` with gunicorn ``options``, its
    output in ``log``; returns once ``/healthz`` answers."""
    hub = subprocess.Popen(
        [str(BIN / "gunicorn"), "hub.wsgi", "-b", f"127.0.0.1:{port}", *options],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    procs.append(hub)
    wait_http(f"http://127.0.0.1:{port}/healthz", hub, "gunicorn")
    return hub
