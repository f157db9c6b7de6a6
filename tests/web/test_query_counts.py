"""Every list costs the same number of queries however long it is (no N+1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.jobs import job_request
from hub.registry.lineage import LineageSpec, Ref
from hub.registry.models import Job, Repository
from tests.web.hubdata import HubData, adapter_report, fake_blob, quick_adapter

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User | None], Client]

URLS = [
    "/",
    "/search",
    "/search?kind=adapter&tag=chat&sort=recent",
    "/search?q=lora&status=valid&rank_min=2",
    "/acme",
    "/bob",
    "/acme/tiny-llama",
    "/acme/instruct-lora",
    "/acme/instruct-lora/v/v1/lineage",
    "/bob/many-versions",
    "/bob/many-versions/compare/v1...v2",
    "/jobs",
    "/-/complete?kind=adapter&q=",
]


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        answer = client.get(url)
    assert answer.status_code == 200, url
    return len(ctx.captured_queries)


def grow(hub: HubData, start: int, count: int) -> None:
    """More of everything the pages list: adapters (own and org, stacked on instruct),
    versions of one repository, and jobs."""
    for i in range(start, start + count):
        quick_adapter(
            hub.bob,
            f"extra-{i}",
            namespace="acme" if i % 2 else "bob",
            tags=("chat", f"tag-{i}"),
            stacked_on=("acme/instruct-lora@v1",),
            n=100 + i,
        )
        job_request(kind=Job.Kind.MERGE, version=hub.instruct_v1, requested_by=hub.alice)
    if start == 0:
        services.repository_create(
            actor=Actor(user=hub.bob), namespace="bob", name="many-versions", kind="adapter"
        )
    target = Repository.objects.get(namespace__name="bob", name="many-versions")
    for i in range(start, start + count):
        version = services.version_publish(
            actor=Actor(user=hub.bob),
            repository=target,
            files=[
                ("adapter_config.json", fake_blob(5000 + i)),
                ("adapter_model.safetensors", fake_blob(6000 + i)),
            ],
            spec=LineageSpec(base=Ref.parse("acme/tiny-llama@v1")),
            message=f"round {i}",
        ).version
        services.version_set_status(version=version, status="valid", report=adapter_report(4))


def test_query_counts_do_not_grow_with_the_lists(hub: HubData, client_for: ClientFor) -> None:
    client = client_for(hub.alice)
    grow(hub, 0, 2)
    before = {url: count_queries(client, url) for url in URLS}
    grow(hub, 2, 8)
    after = {url: count_queries(client, url) for url in URLS}
    assert after == before


def test_anonymous_pages_are_cheap(hub: HubData, client_for: ClientFor) -> None:
    client = client_for(None)
    grow(hub, 0, 3)
    # Generous ceilings that still catch a query per row (there are 10+ rows).
    ceilings = {"/": 8, "/search": 13, "/acme/instruct-lora": 24, "/acme/tiny-llama": 26}
    for url, ceiling in ceilings.items():
        assert count_queries(client, url) <= ceiling, url
