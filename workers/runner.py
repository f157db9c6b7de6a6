"""Running one job: claim the row, keep a heartbeat, classify failures, store the outcome.

Two kinds of failure (see docs/ARCHITECTURE.md):

* :class:`UserError` - the upload or request is at fault. Never retried; the job fails
  with a stable code and a sentence the person can act on.
* Everything else - storage, network, database, a killed or starved worker - is ours.
  It is retried with backoff up to ``max_attempts`` and then failed as an
  infrastructure error, never blamed on the user.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.db.models import F
from django.utils import timezone

from hub.registry.models import Job
from hub.request_id import current_request_id

log = logging.getLogger(__name__)


class UserError(Exception):
    """The job cannot succeed because of its input. Not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class JobContext:
    """What a handler gets: the claimed job and a place to log for the job page."""

    job: Job
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    def log(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {message}")
        log.info("job %s: %s", self.job.pk, message)

    @property
    def log_tail(self) -> str:
        return "\n".join(self.lines)


Handler = Callable[[JobContext], dict[str, Any]]


def detect_device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return "cpu"


class _Heartbeat(threading.Thread):
    """Touches ``heartbeat_at`` so the reaper can tell a slow job from a dead worker."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.job.pk}")
        self.ctx = ctx
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
            try:
                Job.objects.filter(pk=self.ctx.job.pk, state=Job.State.RUNNING).update(
                    heartbeat_at=timezone.now(), log_tail=self.ctx.log_tail
                )
            except Exception:
                log.warning("heartbeat for job %s failed", self.ctx.job.pk, exc_info=True)
            finally:
                close_old_connections()


def claim(job_id: str) -> Job | None:
    """Move a queued job to running; None if another worker has it or it is finished."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker_host=socket.gethostname(),
        error_code="",
        error_message="",
    )
    if claimed != 1:
        return None
    return Job.objects.select_related("version__repository__namespace").get(pk=job_id)


def run(job_id: str, handlers: dict[str, Handler]) -> str:
    """Run a job once. Returns what happened, for logs and tests."""
    job = claim(job_id)
    if job is None:
        return "skipped"
    ctx = JobContext(job=job)
    # Worker log lines of this job carry the id of the request that asked for it.
    current_request_id.set(job.request_id or f"job-{job.pk}")
    device = detect_device() if job.queue == "gpu" else "cpu"
    Job.objects.filter(pk=job.pk).update(device=device)
    heartbeat = _Heartbeat(ctx)
    heartbeat.start()
    started = time.monotonic()
    handler = handlers.get(job.kind)
    try:
        if handler is None:
            raise UserError("unsupported_job", f"This hub cannot run {job.kind} jobs.")
        result = handler(ctx)
    except UserError as exc:
        ctx.log(f"failed: {exc.message}")
        _finish(job, Job.State.FAILED, ctx, error_code=exc.code, error_message=exc.message)
        return "failed"
    except SoftTimeLimitExceeded:
        message = f"The job ran past its time limit of {settings.JOB_TIME_LIMIT_SECONDS} s."
        _finish(job, Job.State.FAILED, ctx, error_code="time_limit", error_message=message)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - anything unexpected is ours, not the user's
        return _retry_or_fail(job, ctx, exc)
    finally:
        heartbeat.stopped.set()
    result = {**result, "seconds": round(time.monotonic() - started, 3)}
    _finish(job, Job.State.SUCCEEDED, ctx, result=result)
    return "succeeded"


def _retry_or_fail(job: Job, ctx: JobContext, exc: Exception) -> str:
    from hub.registry.jobs import job_retry_later

    log.exception("job %s attempt %s failed", job.pk, job.attempts)
    if isinstance(exc, DatabaseError):
        # The connection may be dead (a restarted server); get a fresh one to record this.
        close_old_connections()
    reason = f"{type(exc).__name__}: {exc}"[:500]
    ctx.log(f"attempt {job.attempts} failed with an infrastructure error: {reason}")
    if job.attempts < job.max_attempts:
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
            state=Job.State.QUEUED,
            heartbeat_at=None,
            enqueued_at=None,
            log_tail=ctx.log_tail,
            error_message=reason,
        )
        job_retry_later(job, countdown=min(300, 5 * 2 ** (job.attempts - 1)))
        return "retrying"
    _finish(
        job,
        Job.State.FAILED,
        ctx,
        # An infrastructure error may name itself (out_of_memory); the rest are generic.
        error_code=getattr(exc, "code", "infrastructure_error"),
        error_message=(
            f"The job failed {job.attempts} times because of an error on our side "
            f"({reason}). The upload itself was not judged; an operator can retry it."
        ),
    )
    return "failed"


def _finish(job: Job, state: str, ctx: JobContext, **fields: Any) -> None:
    Job.objects.filter(pk=job.pk).update(
        state=state, finished_at=timezone.now(), log_tail=ctx.log_tail, **fields
    )
