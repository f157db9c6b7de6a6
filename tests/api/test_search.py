"""Listing and searching repositories: filters, full-text search, sorting, cursors.

Private repositories never appear to people who cannot read them, and a page of
results costs the same number of queries however many repositories it shows.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from hub.accounts.models import Namespace
from hub.accounts.services import membership_set, organization_create
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import LineageSpec, Ref
from hub.registry.models import Blob, Repository, Version
from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def blob(n: int) -> Blob:
    sha = f"{n:064x}"
    return Blob.objects.get_or_create(
        sha256=sha, defaults={"size": n, "storage_key": f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"}
    )[0]


def make_repo(
    owner: Any,
    name: str,
    kind: str = "dataset",
    *,
    namespace: str | None = None,
    base: str | None = None,
    valid: bool = True,
    downloads: int = 0,
    **fields: Any,
) -> Repository:
    """A repository with one version, made through the services (no bytes needed)."""
    actor = Actor(user=owner)
    repo = services.repository_create(
        actor=actor, namespace=namespace or owner.username, name=name, kind=kind, **fields
    )
    files: list[tuple[str, Blob]]
    if kind == "dataset":
        files = [("data.jsonl", blob(zlib.crc32(name.encode()) + 1))]
    elif kind == "base_model":
        files = [
            ("config.json", blob(1)),
            ("model.safetensors", blob(zlib.crc32(name.encode()) + 2)),
        ]
    else:
        files = [
            ("adapter_config.json", blob(3)),
            ("adapter_model.safetensors", blob(zlib.crc32(name.encode()) + 4)),
        ]
    spec = LineageSpec(base=Ref.parse(base)) if base else None
    version = services.version_publish(actor=actor, repository=repo, files=files, spec=spec).version
    if valid and version.status != Version.Status.VALID:
        services.version_set_status(version=version, status=Version.Status.VALID)
    if downloads:
        Repository.objects.filter(pk=repo.pk).update(downloads=downloads)
    repo.refresh_from_db()
    return repo


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """The catalogue, built once for the module and rolled back at its end.

    Each test runs in its own savepoint on top of it (pytest-django's ``db``).
    """
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=fast),
        transaction.atomic(),
    ):
        alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
        organization_create(actor=alice, name="acme")
        make_repo(alice, "internal-data", namespace="acme", visibility="private")
        make_repo(alice, "llama-base", "base_model", license="llama3", tags=["LLM", "base"])
        make_repo(alice, "mistral-base", "base_model", license="apache-2.0")
        make_repo(
            alice,
            "medical-lora",
            "adapter",
            base="alice/llama-base",
            license="apache-2.0",
            tags=["medical", "summarization"],
            description="Summarises clinical notes into discharge letters.",
            downloads=50,
        )
        make_repo(
            bob,
            "legal-lora",
            "adapter",
            base="alice/llama-base",
            license="MIT",
            tags=["legal"],
            description="Drafts contracts in plain English.",
            downloads=200,
        )
        make_repo(
            bob,
            "french-lora",
            "adapter",
            base="alice/mistral-base",
            license="mit",
            tags=["translation"],
            downloads=5,
        )
        make_repo(bob, "draft-lora", "adapter", base="alice/mistral-base", valid=False)
        make_repo(bob, "notes-corpus", "dataset", tags=["medical"], description="clinical notes")
        make_repo(bob, "hidden-lora", "adapter", base="alice/llama-base", visibility="private")
        yield {"alice": alice, "bob": bob, "carol": carol}
        transaction.set_rollback(True)


@pytest.fixture
def catalogue(world: dict[str, Any]) -> dict[str, Any]:
    return world


@pytest.fixture
def alice(world: dict[str, Any]) -> Any:
    return world["alice"]


def test_anonymous_listing_shows_public_repositories_only(catalogue):
    listed = ids(APIClient().get(f"{API}/repos?sort=name&limit=100"))
    assert "bob/hidden-lora" not in listed
    assert sorted(listed) == sorted(
        [
            "alice/llama-base",
            "alice/mistral-base",
            "alice/medical-lora",
            "bob/legal-lora",
            "bob/french-lora",
            "bob/draft-lora",
            "bob/notes-corpus",
        ]
    )


def test_private_repositories_are_listed_only_to_those_who_can_read_them(catalogue, alice, api):
    bob = api(make_token(catalogue["bob"]))
    assert "bob/hidden-lora" in ids(bob.get(f"{API}/repos?limit=100"))
    assert "bob/hidden-lora" not in ids(api(make_token(alice)).get(f"{API}/repos?limit=100"))
    for query in ("q=hidden", "owner=bob", "base=alice/llama-base", "kind=adapter"):
        assert "bob/hidden-lora" not in ids(api(make_token(alice)).get(f"{API}/repos?{query}"))
        assert "bob/hidden-lora" in ids(bob.get(f"{API}/repos?{query}"))


def test_org_members_see_the_orgs_private_repositories(world, api):
    carol = api(make_token(world["carol"]))
    assert "acme/internal-data" not in ids(carol.get(f"{API}/repos"))
    assert "acme/internal-data" not in ids(APIClient().get(f"{API}/repos?owner=acme"))
    org = Namespace.objects.get(name="acme")
    membership_set(actor=world["alice"], org=org, user=world["carol"], role="read")
    assert "acme/internal-data" in ids(carol.get(f"{API}/repos"))
    assert "acme/internal-data" in ids(carol.get(f"{API}/repos?owner=acme&q=internal"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=base_model", ["alice/llama-base", "alice/mistral-base"]),
        ("kind=dataset", ["bob/notes-corpus"]),
        ("base=alice/llama-base", ["alice/medical-lora", "bob/legal-lora"]),
        ("base=alice/mistral-base", ["bob/draft-lora", "bob/french-lora"]),
        ("base=alice/nothing", []),
        ("owner=alice", ["alice/llama-base", "alice/medical-lora", "alice/mistral-base"]),
        ("tag=medical", ["alice/medical-lora", "bob/notes-corpus"]),
        ("tag=LLM", ["alice/llama-base"]),  # tags are stored lower-case
        ("license=MIT", ["bob/french-lora", "bob/legal-lora"]),
        ("license=apache-2.0", ["alice/medical-lora", "alice/mistral-base"]),
        ("kind=adapter&status=valid", ["alice/medical-lora", "bob/french-lora", "bob/legal-lora"]),
        # The newest version's status: a pending repository is found too.
        ("kind=adapter&status=pending", ["bob/draft-lora"]),
        ("kind=adapter&owner=bob&tag=legal", ["bob/legal-lora"]),
        ("kind=adapter&license=mit&base=alice/llama-base", ["bob/legal-lora"]),
    ],
)
def test_it_filters_repositories(catalogue, query, expected):
    assert sorted(ids(APIClient().get(f"{API}/repos?{query}&limit=100"))) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("clinical", ["alice/medical-lora", "bob/notes-corpus"]),
        ("contracts", ["bob/legal-lora"]),
        ("clinical -notes", []),  # websearch syntax: both mention notes
        ("discharge letters", ["alice/medical-lora"]),
        ('"plain english"', ["bob/legal-lora"]),
        ("french", ["bob/french-lora"]),  # matched on the name
        ("lora", ["alice/medical-lora", "bob/draft-lora", "bob/french-lora", "bob/legal-lora"]),
        ("nothing-matches-this", []),
    ],
)
def test_q_searches_names_and_descriptions_with_postgres_full_text(catalogue, q, expected):
    response = APIClient().get(f"{API}/repos", {"q": q, "limit": 100})
    assert sorted(ids(response)) == expected


def test_it_sorts_by_downloads_recent_and_name(catalogue):
    client = APIClient()
    by_downloads = ids(client.get(f"{API}/repos?kind=adapter&sort=downloads"))
    assert by_downloads[:3] == ["bob/legal-lora", "alice/medical-lora", "bob/french-lora"]
    by_name = ids(client.get(f"{API}/repos?kind=adapter&sort=name"))
    assert [i.split("/")[1] for i in by_name] == [
        "draft-lora",
        "french-lora",
        "legal-lora",
        "medical-lora",
    ]
    Repository.objects.filter(name="french-lora").update(updated_at=timezone.now())
    assert ids(client.get(f"{API}/repos?kind=adapter&sort=recent"))[0] == "bob/french-lora"
    assert ids(client.get(f"{API}/repos?kind=adapter"))[0] == "bob/french-lora"  # the default


def test_an_unknown_sort_is_a_clear_error(catalogue):
    response = APIClient().get(f"{API}/repos?sort=stars")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_sort"


@pytest.mark.parametrize("sort", ["downloads", "recent", "name"])
def test_cursor_pages_cover_every_repository_once(catalogue, alice, sort):
    for i in range(7):  # ties on downloads and updated_at
        make_repo(alice, f"extra-{i}", downloads=5 if i % 2 else 0)
    client = APIClient()
    everything = ids(client.get(f"{API}/repos", {"sort": sort, "limit": 100}))
    seen: list[str] = []
    url: str | None = f"{API}/repos?sort={sort}&limit=3"
    pages = 0
    while url:
        response = client.get(url)
        seen += ids(response)
        url = response.json()["next"]
        pages += 1
    assert seen == everything
    assert len(seen) == len(set(seen)) == 14
    assert pages == 5


def test_deleted_repositories_are_not_listed(catalogue, alice, api):
    client = api(make_token(alice))
    assert client.delete(f"{API}/repos/alice/medical-lora").status_code == 204
    assert "alice/medical-lora" not in ids(client.get(f"{API}/repos?limit=100"))


def test_listed_repositories_show_their_base_and_main_version(catalogue):
    results = APIClient().get(f"{API}/repos?kind=adapter&sort=name").json()["results"]
    by_id = {r["id"]: r for r in results}
    assert by_id["bob/legal-lora"]["base_model"] == "alice/llama-base"
    assert by_id["bob/legal-lora"]["main"]["label"] == "v1"
    assert by_id["bob/legal-lora"]["main"]["status"] == "valid"
    assert by_id["bob/draft-lora"]["main"] is None


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("authenticated", [False, True])
def test_a_page_costs_the_same_queries_for_3_or_15_repositories(world, api, authenticated):
    alice, bob = world["alice"], world["bob"]
    client = api(make_token(bob)) if authenticated else APIClient()

    def seed(start: int, stop: int) -> None:
        for i in range(start, stop):
            owner = alice if i % 2 else bob
            make_repo(owner, f"counted-{i}", "adapter", base="alice/llama-base", tags=["qc"])

    seed(0, 3)
    url = f"{API}/repos?tag=qc&sort=name&limit=50"
    client.get(url)  # warm up: the token's last-used stamp and similar one-off writes
    few = _queries(client, url)
    seed(3, 15)
    many = _queries(client, url)
    assert len(ids(client.get(url))) == 15
    assert few == many, f"{few} queries for 3 repositories, {many} for 15"
    searched_few = _queries(client, f"{API}/repos?q=counted&tag=qc&status=valid&limit=2")
    searched_many = _queries(client, f"{API}/repos?q=counted&tag=qc&status=valid&limit=50")
    assert searched_few == searched_many
