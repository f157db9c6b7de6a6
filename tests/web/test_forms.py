"""Forms that write: sign up, sign in and out, tokens, new repositories, org members."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from hub.accounts.models import ApiToken, Membership, Namespace
from hub.accounts.services import token_authenticate, token_create
from hub.registry.models import Repository
from tests.factories import make_user
from tests.web.hubdata import HubData
from tests.web.test_views import text

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User | None], Client]


# --- Sign up, in and out -------------------------------------------------------------


def test_sign_up_creates_the_user_and_their_namespace_and_signs_in(db: object) -> None:
    client = Client()
    page = client.get("/signup")
    assert page.status_code == 200
    done = client.post(
        "/signup",
        {
            "username": "erin",
            "email": "erin@example.org",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
            "next": "/new",
        },
    )
    assert done.status_code == 302
    assert done["Location"] == "/new"
    assert Namespace.objects.filter(name="erin", kind="user").exists()
    assert "erin" in text(client.get("/"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "search"}, "That name is reserved"),
        ({"username": "bad name!"}, "is not allowed"),
        ({"password2": "something-else-entirely"}, "The two passwords differ"),
        ({"password1": "short", "password2": "short"}, "too short"),
        ({"next": "https://evil.example/"}, None),
    ],
)
def test_sign_up_refuses_bad_input(db: object, fields: dict[str, str], message: str | None) -> None:
    data = {
        "username": "frank",
        "password1": "a-long-passphrase-9",
        "password2": "a-long-passphrase-9",
        **fields,
    }
    answer = Client().post("/signup", data)
    if message is None:  # an off-site "next" is ignored, not followed
        assert answer.status_code == 302
        assert answer["Location"] == "/"
        return
    assert answer.status_code == 200
    assert message in text(answer)
    assert not User.objects.filter(username=data["username"]).exists()


def test_taken_names_are_refused_case_insensitively(db: object) -> None:
    make_user("grace")
    answer = Client().post(
        "/signup",
        {
            "username": "GRACE",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
        },
    )
    assert "already taken" in text(answer)


def test_log_in_and_out(db: object) -> None:
    make_user("heidi")
    client = Client()
    assert client.get("/login").status_code == 200
    wrong = client.post("/login", {"username": "heidi", "password": "nope"})
    assert "Please enter a correct username and password" in text(wrong)
    ok = client.post("/login", {"username": "heidi", "password": "correct-horse-battery"})
    assert ok.status_code == 302
    assert "Sign out" in text(client.get("/"))
    out = client.post("/logout")
    assert out.status_code == 302
    assert "Sign in" in text(client.get("/"))


# --- Tokens ----------------------------------------------------------------------------


def test_create_a_token_shown_once_then_revoke_it(db: object) -> None:
    user = make_user("ivan")
    client = Client()
    client.force_login(user)
    assert client.get("/settings/tokens").status_code == 200
    created = client.post(
        "/settings/tokens", {"name": "laptop", "scope": "write", "expires_in_days": "30"}
    )
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    secret = re.search(r'id="new-token" class="secret">([^<]+)<', created.content.decode())
    assert secret is not None
    token = token_authenticate(secret.group(1))
    assert token is not None
    assert token.scope == "write"
    assert token.name == "laptop"
    assert token.expires_at is not None
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    # Listed by prefix with its last use; the secret never appears again.
    listing = client.get("/settings/tokens").content.decode()
    assert secret.group(1) not in listing
    assert token.prefix in listing
    assert "ago" in text(client.get("/settings/tokens"))  # last used: just now
    revoked = client.post(f"/settings/tokens/{token.pk}/revoke", follow=True)
    assert "is revoked" in text(revoked)
    assert token_authenticate(secret.group(1)) is None


def test_tokens_need_a_name_and_stay_private(db: object) -> None:
    user, other = make_user("judy"), make_user("mallory")
    client = Client()
    client.force_login(user)
    answer = client.post("/settings/tokens", {"name": "", "scope": "read", "expires_in_days": "0"})
    assert "This field is required" in text(answer)
    theirs = token_create(user=other, name="theirs").token
    refused = client.post(f"/settings/tokens/{theirs.pk}/revoke", follow=True)
    assert "No such token" in text(refused)
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    assert Client().get("/settings/tokens").status_code == 302  # sign in first
    assert Client().post(f"/settings/tokens/{theirs.pk}/revoke").status_code == 302


# --- New repositories ---------------------------------------------------------------------


def owner_choices(html: str) -> list[str]:
    select = re.search(r'<select name="namespace".*?</select>', html, flags=re.S)
    assert select is not None
    return re.findall(r'<option value="([^"]+)"', select.group(0))


def test_new_repository_then_upload_page(hub: HubData, client_for: ClientFor) -> None:
    client = client_for(hub.bob)
    form = client.get("/new")
    assert form.status_code == 200
    owners = owner_choices(form.content.decode())
    assert set(owners) >= {"bob", "acme"}  # bob writes in acme
    created = client.post(
        "/new",
        {
            "namespace": "acme",
            "name": "reasoning-lora",
            "kind": "adapter",
            "visibility": "private",
            "description": "Step-by-step reasoning.",
            "license": "apache-2.0",
            "tags": "Reasoning, math ,",
        },
    )
    assert created.status_code == 302
    assert created["Location"] == "/acme/reasoning-lora/upload"
    repo = Repository.objects.get(namespace__name="acme", name="reasoning-lora")
    assert repo.visibility == "private"
    assert repo.tags == ["math", "reasoning"]
    upload = client.get("/acme/reasoning-lora/upload")
    assert upload.status_code == 200
    html = upload.content.decode()
    assert "webkitdirectory" in html
    assert 'type="file" multiple' in html
    assert 'data-repo="acme/reasoning-lora"' in html
    assert "csrfmiddlewaretoken" in html
    assert 'id="base-model"' in html  # adapters name their base model


def test_new_repository_errors_land_on_their_fields(hub: HubData, client_for: ClientFor) -> None:
    client = client_for(hub.carol)  # reads acme, writes only her own namespace
    owners = owner_choices(client.get("/new").content.decode())
    assert owners == ["carol"]
    taken = client_for(hub.alice).post(
        "/new",
        {"namespace": "acme", "name": "instruct-lora", "kind": "adapter", "visibility": "public"},
    )
    assert taken.status_code == 200
    assert "already exists" in text(taken)
    bad = client_for(hub.alice).post(
        "/new",
        {"namespace": "alice", "name": "no spaces", "kind": "adapter", "visibility": "public"},
    )
    assert "is not allowed" in text(bad)
    forged = client.post(
        "/new", {"namespace": "acme", "name": "sneaky", "kind": "adapter", "visibility": "public"}
    )
    assert forged.status_code == 200  # not one of her choices
    assert not Repository.objects.filter(name="sneaky").exists()
    assert Client().get("/new").status_code == 302


def test_upload_page_needs_the_write_role(hub: HubData, client_for: ClientFor) -> None:
    assert client_for(hub.carol).get("/acme/instruct-lora/upload").status_code == 403
    outsider = make_user("oscar")
    assert client_for(outsider).get("/acme/secret-lora/upload").status_code == 404
    anonymous = Client().get("/acme/instruct-lora/upload")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login")


# --- Organization members -----------------------------------------------------------------


def test_org_admins_add_change_and_remove_members(hub: HubData, client_for: ClientFor) -> None:
    dave = make_user("dave")
    admin = client_for(hub.alice)
    page = text(admin.get("/acme"))
    assert "Members" in page
    assert "Add a member" in page
    added = admin.post("/acme/-/members", {"username": "dave", "role": "read"}, follow=True)
    assert "dave is now read in acme" in text(added)
    assert Membership.objects.get(namespace__name="acme", user=dave).role == "read"
    admin.post("/acme/-/members", {"username": "dave", "role": "write", "action": "set"})
    assert Membership.objects.get(namespace__name="acme", user=dave).role == "write"
    removed = admin.post("/acme/-/members", {"username": "dave", "action": "remove"}, follow=True)
    assert "no longer a member" in text(removed)
    assert not Membership.objects.filter(namespace__name="acme", user=dave).exists()
    missing = admin.post("/acme/-/members", {"username": "nobody", "role": "read"}, follow=True)
    assert "There is no user nobody" in text(missing)


def test_the_last_admin_cannot_leave(hub: HubData, client_for: ClientFor) -> None:
    answer = client_for(hub.alice).post(
        "/acme/-/members", {"username": "alice", "action": "remove"}, follow=True
    )
    assert "at least one admin" in text(answer)
    assert Membership.objects.get(namespace__name="acme", user=hub.alice).role == "admin"


def test_only_admins_manage_members(hub: HubData, client_for: ClientFor) -> None:
    writer = client_for(hub.bob)
    assert "Add a member" not in text(writer.get("/acme"))
    refused = writer.post("/acme/-/members", {"username": "bob", "role": "admin"})
    assert refused.status_code == 403
    assert Membership.objects.get(namespace__name="acme", user=hub.bob).role == "write"
    anonymous = Client().post("/acme/-/members", {"username": "bob", "role": "admin"})
    assert anonymous.status_code == 302
    assert client_for(hub.alice).post("/alice/-/members", {"username": "bob"}).status_code == 404
    assert client_for(hub.alice).get("/acme/-/members").status_code == 405


def test_forms_are_csrf_protected(hub: HubData) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(hub.alice)
    assert client.post("/acme/-/members", {"username": "bob", "role": "admin"}).status_code == 403
    assert client.post("/settings/tokens", {"name": "x", "scope": "read"}).status_code == 403
    assert client.post("/new", {"namespace": "alice", "name": "x"}).status_code == 403
