"""Jobs: the row comes first, the Celery message after commit, carrying only the id."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from hub.registry.models import Job, Version
from hub.request_id import current_request_id

log = logging.getLogger(__name__)

#: Which Celery queue each kind of job runs on.
JOB_QUEUES: dict[str, str] = {
    Job.Kind.MANIFEST: "cpu",
    Job.Kind.VALIDATE: "cpu",
    Job.Kind.FINALIZE_UPLOAD: "cpu",
    Job.Kind.BENCHMARK: "gpu",
    Job.Kind.MERGE: "gpu",
    Job.Kind.COMPOSE: "gpu",
}


def _send(job_id: str, queue: str, countdown: float = 0) -> bool:
    """Send the job's message; False (logged) when the broker cannot be reached."""
    # By name, through the app alone: importing workers.tasks would pull torch and the
    # compute core into every web process (+200 MB), and the web role has no torch.
    from workers.app import app

    try:
        result = app.send_task(
            "workers.tasks.run_job", args=(job_id,), queue=queue, countdown=countdown
        )
    except Exception:
        log.exception("could not enqueue job %s; the reconciler will resend it", job_id)
        return False
    Job.objects.filter(pk=job_id).update(celery_task_id=result.id, enqueued_at=timezone.now())
    return True


def job_request(
    *,
    kind: str,
    version: Version | None,
    params: dict[str, object] | None = None,
    dedupe_key: str | None = None,
    requested_by: User | None = None,
) -> tuple[Job, bool]:
    """Create a queued job (or return the live one with the same ``dedupe_key``).

    Returns ``(job, created)``. Must run inside the caller's transaction: the message is
    sent only once that transaction commits, so a worker never sees a row that isn't there.
    """
    if dedupe_key:
        existing = Job.objects.filter(
            dedupe_key=dedupe_key, state__in=[*Job.ACTIVE_STATES, Job.State.SUCCEEDED]
        ).first()
        if existing:
            return existing, False
    queue = JOB_QUEUES[kind]
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=kind,
                version=version,
                queue=queue,
                params=params or {},
                dedupe_key=dedupe_key,
                requested_by=requested_by,
                max_attempts=settings.JOB_MAX_ATTEMPTS,
                request_id=current_request_id.get().strip("-"),
            )
    except IntegrityError:
        # Another request created the same job between our check and our insert.
        existing = Job.objects.filter(
            dedupe_key=dedupe_key, state__in=[*Job.ACTIVE_STATES, Job.State.SUCCEEDED]
        ).first()
        if existing is None:
            raise
        return existing, False
    job_id = str(job.pk)
    transaction.on_commit(lambda: _send(job_id, queue))
    return job, True


def job_retry_later(job: Job, *, countdown: float) -> None:
    """Put a job back in the queue after an infrastructure failure."""
    _send(str(job.pk), job.queue, countdown=countdown)


def jobs_reap_stale() -> dict[str, int]:
    """Requeue (or fail) running jobs whose heartbeat stopped: their worker died."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_SECONDS)
    requeued = failed = 0
    stale = Job.objects.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff)
    for job in stale:
        if job.attempts >= job.max_attempts:
            changed = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
                state=Job.State.FAILED,
                finished_at=timezone.now(),
                error_code="worker_lost",
                error_message=(
                    f"The worker stopped responding {job.attempts} times; giving up. "
                    "This is an infrastructure problem, not a problem with the upload."
                ),
            )
            failed += changed
        else:
            changed = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
                state=Job.State.QUEUED, worker_host="", heartbeat_at=None, enqueued_at=None
            )
            if changed:
                requeued += 1
                _send(str(job.pk), job.queue)
    return {"requeued": requeued, "failed": failed}


def jobs_resend_unsent(*, older_than_seconds: int = 10) -> int:
    """Send queued jobs whose message never reached the broker (it was down at enqueue
    time), or was sent so long ago that the broker must have lost it.

    A duplicate message is harmless: only one worker can claim a queued row. Returns how
    many were sent.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    lost_after = timedelta(seconds=int(settings.JOB_TIME_LIMIT_SECONDS) + 3600)
    jobs = list(
        Job.objects.filter(state=Job.State.QUEUED)
        .filter(
            Q(enqueued_at__isnull=True, created_at__lt=cutoff) | Q(enqueued_at__lt=now - lost_after)
        )
        .order_by("created_at")[:500]
    )
    sent = 0
    for job in jobs:
        if not _send(str(job.pk), job.queue):
            break  # the broker is still down; each further try would wait out its retries
        sent += 1
    return sent
