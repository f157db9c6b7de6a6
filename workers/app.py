"""The Celery application. Start a worker with ``celery -A workers.app worker -Q cpu``.

Long GPU jobs need explicit settings: late acks with prefetch 1 (a killed worker's job is
redelivered, and no job waits behind another in a worker's buffer), a broker visibility
timeout longer than the longest job (set in hub/settings.py) and hard time limits.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("strata")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(q, Exchange(q), routing_key=q) for q in ("cpu", "gpu")],
    task_default_queue="cpu",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "reap-stale-jobs": {"task": "workers.tasks.reap_stale_jobs", "schedule": 60.0},
        "resend-unsent-jobs": {"task": "workers.tasks.resend_unsent_jobs", "schedule": 30.0},
        "expire-uploads": {"task": "workers.tasks.expire_uploads", "schedule": 3600.0},
        "collect-orphans": {"task": "workers.tasks.collect_orphans", "schedule": 6 * 3600.0},
    },
)


def _configure_limits() -> None:
    from django.conf import settings

    app.conf.task_time_limit = settings.JOB_TIME_LIMIT_SECONDS
    app.conf.task_soft_time_limit = max(60, settings.JOB_TIME_LIMIT_SECONDS - 60)


app.on_after_configure.connect(lambda sender, **_: _configure_limits())
app.autodiscover_tasks(["workers"], related_name="tasks")
