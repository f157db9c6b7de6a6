"""Fixtures for fault tests: workers of the test's own, which it may starve or kill."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import SessionWorker
from tests.worker_process import WorkerProcess

#: ``own_workers(name, file_size_limit=...)`` starts a worker the test controls.
StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def own_workers(session_worker: SessionWorker) -> Iterator[StartWorker]:
    """Workers for this test alone. The session's worker is stopped meanwhile, so no
    other process takes this test's jobs, and started again afterwards if it ran."""
    from hub.registry.models import Job
    from workers.app import app

    was_running = session_worker.running
    if was_running:
        deadline = time.monotonic() + 120
        while Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        session_worker.stop()
    started: list[WorkerProcess] = []

    def start(name: str, *, file_size_limit: int | None = None, **env: str) -> WorkerProcess:
        def limit_file_size() -> None:
            # Any write past this size fails with EFBIG, as a full disk fails with ENOSPC
            # (Python ignores SIGXFSZ, so the process gets the error, not the signal).
            assert file_size_limit is not None
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        worker = WorkerProcess(
            name,
            session_worker.database_name,
            Path(settings.DATA_DIR) / f"worker-{name}.log",
            env=env,
            preexec=limit_file_size if file_size_limit else None,
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.kill()
    # Messages the killed workers held or left must not reach later tests' workers.
    app.control.purge()
    if was_running:
        session_worker.ensure_running()


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 90,
    interval: float = 0.1,
    workers: tuple[WorkerProcess, ...] = (),
) -> Any:
    """Poll until ``predicate()`` is truthy; fail with the given workers' log tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    tails = "\n".join(f"--- {w.name}:\n{w.log_tail()}" for w in workers)
    pytest.fail(f"condition not met within {timeout}s\n{tails}")
