"""Who may do what: every REST endpoint x every kind of caller x public/private.

One table says what each endpoint needs (read, write or admin) and what it answers on
success. A repository the caller cannot read is answered exactly like a missing one
(404 ``repo_not_found``) by every endpoint, search included; a caller who can read but
lacks the role gets 401 (anonymous) or 403, and a refused request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from rest_framework.test import APIClient

from hub.accounts.services import membership_set, organization_create
from hub.registry.models import Alias, Repository, UploadSession, Version
from tests.factories import make_token, make_user, multipart

pytestmark = pytest.mark.django_db

API = "/api/v1"
RANK = {None: 0, "read": 1, "write": 2, "admin": 3}


@dataclass(frozen=True)
class Endpoint:
    method: str
    #: ``{repo}`` is ``namespace/name``; ``{ns}`` the namespace.
    url: str
    need: str
    ok: int
    body: Any = None
    fmt: str = "json"


NEW_BYTES = b'{"pushed": "by the matrix"}\n'
ENDPOINTS: dict[str, Endpoint] = {
    "repo detail": Endpoint("get", "/repos/{repo}", "read", 200),
    "list/search": Endpoint("get", "/repos?owner={ns}&q=data&limit=100", "read", 200),
    "versions list": Endpoint("get", "/repos/{repo}/versions", "read", 200),
    "version detail": Endpoint("get", "/repos/{repo}/versions/v1", "read", 200),
    "files": Endpoint("get", "/repos/{repo}/versions/main/files", "read", 200),
    "download": Endpoint("get", "/repos/{repo}/versions/v1/files/data.jsonl", "read", 302),
    "lineage": Endpoint("get", "/repos/{repo}/versions/v1/lineage", "read", 200),
    "aliases list": Endpoint("get", "/repos/{repo}/aliases", "read", 200),
    "alias set": Endpoint("put", "/repos/{repo}/aliases/stable", "write", 200, {"version": "v1"}),
    "push": Endpoint(
        "post", "/repos/{repo}/versions", "write", 201, {"data.jsonl": NEW_BYTES}, "multipart"
    ),
    "upload start": Endpoint(
        "post",
        "/repos/{repo}/uploads",
        "write",
        201,
        {
            "files": [
                {
                    "path": "data.jsonl",
                    "size": len(NEW_BYTES),
                    "sha256": hashlib.sha256(NEW_BYTES).hexdigest(),
                }
            ]
        },
    ),
    "patch": Endpoint("patch", "/repos/{repo}", "write", 200, {"description": "edited"}),
    "visibility change": Endpoint("patch", "/repos/{repo}", "admin", 200, "flip"),
    "delete": Endpoint("delete", "/repos/{repo}", "admin", 204),
}

#: (caller, the namespace whose repositories they call): their role there.
CALLERS: dict[tuple[str, str], str | None] = {
    ("anonymous", "acme"): None,
    ("anonymous", "olivia"): None,
    ("outsider", "acme"): None,
    ("outsider", "olivia"): None,
    ("reader", "acme"): "read",
    ("writer", "acme"): "write",
    ("org admin", "acme"): "admin",
    ("owner", "olivia"): "admin",
}
USERS = {"outsider": "oscar", "reader": "rita", "writer": "wendy", "org admin": "adam"}


def expected(caller: str, role: str | None, visibility: str, endpoint: Endpoint) -> Any:
    """The answer the rules give: a status and error code (or "listed"/"hidden" for search)."""
    can_read = visibility == "public" or role is not None
    if endpoint.url.startswith("/repos?"):
        return "listed" if can_read else "hidden"
    if not can_read:
        return (404, "repo_not_found")
    if endpoint.need == "read" or RANK[role] >= RANK[endpoint.need]:
        return (endpoint.ok, None)
    if caller == "anonymous":
        return (401, "auth_required")
    return (403, "forbidden")


CASES = [
    pytest.param(caller, ns, visibility, name, id=f"{caller}@{ns}-{visibility}-{name}")
    for (caller, ns) in CALLERS
    for visibility in ("public", "private")
    for name in ENDPOINTS
]


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, str]]:
    """People, an org and four repositories with a v1, built once and rolled back at the end.

    Each test runs inside its own savepoint on top of this (pytest-django's ``db``), so
    the writes a test makes (pushes, deletes) are undone before the next one.
    """
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=fast),
        transaction.atomic(),
    ):
        tokens = {}
        owner = make_user("olivia")
        tokens["owner"] = make_token(owner)
        users = {role: make_user(username) for role, username in USERS.items()}
        tokens.update({role: make_token(user) for role, user in users.items()})
        org = organization_create(actor=users["org admin"], name="acme")
        membership_set(actor=users["org admin"], org=org, user=users["reader"], role="read")
        membership_set(actor=users["org admin"], org=org, user=users["writer"], role="write")
        for ns, admin in (("olivia", tokens["owner"]), ("acme", tokens["org admin"])):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {admin}")
            for visibility in ("public", "private"):
                name = f"{visibility}-data"
                made = client.post(
                    f"{API}/repos",
                    {"namespace": ns, "name": name, "kind": "dataset", "visibility": visibility},
                    format="json",
                )
                assert made.status_code == 201, made.content
                pushed = client.post(
                    f"{API}/repos/{ns}/{name}/versions",
                    multipart({"data.jsonl": f'{{"repo": "{ns}/{name}"}}\n'.encode()}),
                )
                assert pushed.status_code == 201, pushed.content
        yield tokens
        transaction.set_rollback(True)


def state(repo: Repository) -> tuple[Any, ...]:
    repo.refresh_from_db()
    return (
        repo.visibility,
        repo.description,
        repo.deleted_at,
        Version.objects.filter(repository=repo).count(),
        Alias.objects.filter(repository=repo).count(),
        UploadSession.objects.filter(repository=repo).count(),
    )


def call(client: APIClient, endpoint: Endpoint, repo: str, visibility: str) -> Any:
    url = API + endpoint.url.format(repo=repo, ns=repo.split("/")[0])
    body = endpoint.body
    if body == "flip":
        body = {"visibility": "public" if visibility == "private" else "private"}
    if endpoint.fmt == "multipart":
        return getattr(client, endpoint.method)(url, multipart(body), format="multipart")
    if body is None:
        return getattr(client, endpoint.method)(url)
    return getattr(client, endpoint.method)(url, body, format="json")


@pytest.mark.parametrize(("caller", "ns", "visibility", "endpoint_name"), CASES)
def test_every_caller_gets_exactly_what_their_role_allows(
    world, caller, ns, visibility, endpoint_name
):
    endpoint = ENDPOINTS[endpoint_name]
    client = APIClient()
    if caller != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world[caller]}")
    repo_id = f"{ns}/{visibility}-data"
    repo = Repository.objects.get(namespace__name=ns, name=f"{visibility}-data")
    before = state(repo)
    want = expected(caller, CALLERS[caller, ns], visibility, endpoint)

    response = call(client, endpoint, repo_id, visibility)

    if endpoint_name == "list/search":
        assert response.status_code == 200
        listed = [r["id"] for r in response.json()["results"]]
        assert ("listed" if repo_id in listed else "hidden") == want
        assert state(repo) == before
        return
    status, code = want
    body = response.json() if response.get("Content-Type") == "application/json" else None
    got_code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
    assert (response.status_code, got_code) == want, response.content[:300]
    if code is not None:
        assert state(repo) == before, "a refused request changed something"
    if code == "repo_not_found":
        # Indistinguishable from a repository that never existed.
        missing = call(client, endpoint, f"{ns}/never-existed", visibility)
        assert missing.status_code == 404
        assert json.dumps(body).replace(f"{visibility}-data", "X") == json.dumps(
            missing.json()
        ).replace("never-existed", "X")
    if status == 302:
        assert response["Location"].startswith("http")
