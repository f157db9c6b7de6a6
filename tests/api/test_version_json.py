"""``version_json`` (the fast path of version detail) renders what VersionSerializer does."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from hub.accounts.services import user_namespace
from hub.api.serializers import VersionSerializer, version_json
from hub.registry.access import Actor, VisibleRepositories
from hub.registry.lookups import version_relations
from hub.registry.models import Blob, LineageEdge, Repository, Version, VersionFile
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def repository(owner: Any, name: str, kind: str, visibility: str = "public") -> Repository:
    return Repository.objects.create(
        namespace=user_namespace(owner),
        name=name,
        name_key=name,
        kind=kind,
        visibility=visibility,
    )


@pytest.fixture
def version() -> Version:
    """An adapter version on a public base, stacked on someone's private adapter, trained
    on an external dataset, with a normalized config file."""
    alice, bob = make_user("alice"), make_user("bob")
    base = Version.objects.create(
        repository=repository(alice, "base", "model"), number=1, commit_id="a" * 40
    )
    hidden = Version.objects.create(
        repository=repository(bob, "secret", "adapter", "private"),
        number=2,
        commit_id="b" * 40,
        status="valid",
    )
    child = Version.objects.create(
        repository=repository(alice, "chat", "adapter"),
        number=3,
        variant="merged",
        commit_id="c" * 40,
        status="invalid",
        message="ünïcode <b>message</b>",
        metadata={"training": {"lr": 1e-4, "steps": [1, 2]}, "none": None},
        report={"findings": [{"code": "shape_mismatch"}]},
        total_size=123,
        downloads=7,
    )
    blobs = [
        Blob.objects.create(sha256=f"{n}" * 64, size=10 + n, storage_key=f"k{n}") for n in range(3)
    ]
    VersionFile.objects.create(version=child, path="z.safetensors", blob=blobs[0])
    VersionFile.objects.create(
        version=child, path="adapter_config.json", blob=blobs[1], uploaded_blob=blobs[2]
    )
    LineageEdge.objects.create(child=child, parent=base, kind="adapter_of")
    LineageEdge.objects.create(child=child, parent=hidden, kind="stacked_on")
    LineageEdge.objects.create(
        child=child, kind="trained_on", external_uri="https://data.example/x", weight=0.25
    )
    return child


@pytest.mark.parametrize("who", ["anonymous", "alice", "bob"])
def test_it_matches_the_serializer_field_for_field(version: Version, who: str) -> None:
    actor = Actor.anonymous() if who == "anonymous" else Actor(user=User.objects.get(username=who))
    visible = VisibleRepositories(actor)
    expected = VersionSerializer(version, context={"visible_repository_ids": visible}).data

    relations = version_relations(version)
    fast = version_json(version, files=relations.files, edges=relations.edges, visible=visible)

    assert fast == expected
    assert list(fast) == list(expected)  # the same order of keys, too
    shown = {e["kind"] for e in fast["lineage"]}
    # bob's private adapter is a parent only bob may see.
    assert ("stacked_on" in shown) is (who == "bob")
