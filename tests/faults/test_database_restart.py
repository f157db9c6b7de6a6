"""PostgreSQL restarted during traffic: requests fail cleanly, then recover on their own.

To the hub, a restart is every connection dropped at once and new ones refused until the
server is back. The test does exactly that to the test database, from a separate
connection (terminate every backend, refuse connections for a few seconds, allow them
again), while clients keep reading over HTTP from a live server.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from django.db import connection

from tests.factories import make_token, make_user, requests_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database_outage() -> Iterator[Any]:
    """``outage(seconds)`` drops every connection to the test database and refuses new
    ones for ``seconds``; the database always comes back, even if the test fails."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    params = connection.get_connection_params()
    name = connection.settings_dict["NAME"]
    admin = psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname="postgres",
        autocommit=True,
    )

    def allow(value: bool) -> None:
        admin.execute(
            f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if value else "false"}'
        )

    def outage(seconds: float) -> None:
        allow(False)
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            time.sleep(seconds)
        finally:
            allow(True)

    try:
        yield outage
    finally:
        allow(True)
        admin.close()
        connection.close()  # this thread's connection was dropped too


def test_requests_during_a_database_restart_fail_cleanly_and_then_recover(
    live_server: Any, database_outage: Any
) -> None:
    auth = {"Authorization": f"Bearer {make_token(make_user('dora'))}"}
    api = f"{live_server.url}/api/v1"
    made = requests.post(
        f"{api}/repos", json={"name": "corpus", "kind": "dataset"}, headers=auth, timeout=30
    )
    assert made.status_code == 201, made.text
    pushed = requests.post(
        f"{api}/repos/dora/corpus/versions",
        files=requests_files({"train.jsonl": b'{"text": "hello"}\n'}),
        headers=auth,
        timeout=30,
    )
    assert pushed.status_code == 201, pushed.text
    reads = {
        "rest": lambda s: s.get(f"{api}/repos/dora/corpus/versions/v1", timeout=30),
        "hf": lambda s: s.head(
            f"{live_server.url}/hf/datasets/dora/corpus/resolve/main/train.jsonl",
            timeout=30,
            allow_redirects=False,
        ),
        "web": lambda s: s.get(f"{live_server.url}/dora/corpus", timeout=30),
        # What a load balancer polls: it must say "unavailable", not "broken".
        "health": lambda s: s.get(f"{live_server.url}/healthz", timeout=30),
    }
    phase = ["before"]
    seen: Counter[tuple[str, str, int]] = Counter()
    bodies: list[str] = []
    stop = threading.Event()

    def client(kind: str) -> None:
        with requests.Session() as session:
            session.headers.update(auth)
            while not stop.is_set():
                answer = reads[kind](session)
                seen[(phase[0], kind, answer.status_code)] += 1
                if answer.status_code >= 500 and answer.status_code != 503:
                    bodies.append(answer.text[:500])
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(k,)) for k in reads for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        phase[0] = "outage"
        database_outage(3)
        phase[0] = "recovering"
        time.sleep(2)
        phase[0] = "after"
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    statuses = {(p, k): {s for (p2, k2, s) in seen if (p2, k2) == (p, k)} for (p, k, _) in seen}
    for kind in reads:
        (ok,) = statuses[("before", kind)]
        assert ok < 400, seen
        # While the database is away: a clean 503 that invites a retry, never a 500.
        assert statuses[("outage", kind)] <= {ok, 503}, (seen, bodies)
        assert 503 in statuses[("outage", kind)], seen
        # Back without anyone restarting the hub.
        assert statuses[("after", kind)] == {ok}, seen
    assert bodies == []


def test_download_counts_taken_before_a_database_restart_are_written_after_it(
    database_outage: Any, settings: Any
) -> None:
    from hub.accounts.services import user_namespace
    from hub.registry.downloads import download_record
    from hub.registry.models import Repository, Version

    settings.DOWNLOAD_COUNT_FLUSH_SECONDS = 0.3
    owner = make_user("dina")
    repo = Repository.objects.create(
        namespace=user_namespace(owner), name="corpus", name_key="corpus", kind="dataset"
    )
    version = Version.objects.create(repository=repo, number=1, commit_id="c" * 40)
    for _ in range(3):
        download_record(version)
    # The timer fires during the outage: its write fails, and the counts wait.
    database_outage(1.5)
    connection.close()  # this thread's connection was dropped too

    deadline = time.monotonic() + 15
    while Version.objects.get(pk=version.pk).downloads != 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Version.objects.get(pk=version.pk).downloads == 3
    assert Repository.objects.get(pk=repo.pk).downloads == 3
