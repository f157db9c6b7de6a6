"""The broker down while versions are pushed: jobs wait in the database, then get sent.

This process reaches Redis through a TCP proxy the test takes down and brings back; the
worker, like any other worker, reaches Redis directly. Pushes made during the outage
succeed, their validation jobs wait as rows, and the resender (a beat task) sends them
once the broker is reachable again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from hub.registry.jobs import jobs_resend_unsent
from hub.registry.models import Job, Version
from tests.factories import adapter_files, base_model_files, make_token, make_user, multipart
from tests.faults.conftest import StartWorker, wait_until
from tests.faults.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _use_broker(app: Any, url: str) -> None:
    app.conf.broker_url = app.conf.broker_write_url = url
    # Celery caches its connection and producer pools; forget them so the next message
    # connects to the new address (kombu keeps one pool per address, reused on return).
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(own_workers: StartWorker) -> Iterator[TcpProxy]:
    """This process's broker connection, through a proxy the test controls."""
    from workers.app import app

    original = app.conf.broker_write_url
    parts = urlsplit(original)
    if parts.scheme != "redis":
        pytest.skip("needs the Redis broker")
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 6379)).up()
    _use_broker(app, urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}")))
    try:
        yield proxy
    finally:
        proxy.down()
        _use_broker(app, original)


def test_versions_pushed_while_the_broker_is_down_are_validated_once_it_is_back(
    api: Any, own_workers: StartWorker, broker: TcpProxy
) -> None:
    worker = own_workers("validator")
    client = api(make_token(make_user("alice")))
    for name, kind in (("tiny", "base_model"), ("lora", "adapter")):
        made = client.post("/api/v1/repos", {"name": name, "kind": kind}, format="json")
        assert made.status_code == 201
    based = client.post("/api/v1/repos/alice/tiny/versions", multipart(base_model_files()))
    assert based.status_code == 201
    wait_until(
        lambda: Version.objects.filter(repository__name="tiny", status="valid").exists(),
        workers=(worker,),
    )

    broker.down()
    pushed = client.post(
        "/api/v1/repos/alice/lora/versions",
        multipart(adapter_files(base="alice/tiny"), {"base_model": "alice/tiny@v1"}),
    )
    # The push itself succeeds: the job is recorded and waits for the broker.
    assert pushed.status_code == 201, pushed.content
    job = Job.objects.get(kind="validate", version__repository__name="lora")
    assert (job.state, job.enqueued_at) == ("queued", None)
    assert jobs_resend_unsent(older_than_seconds=0) == 0  # still down: nothing sent
    assert Job.objects.get(pk=job.pk).enqueued_at is None

    broker.up()
    assert jobs_resend_unsent(older_than_seconds=0) == 1
    done = wait_until(
        lambda: Job.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(),
        workers=(worker,),
    )
    assert (done.state, done.attempts) == ("succeeded", 1), done.error_message
    assert Version.objects.get(repository__name="lora").status == "valid"
    # Once sent, it is not sent again.
    assert jobs_resend_unsent(older_than_seconds=0) == 0
