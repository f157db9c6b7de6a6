"""The job runner: claiming, the two kinds of failure, and the stale-job reaper."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hub.registry.jobs import jobs_reap_stale
from hub.registry.models import Job
from workers.handlers.benchmark import WorkerOutOfMemory
from workers.runner import UserError, run

pytestmark = pytest.mark.django_db


def queued(kind: str = "benchmark", attempts: int = 3) -> Job:
    return Job.objects.create(kind=kind, queue="gpu", max_attempts=attempts)


def test_a_job_runs_once_and_a_second_delivery_is_skipped():
    job = queued()
    calls = []
    handlers = {"benchmark": lambda ctx: calls.append(ctx.job.pk) or {"ok": True}}
    assert run(str(job.pk), handlers) == "succeeded"
    assert run(str(job.pk), handlers) == "skipped"
    job.refresh_from_db()
    assert calls == [job.pk]
    assert job.state == Job.State.SUCCEEDED
    assert job.result["ok"] is True
    assert job.attempts == 1


def test_out_of_memory_is_retried_then_fails_with_its_own_code():
    job = queued(attempts=2)

    def starve(ctx):
        raise WorkerOutOfMemory("CUDA out of memory while scoring the adapter")

    assert run(str(job.pk), {"benchmark": starve}) == "retrying"
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED
    assert run(str(job.pk), {"benchmark": starve}) == "failed"
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.error_code == "out_of_memory"
    assert "not judged" in job.error_message
    assert job.attempts == 2


def test_a_users_mistake_fails_at_once_with_its_code():
    job = queued()

    def refuse(ctx):
        raise UserError("eval_set_missing_text", "Line 3 has no text field.")

    assert run(str(job.pk), {"benchmark": refuse}) == "failed"
    job.refresh_from_db()
    assert (job.state, job.error_code, job.attempts) == ("failed", "eval_set_missing_text", 1)


def test_the_reaper_requeues_a_job_whose_worker_died_and_gives_up_eventually():
    job = queued(attempts=2)
    stale = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(state="running", attempts=1, heartbeat_at=stale)
    assert jobs_reap_stale() == {"requeued": 1, "failed": 0}
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED

    Job.objects.filter(pk=job.pk).update(state="running", attempts=2, heartbeat_at=stale)
    assert jobs_reap_stale() == {"requeued": 0, "failed": 1}
    job.refresh_from_db()
    assert (job.state, job.error_code) == ("failed", "worker_lost")


def test_a_running_job_with_a_fresh_heartbeat_is_left_alone():
    job = queued()
    Job.objects.filter(pk=job.pk).update(state="running", attempts=1, heartbeat_at=timezone.now())
    assert jobs_reap_stale() == {"requeued": 0, "failed": 0}
