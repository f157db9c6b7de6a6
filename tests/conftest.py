"""Shared fixtures: S3 bucket, people, API clients, and a real Celery worker process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.worker_process import WorkerProcess


@pytest.fixture(scope="session", autouse=True)
def _blob_bucket() -> None:
    from hub.registry.storage import S3BlobStore, get_blob_store

    store = get_blob_store()
    if isinstance(store, S3BlobStore):
        store.ensure_bucket()


@pytest.fixture
def local_store(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """The local-directory blob backend (the embedded default) instead of S3; yields its
    root. The store is built once per process, so it is rebuilt on both sides."""
    from hub.registry.storage import get_blob_store

    settings.STORAGE_BACKEND = "local"
    settings.BLOB_DIR = tmp_path / "blobs"
    get_blob_store.cache_clear()
    yield settings.BLOB_DIR
    get_blob_store.cache_clear()


@pytest.fixture
def api() -> Callable[..., APIClient]:
    """``api(token)`` returns a client sending that bearer token (or none)."""

    def make(token: str | None = None) -> APIClient:
        client = APIClient()
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


class SessionWorker:
    """The session's worker: started by the first test that asks for it, then kept running
    for every later test's jobs. Fault tests pause it to run workers of their own."""

    def __init__(self, database_name: str) -> None:
        self.database_name = database_name
        self.worker: WorkerProcess | None = None

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.running

    def ensure_running(self) -> WorkerProcess:
        if self.worker is None or not self.worker.running:
            self.worker = WorkerProcess(
                "test", self.database_name, Path(settings.DATA_DIR) / "worker.log"
            ).start()
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()


_session_worker: list[SessionWorker] = []


@pytest.fixture(scope="session")
def session_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[SessionWorker]:
    from django.db import connection

    from workers.app import app

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    app.control.purge()
    manager = SessionWorker(str(name))
    _session_worker.append(manager)
    yield manager
    _session_worker.clear()
    manager.stop()


@pytest.fixture
def celery_worker(session_worker: SessionWorker) -> WorkerProcess:
    """A real ``celery worker`` process on both queues, against the test database."""
    return session_worker.ensure_running()


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
    if not (_session_worker and _session_worker[0].running):
        return
    if "live_server" not in request.fixturenames:
        return
    from hub.registry.models import Job

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exists():
            return
        time.sleep(0.25)
