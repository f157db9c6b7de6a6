"""The test command: lint, type-check and run pytest on real PostgreSQL, Redis and S3.

PostgreSQL and Redis are expected at 127.0.0.1:5432 and :6379 (override with
TEST_DATABASE_URL / TEST_REDIS_URL). S3 is a moto server that this script starts on a
free loopback port and stops afterwards. Under CI=true a missing PostgreSQL or Redis is
a failure; elsewhere the tests fall back to SQLite and the filesystem broker, with a
warning, so a laptop without services can still run most of the suite.

Usage: python scripts/run_tests.py [pytest args...]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    sys.exit(f"moto server did not start; see {log}")


def step(name: str, cmd: list[str], env: dict[str, str]) -> None:
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"{name} failed (exit {result.returncode})")


def main() -> None:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    env = dict(os.environ)
    db_url = env.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/strata")
    redis_url = env.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    tmp = Path(tempfile.mkdtemp(prefix="strata-test-"))

    if reachable(db_url, 5432):
        env["DATABASE_URL"] = db_url
    elif ci:
        sys.exit(f"CI: PostgreSQL at {db_url} is unreachable; refusing to fall back to SQLite.")
    else:
        print(f"WARNING: PostgreSQL at {db_url} is unreachable; testing on SQLite.", flush=True)
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'strata.sqlite3'}"
    if reachable(redis_url, 6379):
        env["CELERY_BROKER_URL"] = redis_url
    elif ci:
        sys.exit(f"CI: Redis at {redis_url} is unreachable; refusing to fall back.")
    else:
        print(f"WARNING: Redis at {redis_url} is unreachable; using the filesystem broker.")
        env["CELERY_BROKER_URL"] = "filesystem://"

    port = free_port()
    moto = start_moto(port, tmp / "moto.log")
    env.update(
        STRATA_DATA_DIR=str(tmp / "data"),
        SECRET_KEY="test-secret-key-not-for-production-0123456789abcdef",
        S3_BUCKET="strata-test",
        S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        S3_REGION="us-east-1",
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        JOB_HEARTBEAT_SECONDS="2",
        # The suite fires thousands of requests from one address; rate-limit tests set
        # their own low limits.
        RATE_LIMIT_USER="1000000/min",
        RATE_LIMIT_ANON="1000000/min",
        # Counted pulls are asserted right after the request; tests/registry/test_downloads.py
        # covers the batched writes.
        DOWNLOAD_COUNT_FLUSH_SECONDS="0",
        # Smaller benchmark budgets keep end-to-end benchmark jobs short on 2 cores.
        BENCHMARK_MAX_TOKENS="1024",
        BENCHMARK_SPEED_SEQ_LEN="32",
        BENCHMARK_SPEED_REPEATS="2",
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    try:
        step("ruff", [str(VENV_BIN / "ruff"), "check", "."], env)
        step("ruff format", [str(VENV_BIN / "ruff"), "format", "--check", "."], env)
        step("mypy", [str(VENV_BIN / "mypy"), "hub", "workers"], env)
        step("pytest", [sys.executable, "-m", "pytest", *sys.argv[1:]], env)
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
