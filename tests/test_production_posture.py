"""Production posture: security headers, downloads that never render, logs without secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import Client

from hub.request_id import JsonLogFormatter, RequestIdFilter
from tests.factories import make_token, make_user, multipart

pytestmark = pytest.mark.django_db

#: A model card and a text file that would run script if a browser rendered (or sniffed)
#: them as HTML.
HOSTILE_CARD = b"# Card\n<script>alert('card')</script>\n"
HOSTILE_TEXT = b'<html><svg onload="alert(1)"><script>alert(2)</script></svg></html>\n'


def test_html_pages_carry_a_content_security_policy_and_the_security_headers(client: Client):
    page = client.get("/")
    assert page.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1) for directive in page["Content-Security-Policy"].split(";")
    )
    # Only the hub's own scripts run, whatever a model card smuggles into the page.
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"


@pytest.fixture
def hostile_files(api: Any) -> Any:
    client = api(make_token(make_user("mallory")))
    made = client.post("/api/v1/repos", {"name": "figures", "kind": "dataset"}, format="json")
    assert made.status_code == 201
    pushed = client.post(
        "/api/v1/repos/mallory/figures/versions",
        multipart({"README.md": HOSTILE_CARD, "notes.txt": HOSTILE_TEXT}),
    )
    assert pushed.status_code == 201, pushed.content
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/repos/mallory/figures/versions/v1/files/notes.txt",
        "/hf/datasets/mallory/figures/resolve/main/notes.txt",
    ],
)
def test_downloads_are_attachments_that_browsers_never_render(hostile_files: Any, url: str):
    answer = hostile_files.get(url)
    assert answer.status_code == 302
    assert answer["Content-Disposition"].startswith("attachment;")
    assert answer["X-Content-Type-Options"] == "nosniff"
    # Object storage serves the bytes as an opaque attachment too.
    served = requests.get(answer["Location"], timeout=30)
    assert served.content == HOSTILE_TEXT
    assert served.headers["Content-Disposition"].startswith("attachment;")
    assert served.headers["Content-Type"] == "application/octet-stream"


def test_the_local_backend_streams_downloads_as_attachments(local_store: None, hostile_files):
    answer = hostile_files.get("/api/v1/repos/mallory/figures/versions/v1/files/README.md")
    assert answer.status_code == 200
    assert b"".join(answer.streaming_content) == HOSTILE_CARD
    assert answer["Content-Type"] == "application/octet-stream"
    assert answer["Content-Disposition"].startswith("attachment;")
    assert answer["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def json_log_lines() -> Iterator[list[str]]:
    """Every line the hub logs during the test, formatted as production writes it."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_logs_are_json_with_the_request_id_and_never_carry_secrets(
    api: Any, client: Client, json_log_lines: list[str]
):
    password = "correct-horse-battery"
    alice = make_user("alice", password)
    token = make_token(alice)
    minted = api(token).post("/api/v1/tokens", {"name": "ci", "scope": "write"}, format="json")
    assert minted.status_code == 201, minted.content
    secret = minted.json()["token"]
    # A token, a wrong one, a password login and a failed one, and a server-side failure.
    api(secret).post("/api/v1/repos", {"name": "x", "kind": "dataset"}, format="json")
    api(token + "x").get("/api/v1/repos/alice/x")
    client.post("/login", {"username": "alice", "password": password})
    client.post("/login", {"username": "alice", "password": password + "!"})
    api(secret).post(
        "/api/v1/repos/alice/x/versions",
        multipart({"data.jsonl": b"{}\n"}),
        HTTP_X_REQUEST_ID="trace-0123456789",
    )

    assert json_log_lines, "the requests above should have logged something"
    entries = [json.loads(line) for line in json_log_lines]
    assert {"time", "level", "logger", "request_id", "message"} <= entries[0].keys()
    assert any(e["request_id"] == "trace-0123456789" for e in entries)
    everything = "\n".join(json_log_lines)
    for value in (token, secret, password, token[8:]):
        assert value not in everything


@pytest.mark.parametrize(
    ("style", "allowed"),
    [
        ("path", "http://s3.internal:9000"),
        ("virtual", "http://s3.internal:9000 http://*.s3.internal:9000"),
    ],
)
def test_browser_uploads_may_reach_the_storage_endpoint(settings, style, allowed):
    from hub.content_security import content_security_policy

    settings.STORAGE_BACKEND = "s3"
    settings.S3_PUBLIC_ENDPOINT_URL = "http://s3.internal:9000/"
    settings.S3_ADDRESSING_STYLE = style
    policy = dict(d.strip().split(" ", 1) for d in content_security_policy().split(";"))
    assert policy["connect-src"] == f"'self' {allowed}"
