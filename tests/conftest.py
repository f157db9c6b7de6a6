"""Shared fixtures: S3 bucket, people, API clients, and a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _blob_bucket() -> None:
    from hub.registry.storage import S3BlobStore, get_blob_store

    store = get_blob_store()
    if isinstance(store, S3BlobStore):
        store.ensure_bucket()


@pytest.fixture
def api() -> Callable[..., APIClient]:
    """``api(token)`` returns a client sending that bearer token (or none)."""

    def make(token: str | None = None) -> APIClient:
        client = APIClient()
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


#: Holds the worker process while the session's worker runs (it outlives the test that
#: started it, and keeps working on jobs any later test creates).
_worker_running: list[subprocess.Popen[bytes]] = []


def worker_env(database_name: str) -> dict[str, str]:
    """The environment for a worker process that shares this session's test database."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{database_name}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{database_name}"
        )
    return env


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` process on both queues, against the test database."""
    from django.db import connection

    from workers.app import app

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    app.control.purge()
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    log = open(Path(settings.DATA_DIR) / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
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
            "--pool",
            "prefork",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=worker_env(str(name)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    _worker_running.append(proc)
    yield proc
    _worker_running.clear()
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, interval: float = 0.25) -> Any:
    """Poll until ``predicate()`` is truthy; fail with the worker log tail otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    log = Path(settings.DATA_DIR) / "worker.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no worker log)"
    pytest.fail(f"condition not met within {timeout}s; worker log tail:\n{tail}")


@pytest.fixture(autouse=True)
def _drain_worker_jobs(request: pytest.FixtureRequest) -> Iterator[None]:
    """While the real worker runs, let jobs finish before a live-server test's database is
    flushed: a job still writing while the flush truncates tables deadlocks PostgreSQL."""
    yield
    if not _worker_running or "live_server" not in request.fixturenames:
        return
    from hub.registry.models import Job

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exists():
            return
        time.sleep(0.25)
