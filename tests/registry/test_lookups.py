"""The one-query lookups agree with the ORM path they short-cut, or defer to it."""

from __future__ import annotations

from typing import Any

import pytest

from hub.accounts.services import membership_set, organization_create
from hub.registry import services
from hub.registry.access import Actor, repository_for
from hub.registry.errors import NotFound
from hub.registry.lookups import file_lookup, version_lookup
from hub.registry.models import Alias, Version
from hub.registry.selectors import version_file, version_for
from tests.factories import make_token, make_user, multipart

pytestmark = pytest.mark.django_db


@pytest.fixture
def hub(api: Any) -> dict[str, Any]:
    owner, member, outsider = make_user("olga"), make_user("mike"), make_user("otto")
    lab = organization_create(actor=owner, name="lab")
    membership_set(actor=owner, org=lab, user=member, role="read")
    client = api(make_token(owner))
    for visibility in ("public", "private"):
        made = client.post(
            "/api/v1/repos",
            {"namespace": "lab", "name": visibility, "kind": "dataset", "visibility": visibility},
            format="json",
        )
        assert made.status_code == 201, made.content
        for run in (1, 2):
            pushed = client.post(
                f"/api/v1/repos/lab/{visibility}/versions",
                multipart({"train.jsonl": f'{{"run": {run}}}\n'.encode()}),
            )
            assert pushed.status_code == 201, pushed.content
    # v2 of the public repository failed validation: only writers may see it.
    bad = Version.objects.get(repository__name="public", number=2)
    services.version_set_status(version=bad, status="invalid")
    actors = {
        "anonymous": Actor.anonymous(),
        "outsider": Actor(user=outsider),
        "member": Actor(user=member),
        "owner": Actor(user=owner),
    }
    return {"actors": actors}


def ordinary_path(actor: Actor, name: str, revision: str, path: str) -> tuple[int, str] | None:
    try:
        repository = repository_for(actor, "lab", name)
        version = version_for(actor, repository, revision)
        return version.pk, version_file(version, path).blob.sha256
    except NotFound:
        return None


@pytest.mark.parametrize("name", ["public", "private"])
@pytest.mark.parametrize("who", ["anonymous", "outsider", "member", "owner"])
def test_it_finds_what_the_ordinary_path_finds_and_defers_the_rest(hub, name, who):
    actor = hub["actors"][who]
    versions = Version.objects.filter(repository__name=name).order_by("number")
    revisions = [Alias.MAIN, "v1", "v2", "v9", versions[0].commit_id, "no-such-alias"]
    for revision in revisions:
        for path in ("train.jsonl", "missing.jsonl"):
            fast = file_lookup(actor, "lab", name, revision, path)
            expected = ordinary_path(actor, name, revision, path)
            if fast is not None:
                assert (fast.version.pk, fast.blob.sha256) == expected, (revision, path)
            elif expected is not None:
                # Deferring is allowed only for invalid versions (the view then takes the
                # ordinary path); everything else readable is answered in one query.
                assert Version.objects.get(pk=expected[0]).status == "invalid", revision


def test_it_never_answers_for_an_invalid_version_even_to_its_writers(hub):
    for who in ("anonymous", "owner"):
        assert file_lookup(hub["actors"][who], "lab", "public", "v2", "train.jsonl") is None
    # The ordinary path shows it to the owner, and hides it from everyone else.
    assert ordinary_path(hub["actors"]["owner"], "public", "v2", "train.jsonl") is not None
    assert ordinary_path(hub["actors"]["anonymous"], "public", "v2", "train.jsonl") is None


def test_it_never_finds_a_private_file_for_someone_who_may_not_read_it(hub):
    for who in ("anonymous", "outsider"):
        assert file_lookup(hub["actors"][who], "lab", "private", "v1", "train.jsonl") is None
    for who in ("member", "owner"):
        assert file_lookup(hub["actors"][who], "lab", "private", "v1", "train.jsonl")


def ordinary_version(actor: Actor, name: str, revision: str) -> int | None:
    try:
        return version_for(actor, repository_for(actor, "lab", name), revision).pk
    except NotFound:
        return None


@pytest.mark.parametrize("name", ["public", "private"])
@pytest.mark.parametrize("who", ["anonymous", "outsider", "member", "owner"])
def test_version_lookup_finds_what_the_ordinary_path_finds_and_defers_the_rest(hub, name, who):
    actor = hub["actors"][who]
    versions = Version.objects.filter(repository__name=name).order_by("number")
    for revision in [Alias.MAIN, "v1", "v2", "v9", versions[1].commit_id, "no-such-alias"]:
        fast = version_lookup(actor, "lab", name, revision)
        expected = ordinary_version(actor, name, revision)
        if fast is None:
            assert expected is None or Version.objects.get(pk=expected).status == "invalid"
            continue
        repository, version = fast
        assert version.pk == expected, revision
        # Whole instances: what serializers read is there without another query.
        assert version.repository is repository
        assert repository.full_name == f"lab/{name}"
        assert repository.visibility == name
