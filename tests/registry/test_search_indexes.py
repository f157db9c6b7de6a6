"""The search indexes of migrations 0006 and 0007 exist and serve the query the API issues.

The stored ``search_vector`` column (0007) and the trigram index on ``UPPER(name)``
(0006) each have a GIN index; PostgreSQL uses them only while the query tests exactly
that column and that expression. These tests fail if ``selectors.repositories_search``
and the migrations drift apart. No timings here: see ``bench/load.py`` and
docs/RELIABILITY.md for those.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from hub.accounts.models import Namespace
from hub.registry.access import Actor, repositories_visible_to
from hub.registry.models import Repository
from hub.registry.selectors import repositories_search

pytestmark = pytest.mark.django_db

INDEXES = {"registry_repository_search_vector", "registry_repository_name_trgm"}


@pytest.fixture
def postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")


@pytest.fixture
def repos() -> list[Repository]:
    org = Namespace.objects.create(name="idx-org", name_key="idx-org", kind="org")
    rows = [
        ("clinical-notes", "Summarises clinical notes into discharge letters."),
        ("contract-drafter", "Drafts contracts in plain English."),
        ("Mixed-Case-Name", ""),
        *((f"filler-{i:03d}", f"Adapter number {i} for nothing in particular.") for i in range(40)),
    ]
    return Repository.objects.bulk_create(
        [
            Repository(namespace=org, name=n, name_key=n.lower(), kind="adapter", description=d)
            for n, d in rows
        ]
    )


def search(q: str) -> list[str]:
    visible = repositories_visible_to(Actor.anonymous())
    return sorted(r.name for r in repositories_search(visible, query=q))


def test_the_search_indexes_exist(postgres: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'registry_repository'")
        names = {row[0] for row in cursor.fetchall()}
    assert INDEXES | {"repository_recent"} <= names


def test_the_search_query_can_use_both_gin_indexes(postgres: None, repos: Any) -> None:
    """With sequential and plain index scans off, only bitmap scans remain: the planner
    can then answer the OR only if each side matches its index's expression."""
    # Every repository, so that no other index (visibility) competes with the GIN ones.
    query = repositories_search(Repository.objects.all(), query="clinical").order_by()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = query.explain()
    for name in INDEXES:
        assert name in plan, plan


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("clinical", ["clinical-notes"]),  # a word of a description
        ("summarise", ["clinical-notes"]),  # English stemming, as before the index
        ('"plain english"', ["contract-drafter"]),
        ("mixed-case", ["Mixed-Case-Name"]),  # the name, case-insensitively
        ("ixed-cas", ["Mixed-Case-Name"]),  # a fragment of the name (the trigram side)
        ("filler-00", [f"filler-{i:03d}" for i in range(10)]),
        ("nothing-matches-this", []),
    ],
)
def test_search_finds_the_same_rows_with_the_indexes(
    postgres: None, repos: Any, q: str, expected: list[str]
) -> None:
    assert search(q) == expected
