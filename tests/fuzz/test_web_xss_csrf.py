"""XSS in everything a user controls that a page shows, and CSRF on every web form.

Payloads go in through the real doors (REST push, PATCH, aliases) or, for what only a
worker writes (a job's error message, a validation report), straight into the row the
worker would write. Rendered pages are then parsed: no inline script, no event-handler
attribute, no ``javascript:``/``vbscript:``/``data:text/html`` URL, no svg/iframe/object
outside the hub's own markup.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from hub.accounts.services import organization_create
from hub.registry import services
from hub.registry.models import Job, Repository, Version
from tests.factories import adapter_files, make_user, multipart
from tests.fuzz.conftest import Owned

pytestmark = pytest.mark.timeout(60)

PAYLOADS = [
    "<script>alert('xss-script')</script>",
    '<img src=x onerror="alert(1)">',
    "<svg onload=alert(1)><circle r=1 /></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt&#58;alert(1)">entity</a>',
    '<a href=" &#14;javascript:alert(1)">ctrl</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<object data="data:text/html,<script>alert(1)</script>"></object>',
    '<div style="background:url(javascript:alert(1))" onclick="alert(1)">div</div>',
    '"><script>alert("attr")</script>',
    "'><img src=x onerror=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">b</button></form>',
]
CARD = (
    "---\nlicense: mit\n---\n# Card\n\n"
    + "\n\n".join(PAYLOADS)
    + "\n\n[md link](javascript:alert(1)) ![md img](javascript:alert(1))"
    + " [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)"
    + "\n\n<details open ontoggle=alert(1)>x</details>\n"
)
ONE_LINE = " ".join(PAYLOADS)
DANGEROUS_TAGS = {
    "script",
    "iframe",
    "object",
    "embed",
    "frame",
    "frameset",
    "applet",
    "base",
    "style",
    "math",
}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background"}
BAD_SCHEME = re.compile(r"^(javascript|vbscript|data:text/html|data:image/svg)", re.IGNORECASE)


class PageAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        #: For each open <svg>: whether it is the hub's own (the lineage graph or an icon).
        self.svgs: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script":
            src = names.get("src") or ""
            if not src.startswith("/static/"):
                self.problems.append(f"inline or foreign <script src={src!r}>")
        elif tag in DANGEROUS_TAGS:
            self.problems.append(f"<{tag}>")
        if tag == "svg":
            # The hub draws the lineage graph (with nested svgs) and aria-hidden icons.
            own = (
                any(self.svgs)
                or "lineage-svg" in (names.get("class") or "")
                or names.get("aria-hidden") == "true"
            )
            if not own:
                self.problems.append(f"foreign <svg {attrs}>")
            self.svgs.append(own)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}={value!r}>")
            if name == "style" and value and "javascript" in value.lower():
                self.problems.append(f"<{tag} style={value!r}>")
            if name in URL_ATTRS and value:
                cleaned = re.sub(r"[\x00-\x20]", "", value)
                if BAD_SCHEME.match(cleaned):
                    self.problems.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self.svgs:
            self.svgs.pop()


def audit(html: str) -> list[str]:
    parser = PageAudit()
    parser.feed(html)
    return parser.problems


def assert_clean(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    html = response.content.decode()
    assert audit(html) == [], (url, audit(html))
    return html


@pytest.fixture
def hostile(owned: Owned) -> dict[str, Any]:
    """owner/lora v2 pushed with hostile card, message, datasets, training params and a
    hostile file name; a hostile description; a failed job with a hostile message."""
    api = Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}")
    response = api.patch(
        "/api/v1/repos/owner/lora",
        {
            "description": ONE_LINE,
            "tags": ["<script>x</script>", "onerror=1"],
            "license": ONE_LINE[:64],
        },
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    files = {
        **adapter_files(seed=11),
        "README.md": CARD.encode(),
        "notes/<img src=x onerror=alert(1)>.txt": b"file name payload",
    }
    meta = {
        "base_model": "owner/base",
        "message": ONE_LINE,
        "datasets": [
            "javascript://%0aalert(1)",
            'https://x.org/"><svg onload=alert(1)>',
            "https://x.org/<script>alert(1)</script>",
        ],
        "training_params": {"<script>k</script>": ONE_LINE[:200], "lr": "<img src=x onerror=1>"},
    }
    response = api.post("/api/v1/repos/owner/lora/versions", multipart(files, meta))
    assert response.status_code == 201, response.content
    version = Version.objects.get(repository=owned.adapter, number=2)
    # What a worker writes: an invalid report whose findings quote the upload, and a job
    # failure message.
    # Valid (so anonymous visitors see it too), with findings that quote the upload.
    services.version_set_status(
        version=version,
        status=Version.Status.VALID,
        report={
            "status": "valid",
            "findings": [
                {"severity": "warning", "code": "x", "message": ONE_LINE, "tensor": ONE_LINE},
                {"severity": "info", "code": ONE_LINE[:40], "message": ONE_LINE},
            ],
            "facts": {"target_modules": [ONE_LINE], "layout": ONE_LINE},
            "module_stats": [],
            "normalized_config": None,
        },
    )
    job = Job.objects.filter(version=version).first()
    assert job is not None
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.FAILED,
        error_code="<b>code</b>",
        error_message=ONE_LINE,
        log_tail=ONE_LINE,
        result={"x": ONE_LINE},
        finished_at=timezone.now(),
    )
    assert (
        api.put(
            "/api/v1/repos/owner/lora/aliases/stable",
            {"version": "v1"},
            content_type="application/json",
        ).status_code
        == 200
    )
    return {"job": job, "version": version}


def test_hostile_values_are_neutralised_on_every_page(
    owned: Owned, hostile: dict[str, Any]
) -> None:
    signed_in = Client()
    signed_in.force_login(owned.user)
    for client in (Client(), signed_in):
        repo_page = assert_clean(client, "/owner/lora")
        version_page = assert_clean(client, "/owner/lora/v/v2")
        assert "xss-script" not in version_page.replace("&#x27;xss-script&#x27;", "")
        assert_clean(client, "/owner/lora/v/v2/lineage")
        assert_clean(client, "/owner/lora/compare/v1...v2")
        assert_clean(client, "/search?q=lora")
        assert_clean(client, "/search?q=" + "%3Cscript%3Ealert(1)%3C/script%3E")
        assert_clean(client, "/search?tag=%3Cscript%3Ex%3C/script%3E")
        assert_clean(client, "/owner")
        assert_clean(client, "/")
        assert "&lt;script&gt;" in repo_page or "&lt;script&gt;" in version_page
    assert_clean(signed_in, f"/jobs/{hostile['job'].pk}")
    assert_clean(signed_in, "/jobs")
    assert_clean(signed_in, "/owner/lora/upload")


def test_hostile_token_and_org_names(owned: Owned) -> None:
    client = Client()
    client.force_login(owned.user)
    response = client.post("/settings/tokens", {"name": ONE_LINE[:100], "scope": "read"})
    assert response.status_code in (200, 302)
    assert_clean(client, "/settings/tokens")
    org = organization_create(actor=owned.user, name="acme", display_name=ONE_LINE[:200])
    assert org.display_name
    assert_clean(client, "/acme")


def test_card_markdown_keeps_formatting(owned: Owned, hostile: dict[str, Any]) -> None:
    """The sanitizer removes the attack, not the card: headings and links survive."""
    html = Client().get("/owner/lora/v/v2").content.decode()
    assert "<h2" in html
    assert "Card" in html
    assert 'href="javascript' not in html.lower()


# --- CSRF ------------------------------------------------------------------------------


def csrf_client(user: Any | None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def csrf_token(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    token = client.cookies["csrftoken"].value
    assert token
    return token


@pytest.fixture
def org_admin(owned: Owned) -> Any:
    organization_create(actor=owned.user, name="acme")
    make_user("member")
    return owned.user


FORMS = [
    # (page with the form, action, fields, signed in, accepted status)
    (
        "/new",
        "/new",
        {"namespace": "owner", "name": "viaform", "kind": "adapter", "visibility": "public"},
        True,
        302,
    ),
    ("/settings/tokens", "/settings/tokens", {"name": "viaform", "scope": "read"}, True, 200),
    ("/acme", "/acme/-/members", {"username": "member", "role": "read"}, True, 302),
    ("/", "/logout", {}, True, 302),
    ("/login", "/login", {"username": "owner", "password": "correct-horse-battery"}, False, 302),
    (
        "/signup",
        "/signup",
        {"username": "newbie", "password1": "pw-123456789x", "password2": "pw-123456789x"},
        False,
        302,
    ),
]


@pytest.mark.parametrize(
    ("page", "action", "fields", "signed_in", "accepted"), FORMS, ids=[f[1] for f in FORMS]
)
def test_forms_refuse_posts_without_a_csrf_token(
    owned: Owned,
    org_admin: Any,
    page: str,
    action: str,
    fields: dict[str, str],
    signed_in: bool,
    accepted: int,
) -> None:
    client = csrf_client(owned.user if signed_in else None)
    token = csrf_token(client, page)
    refused = client.post(action, fields)
    assert refused.status_code == 403, (action, refused.status_code)
    forged = client.post(action, {**fields, "csrfmiddlewaretoken": "x" * 64})
    assert forged.status_code == 403
    accepted_response = client.post(action, {**fields, "csrfmiddlewaretoken": token})
    assert accepted_response.status_code == accepted, (action, accepted_response.status_code)


def test_token_revoke_needs_a_csrf_token(owned: Owned) -> None:
    client = csrf_client(owned.user)
    token = csrf_token(client, "/settings/tokens")
    api_token = owned.user.api_tokens.first()
    assert api_token is not None
    url = f"/settings/tokens/{api_token.pk}/revoke"
    assert client.post(url).status_code == 403
    api_token.refresh_from_db()
    assert api_token.revoked_at is None
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    api_token.refresh_from_db()
    assert api_token.revoked_at is not None


def test_browser_upload_api_with_a_session_needs_a_csrf_token(owned: Owned) -> None:
    """The upload page drives the REST upload API with the session cookie."""
    client = csrf_client(owned.user)
    token = csrf_token(client, "/owner/lora/upload")
    body = {
        "files": [
            {"path": "adapter_config.json", "size": 2, "sha256": "0" * 64},
            {"path": "adapter_model.safetensors", "size": 2, "sha256": "1" * 64},
        ],
        "metadata": {"base_model": "owner/base"},
    }
    refused = client.post("/api/v1/repos/owner/lora/uploads", body, content_type="application/json")
    assert refused.status_code == 403
    for method, url, data in (
        ("post", "/api/v1/repos", {"name": "x", "kind": "adapter"}),
        ("patch", "/api/v1/repos/owner/lora", {"description": "x"}),
        ("put", "/api/v1/repos/owner/lora/aliases/stable", {"version": "v1"}),
        ("delete", "/api/v1/repos/owner/lora", None),
        ("post", "/api/v1/tokens", {"name": "x"}),
    ):
        response = getattr(client, method)(url, data, content_type="application/json")
        assert response.status_code == 403, (method, url)
    assert Repository.objects.filter(name="lora", deleted_at__isnull=True).exists()
    ok = client.post(
        "/api/v1/repos/owner/lora/uploads",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert ok.status_code in (200, 201), ok.content[:200]


@pytest.mark.parametrize("payload", [*PAYLOADS, '<a href="java&#x09;script:alert(1)">t</a>'])
def test_the_audit_would_catch_each_payload_unsanitized(payload: str) -> None:
    """Guards the auditor itself: raw, each payload is flagged (or has no live markup)."""
    if payload.startswith(("\"'>", "'>", '">')):
        payload = payload.lstrip("\"'>")
    assert audit(payload), payload
