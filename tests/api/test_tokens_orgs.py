"""Bearer tokens (shown once, listed, revoked, expiring, scoped) and organizations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from hub.accounts.models import ApiToken, Membership
from hub.accounts.services import token_create
from hub.registry.models import Repository, Version
from tests.factories import make_token, make_user, multipart

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return str(body["error"]["code"])


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def alice() -> Any:
    return make_user("alice")


@pytest.fixture
def signed_in(alice: Any) -> APIClient:
    """alice with a browser session: how people mint their first token."""
    client = APIClient()
    client.force_login(alice)
    return client


# --- tokens ---------------------------------------------------------------------------


def test_a_new_tokens_secret_is_shown_once_and_never_listed(signed_in, alice):
    created = signed_in.post(f"{API}/tokens", {"name": "laptop", "scope": "write"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["token"]
    assert secret.startswith("strata_")
    assert len(secret) > 40
    assert secret.startswith(body["prefix"])
    assert (body["name"], body["scope"], body["revoked_at"]) == ("laptop", "write", None)
    assert not ApiToken.objects.filter(digest__contains=secret).exists()  # only a digest
    listed = signed_in.get(f"{API}/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"]
    assert secret not in str(listed)
    assert "token" not in listed[0]
    me = bearer(secret).get(f"{API}/whoami").json()
    assert (me["username"], me["token_scope"]) == ("alice", "write")


def test_a_revoked_token_fails_at_once(signed_in):
    created = signed_in.post(f"{API}/tokens", {"name": "ci", "scope": "read"}, format="json")
    secret, token_id = created.json()["token"], created.json()["id"]
    client = bearer(secret)
    assert client.get(f"{API}/whoami").status_code == 200

    assert signed_in.delete(f"{API}/tokens/{token_id}").status_code == 204

    for response in (client.get(f"{API}/whoami"), client.get(f"{API}/repos")):
        # Refused even where anonymous callers are welcome: a bad token is never ignored.
        assert response.status_code == 401
        assert error_code(response) == "invalid_token"
        assert response["WWW-Authenticate"].startswith("Bearer")
    listed = signed_in.get(f"{API}/tokens").json()
    assert listed[0]["revoked_at"] is not None


def test_an_expired_token_fails_at_once(signed_in):
    soon = (timezone.now() + timedelta(hours=1)).isoformat()
    created = signed_in.post(
        f"{API}/tokens", {"name": "short", "scope": "write", "expires_at": soon}, format="json"
    ).json()
    client = bearer(created["token"])
    assert client.get(f"{API}/whoami").status_code == 200

    ApiToken.objects.filter(pk=created["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = client.get(f"{API}/whoami")
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


def test_last_use_is_recorded_to_the_minute(alice):
    token = token_create(user=alice, name="used", scope="read")
    client = bearer(token.secret)
    assert ApiToken.objects.get(pk=token.token.pk).last_used_at is None

    assert client.get(f"{API}/whoami").status_code == 200
    first = ApiToken.objects.get(pk=token.token.pk).last_used_at
    assert first is not None
    assert client.get(f"{API}/whoami").status_code == 200
    # Within the minute: no write on the hot path.
    assert ApiToken.objects.get(pk=token.token.pk).last_used_at == first

    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=token.token.pk).update(last_used_at=two_minutes_ago)
    assert client.get(f"{API}/whoami").status_code == 200
    assert ApiToken.objects.get(pk=token.token.pk).last_used_at > two_minutes_ago


def test_an_unknown_token_is_refused():
    response = bearer("strata_not-a-real-token").get(f"{API}/repos")
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


def test_people_cannot_see_or_revoke_each_others_tokens(alice):
    mine = token_create(user=alice, name="x", scope="write").token
    bob = bearer(make_token(make_user("bob")))
    assert "x" not in [t["name"] for t in bob.get(f"{API}/tokens").json()]
    response = bob.delete(f"{API}/tokens/{mine.pk}")
    assert response.status_code == 404
    assert error_code(response) == "token_not_found"
    mine.refresh_from_db()
    assert mine.revoked_at is None


def test_tokens_need_someone_signed_in():
    for response in (
        APIClient().get(f"{API}/tokens"),
        APIClient().post(f"{API}/tokens", {"name": "x"}, format="json"),
    ):
        assert response.status_code == 401
        assert error_code(response) == "auth_required"


def test_a_read_token_can_read_but_not_write(alice):
    writer = bearer(make_token(alice, "write"))
    writer.post(f"{API}/repos", {"name": "secret", "kind": "dataset", "visibility": "private"})
    writer.post(f"{API}/repos/alice/secret/versions", multipart({"a.jsonl": b"1\n"}))
    reader = bearer(make_token(alice, "read"))

    assert reader.get(f"{API}/repos/alice/secret").status_code == 200
    assert reader.get(f"{API}/repos/alice/secret/versions/v1/files/a.jsonl").status_code == 302
    attempts = [
        reader.post(f"{API}/repos", {"name": "new", "kind": "dataset"}, format="json"),
        reader.post(f"{API}/repos/alice/secret/versions", multipart({"a.jsonl": b"2\n"})),
        reader.post(
            f"{API}/repos/alice/secret/uploads",
            {"files": [{"path": "a.jsonl", "size": 2, "sha256": "0" * 64}]},
            format="json",
        ),
        reader.put(f"{API}/repos/alice/secret/aliases/stable", {"version": "v1"}, format="json"),
        reader.patch(f"{API}/repos/alice/secret", {"description": "x"}, format="json"),
        reader.patch(f"{API}/repos/alice/secret", {"visibility": "public"}, format="json"),
        reader.delete(f"{API}/repos/alice/secret"),
        reader.post(f"{API}/tokens", {"name": "escalate", "scope": "write"}, format="json"),
    ]
    for response in attempts:
        assert response.status_code == 403, response.content
        assert error_code(response) == "token_scope"
    repo = Repository.objects.get(name="secret")
    assert (repo.visibility, repo.description, repo.deleted_at) == ("private", "", None)
    assert Version.objects.filter(repository=repo).count() == 1
    assert list(Repository.objects.values_list("name", flat=True)) == ["secret"]
    # A read token may still mint another read token.
    minted = reader.post(f"{API}/tokens", {"name": "another", "scope": "read"}, format="json")
    assert minted.status_code == 201


# --- organizations --------------------------------------------------------------------


@pytest.fixture
def acme(api: Callable[..., APIClient]) -> dict[str, APIClient]:
    """An org whose creator (adam) is its admin, with a writer, a reader and an outsider."""
    clients = {who: api(make_token(make_user(who))) for who in ("adam", "wendy", "rita", "oscar")}
    made = clients["adam"].post(f"{API}/orgs", {"name": "acme"}, format="json")
    assert made.status_code == 201, made.content
    for who, role in (("wendy", "write"), ("rita", "read")):
        response = clients["adam"].put(
            f"{API}/orgs/acme/members/{who}", {"role": role}, format="json"
        )
        assert response.json() == {"username": who, "role": role}
    return clients


def test_an_org_creator_is_its_admin_and_members_have_roles(acme):
    members = acme["oscar"].get(f"{API}/orgs/acme/members").json()
    assert members == [
        {"username": "adam", "role": "admin"},
        {"username": "rita", "role": "read"},
        {"username": "wendy", "role": "write"},
    ]
    me = acme["wendy"].get(f"{API}/whoami").json()
    assert me["orgs"] == [{"name": "acme", "role": "write"}]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("adam", 409, "name_taken"),  # a user's namespace
        ("ACME", 409, "name_taken"),
        ("a--b", 400, "invalid_name"),
        ("org.git", 400, "invalid_name"),
    ],
)
def test_org_names_follow_the_naming_rules(acme, name, status, code):
    response = acme["oscar"].post(f"{API}/orgs", {"name": name}, format="json")
    assert response.status_code == status
    assert error_code(response) == code


def test_only_org_admins_manage_members(acme):
    for who in ("wendy", "rita", "oscar"):
        response = acme[who].put(f"{API}/orgs/acme/members/oscar", {"role": "admin"}, format="json")
        assert response.status_code == 403
        assert error_code(response) == "not_org_admin"
    assert not Membership.objects.filter(user__username="oscar").exists()


def test_the_last_admin_cannot_leave_or_be_demoted(acme):
    demote = acme["adam"].put(f"{API}/orgs/acme/members/adam", {"role": "write"}, format="json")
    assert demote.status_code == 409
    assert error_code(demote) == "last_admin"
    leave = acme["adam"].delete(f"{API}/orgs/acme/members/adam")
    assert leave.status_code == 409
    assert Membership.objects.get(user__username="adam").role == "admin"


def test_writing_to_an_org_needs_the_write_role(acme):
    def create(who: str, name: str) -> Any:
        return acme[who].post(
            f"{API}/repos",
            {"namespace": "acme", "name": name, "kind": "dataset", "visibility": "private"},
            format="json",
        )

    assert create("wendy", "shared").status_code == 201
    refused = create("rita", "by-reader")
    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"
    outsider = create("oscar", "by-outsider")
    assert outsider.status_code == 404
    assert error_code(outsider) == "namespace_not_found"

    push = f"{API}/repos/acme/shared/versions"
    assert acme["wendy"].post(push, multipart({"a.jsonl": b"1\n"})).status_code == 201
    assert acme["rita"].get(f"{API}/repos/acme/shared/versions/v1").status_code == 200
    by_reader = acme["rita"].post(push, multipart({"a.jsonl": b"2\n"}))
    assert by_reader.status_code == 403
    assert error_code(by_reader) == "forbidden"
    assert acme["oscar"].get(f"{API}/repos/acme/shared").status_code == 404
    assert sorted(Repository.objects.values_list("name", flat=True)) == ["shared"]


def test_deleting_and_changing_visibility_need_the_admin_role(acme):
    acme["wendy"].post(
        f"{API}/repos", {"namespace": "acme", "name": "shared", "kind": "dataset"}, format="json"
    )
    url = f"{API}/repos/acme/shared"
    edited = acme["wendy"].patch(url, {"description": "notes"}, format="json")
    assert edited.status_code == 200
    for response in (
        acme["wendy"].patch(url, {"visibility": "private"}, format="json"),
        acme["wendy"].delete(url),
    ):
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    assert Repository.objects.get(name="shared").visibility == "public"

    assert acme["adam"].patch(url, {"visibility": "private"}, format="json").status_code == 200
    assert acme["oscar"].get(url).status_code == 404  # private now
    assert acme["adam"].delete(url).status_code == 204
    assert acme["wendy"].get(url).status_code == 404


def test_losing_membership_loses_access_at_once(acme):
    acme["adam"].post(
        f"{API}/repos",
        {"namespace": "acme", "name": "internal", "kind": "dataset", "visibility": "private"},
        format="json",
    )
    assert acme["rita"].get(f"{API}/repos/acme/internal").status_code == 200
    assert acme["adam"].delete(f"{API}/orgs/acme/members/rita").status_code == 204
    gone = acme["rita"].get(f"{API}/repos/acme/internal")
    assert gone.status_code == 404
    assert error_code(gone) == "repo_not_found"
    assert "acme/internal" not in [
        r["id"] for r in acme["rita"].get(f"{API}/repos").json()["results"]
    ]


def test_a_token_cannot_be_created_already_expired(api):
    client = api(make_token(make_user("zoe"), "write"))
    response = client.post(
        "/api/v1/tokens",
        {"name": "old", "scope": "read", "expires_at": "2001-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_expiry"
