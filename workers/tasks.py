"""Celery tasks: thin wrappers that hand a job id to the runner."""

from __future__ import annotations

from typing import Any

from workers.app import app
from workers.handlers.benchmark import benchmark_version
from workers.handlers.derived import compose, merge_version
from workers.handlers.manifest import read_manifest
from workers.handlers.uploads import collect_orphans, expire_uploads, finalize_upload
from workers.handlers.validate import validate_version
from workers.runner import Handler, run

HANDLERS: dict[str, Handler] = {
    "manifest": read_manifest,
    "finalize_upload": finalize_upload,
    "validate": validate_version,
    "merge": merge_version,
    "compose": compose,
    "benchmark": benchmark_version,
}


@app.task(name="workers.tasks.run_job", acks_late=True)
def run_job(job_id: str) -> str:
    return run(job_id, HANDLERS)


@app.task(name="workers.tasks.reap_stale_jobs")
def reap_stale_jobs() -> dict[str, Any]:
    from hub.registry.jobs import jobs_reap_stale

    return jobs_reap_stale()


@app.task(name="workers.tasks.resend_unsent_jobs")
def resend_unsent_jobs() -> int:
    from hub.registry.jobs import jobs_resend_unsent

    return jobs_resend_unsent()


@app.task(name="workers.tasks.expire_uploads")
def expire_uploads_task() -> int:
    return expire_uploads()


@app.task(name="workers.tasks.collect_orphans")
def collect_orphans_task() -> dict[str, int]:
    return collect_orphans()
