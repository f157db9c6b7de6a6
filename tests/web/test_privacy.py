"""Private repositories never leak: not in a page, a count, a facet or an autocomplete."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.models import Job
from tests.factories import base_model_files, make_user
from tests.web.hubdata import HubData, base_report, push, quick_adapter
from tests.web.test_views import text

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User | None], Client]

#: Everything that would give acme/secret-lora away.
SECRETS = ("secret-lora", "nightingale", "confidential-tag", "proprietary-secret", "99999", "100K")

PAGES = [
    "/",
    "/search",
    "/search?q=secret",
    "/search?kind=adapter",
    "/search?tag=confidential-tag",
    "/search?license=proprietary-secret",
    "/search?owner=acme",
    "/search?rank_min=16",
    "/models?q=nightingale",
    "/acme",
    "/acme/tiny-llama",
    "/acme/tiny-llama/v/v1/lineage",
    "/acme/instruct-lora",
    "/acme/instruct-lora/v/v1/lineage",
    "/alice/sts-lora/compare/v1...v2",
    "/-/complete?q=",
    "/-/complete?kind=adapter&q=",
    "/-/complete?kind=adapter&q=secret",
    "/jobs",
]


@pytest.fixture
def outsider(db: object) -> User:
    return make_user("oscar")


@pytest.mark.parametrize("who", ["anonymous", "outsider"])
def test_no_page_mentions_a_private_repository(
    hub: HubData, client_for: ClientFor, outsider: User, who: str
) -> None:
    client = client_for(outsider if who == "outsider" else None)
    for url in PAGES:
        answer = client.get(url)
        if url == "/jobs" and who == "anonymous":
            assert answer.status_code == 302
            continue
        assert answer.status_code == 200, url
        body = answer.content.decode()
        for secret in SECRETS:
            if secret in url:  # the page may repeat what the visitor typed, and find nothing
                assert re.search(r"\b0 repositories|\[\]", body), url
                continue
            assert secret not in body, (url, secret)


def test_counts_leave_private_repositories_out(
    hub: HubData, client_for: ClientFor, outsider: User
) -> None:
    home = text(client_for(outsider).get("/"))
    assert "3 adapters" in home
    assert "acme/tiny-llama 3 adapters" in home
    search = text(client_for(outsider).get("/search?kind=adapter"))
    assert "3 repositories" in search
    assert re.search(r"acme/tiny-llama\s*3", search)
    assert re.search(r"acme\s*2", search)  # owner facet: instruct and dialogue
    base = text(client_for(outsider).get("/acme/tiny-llama"))
    assert re.search(r"Adapters built on tiny-llama\s+3", base)
    assert "5 repositories" not in text(client_for(outsider).get("/acme"))
    # Members of acme (carol reads) see it, and the counts include it.
    member = text(client_for(hub.carol).get("/"))
    assert "4 adapters" in member
    assert "secret-lora" in member


def test_private_pages_answer_like_missing_ones(
    hub: HubData, client_for: ClientFor, outsider: User
) -> None:
    job = Job.objects.get(version=hub.secret_v1)
    for client in (client_for(None), client_for(outsider)):
        for url in (
            "/acme/secret-lora",
            "/acme/secret-lora/v/v1",
            "/acme/secret-lora/v/v1/lineage",
            "/acme/secret-lora/compare/v1...v1",
            "/acme/secret-lora/compare",
            f"/jobs/{job.pk}",
        ):
            answer = client.get(url)
            assert answer.status_code == 404, url
            assert "secret" not in answer.content.decode().replace("secret-", ""), url
    missing = client_for(outsider).get("/acme/no-such-lora").content.decode()
    hidden = client_for(outsider).get("/acme/secret-lora").content.decode()
    csrf = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert csrf.sub("", hidden.replace("secret-lora", "no-such-lora")) == csrf.sub("", missing)
    assert client_for(hub.carol).get("/acme/secret-lora").status_code == 200


def test_a_private_base_model_is_never_named_on_public_adapters(
    hub: HubData, client_for: ClientFor, outsider: User
) -> None:
    actor = Actor(user=hub.alice)
    hidden = services.repository_create(
        actor=actor,
        namespace="acme",
        name="hush-base",
        kind="base_model",
        visibility="private",
        description="classified base",
    )
    version = push(actor, hidden, base_model_files(seed=9))
    report, manifest = base_report()
    services.version_set_status(version=version, status="valid", report=report, manifest=manifest)
    quick_adapter(hub.alice, "open-on-hush", namespace="acme", base="acme/hush-base@v1", n=77)
    for url in (
        "/",
        "/search?kind=adapter",
        "/acme/open-on-hush",
        "/acme/open-on-hush/v/v1/lineage",
        "/-/complete?q=",
    ):
        body = client_for(outsider).get(url).content.decode()
        assert "hush-base" not in body, url
        assert "classified" not in body, url
    # Filtering by its name finds nothing rather than confirming that it exists.
    assert "0 repositories" in text(client_for(outsider).get("/search?base=acme/hush-base"))
    assert "The base model is not visible to you" in text(
        client_for(outsider).get("/acme/open-on-hush")
    )
    assert "hush-base" in client_for(hub.bob).get("/acme/open-on-hush").content.decode()


def test_autocomplete_never_offers_private_repositories(
    hub: HubData, client_for: ClientFor, outsider: User
) -> None:
    for client in (client_for(None), client_for(outsider)):
        for query in ("", "s", "secret", "acme/", "acme/secret"):
            found = client.get(f"/-/complete?kind=adapter&q={query}").json()["results"]
            assert all(r["id"] != "acme/secret-lora" for r in found), query
    member = client_for(hub.carol).get("/-/complete?kind=adapter&q=secret").json()["results"]
    assert [r["id"] for r in member] == ["acme/secret-lora"]
