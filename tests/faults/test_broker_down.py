"""The broker down while versions are pushed: jobs wait in the database, then get sent."""

from __future__ import annotations

import pytest

from hub.registry.jobs import jobs_resend_unsent
from hub.registry.models import Job
from tests.factories import base_model_files, make_token, make_user, multipart
from workers.app import app

pytestmark = pytest.mark.django_db


def test_jobs_created_while_the_broker_is_down_are_sent_once_it_is_back(
    api, monkeypatch, django_capture_on_commit_callbacks
):
    client = api(make_token(make_user("alice")))
    client.post("/api/v1/repos", {"name": "tiny", "kind": "base_model"}, format="json")

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("redis is down")

    monkeypatch.setattr(app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        pushed = client.post("/api/v1/repos/alice/tiny/versions", multipart(base_model_files()))
    # The push itself succeeds: the job is recorded and waits for the broker.
    assert pushed.status_code == 201
    job = Job.objects.get()
    assert (job.state, job.enqueued_at) == ("queued", None)

    sent: list[tuple] = []

    class Sent:
        id = "task-1"

    def broker_back(name, args, **kwargs):
        sent.append((name, args, kwargs["queue"]))
        return Sent()

    monkeypatch.setattr(app, "send_task", broker_back)
    assert jobs_resend_unsent(older_than_seconds=0) == 1
    job.refresh_from_db()
    assert sent == [("workers.tasks.run_job", (str(job.pk),), "cpu")]
    assert job.enqueued_at is not None
    assert job.celery_task_id == "task-1"
    # Once sent, it is not sent again.
    assert jobs_resend_unsent(older_than_seconds=0) == 0
