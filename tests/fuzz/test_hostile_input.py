"""Targeted hostile input on every door: huge headers, deep JSON, long names, confusable
and invisible characters in names, NUL characters. Always a clean 4xx with a stable
code, never a 5xx (or a RecursionError)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from django.test import Client

from hub.registry.errors import BadRequest
from hub.registry.models import Alias, Repository
from hub.registry.names import canonical_name, check_alias, check_name
from tests.factories import adapter_files, multipart
from tests.fuzz.conftest import Owned

pytestmark = pytest.mark.timeout(60)

HUGE = "x" * (64 * 1024)
DEEP = 100_000


def deep_list(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int = DEEP) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def rest_code(response: Any) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return str(json.loads(response.content)["error"]["code"])


def bearer(owned: Owned) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}")


# --- Huge request headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/api/v1/whoami", "/api/v1/repos/owner/lora", "/hf/api/whoami-v2", "/owner/lora"]
)
def test_huge_authorization_header_is_refused_cleanly(owned: Owned, url: str) -> None:
    response = Client().get(url, HTTP_AUTHORIZATION=f"Bearer {HUGE}")
    assert response.status_code == 401 if not url.startswith("/owner") else 200
    if url.startswith("/api/"):
        assert rest_code(response) == "invalid_token"
    if url.startswith("/hf/"):
        assert response["X-Error-Code"]


@pytest.mark.parametrize("url", ["/api/v1/repos", "/hf/api/models/owner/lora", "/", "/search"])
def test_huge_cookies_are_ignored_cleanly(owned: Owned, url: str) -> None:
    client = Client()
    client.cookies["sessionid"] = HUGE
    client.cookies["csrftoken"] = HUGE
    response = client.get(url, HTTP_X_REQUEST_ID=HUGE, HTTP_RANGE=f"bytes={HUGE}")
    assert response.status_code == 200
    assert response["X-Request-Id"] != HUGE  # not echoed back


def test_huge_cookie_on_a_form_post_is_a_csrf_refusal(owned: Owned) -> None:
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = HUGE
    response = client.post("/login", {"username": "owner", "password": "x"})
    assert response.status_code == 403


def test_huge_range_header_on_a_download(owned: Owned) -> None:
    response = bearer(owned).get(
        "/api/v1/repos/owner/lora/versions/v1/files/adapter_config.json",
        HTTP_RANGE="bytes=" + ",".join(["0-1"] * 5000),
    )
    assert response.status_code < 500


# --- Deeply nested JSON ----------------------------------------------------------------


REST_JSON_ENDPOINTS = [
    ("post", "/api/v1/repos"),
    ("patch", "/api/v1/repos/owner/lora"),
    ("post", "/api/v1/tokens"),
    ("post", "/api/v1/orgs"),
    ("put", "/api/v1/repos/owner/lora/aliases/stable"),
    ("post", "/api/v1/compose"),
    ("post", "/api/v1/repos/owner/lora/uploads"),
    ("post", "/api/v1/repos/owner/lora/versions/v1/merge"),
]


@pytest.mark.parametrize("body", [deep_list(), deep_object()], ids=["list", "object"])
def test_deep_json_bodies_on_rest(owned: Owned, body: str) -> None:
    client = bearer(owned)
    for method, url in REST_JSON_ENDPOINTS:
        response = getattr(client, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.content[:300])
        assert rest_code(response) == "malformed_request"


HF_JSON_ENDPOINTS = [
    "/hf/api/repos/create",
    "/hf/api/validate-yaml",
    "/hf/api/models/owner/lora/preupload/main",
    "/hf/api/models/owner/lora/tag/v1",
    "/hf/owner/lora.git/info/lfs/objects/batch",
    "/hf/api/models/owner/lora/commit/main",
]


def test_deep_json_bodies_on_hf(owned: Owned) -> None:
    # 30,000 levels fit under the 64 KiB body limit some of these routes have (larger
    # bodies are a clean 413 there), so the JSON decoder's recursion is what is tested.
    client = bearer(owned)
    for url in HF_JSON_ENDPOINTS:
        response = client.post(url, deep_list(30_000), content_type="application/json")
        assert response.status_code == 400, (url, response.content[:300])
        assert response["X-Error-Code"]


@pytest.mark.parametrize("metadata", [deep_list(), deep_object(), deep_list(900)])
def test_deep_push_metadata(owned: Owned, metadata: str) -> None:
    files = adapter_files(seed=3)
    data = multipart(files)
    data["metadata"] = metadata
    response = bearer(owned).post("/api/v1/repos/owner/lora/versions", data)
    assert response.status_code == 400, response.content[:300]
    assert rest_code(response) in ("invalid_metadata", "metadata_too_deep")


def test_deep_metadata_values_within_json_limits(owned: Owned) -> None:
    files = adapter_files(seed=3)
    meta = {"base_model": "owner/base", "training_params": json.loads(deep_list(50))}
    response = bearer(owned).post("/api/v1/repos/owner/lora/versions", multipart(files, meta))
    assert response.status_code == 400
    assert rest_code(response) == "metadata_too_deep"


def test_deep_adapter_config_in_a_push_is_stored_not_crashed(owned: Owned) -> None:
    """A hostile adapter_config.json is the validator's to report, never a 500 here."""
    files = {**adapter_files(seed=4), "adapter_config.json": deep_object().encode()}
    response = bearer(owned).post(
        "/api/v1/repos/owner/lora/versions", multipart(files, {"base_model": "owner/base"})
    )
    assert response.status_code == 201, response.content[:300]
    page = Client().get("/owner/lora/v/v2")
    assert page.status_code == 200


def test_deep_adapter_config_over_hf_commit(owned: Owned) -> None:
    lines = [
        {"key": "header", "value": {"summary": "deep"}},
        {
            "key": "file",
            "value": {
                "path": "adapter_config.json",
                "content": base64.b64encode(deep_list().encode()).decode(),
                "encoding": "base64",
            },
        },
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = bearer(owned).post(
        "/hf/api/models/owner/lora/commit/main", body, content_type="application/x-ndjson"
    )
    assert response.status_code < 500, response.content[:300]


def hf_commit(owned: Owned, files: dict[str, bytes]) -> Any:
    lines = [{"key": "header", "value": {"summary": "hostile"}}] + [
        {
            "key": "file",
            "value": {
                "path": path,
                "content": base64.b64encode(data).decode(),
                "encoding": "base64",
            },
        }
        for path, data in files.items()
    ]
    return bearer(owned).post(
        "/hf/api/models/owner/lora/commit/main",
        "\n".join(json.dumps(line) for line in lines),
        content_type="application/x-ndjson",
    )


BILLION_LAUGHS = (
    "---\nbase_model: owner/base\nstrata:\n  training_params:\n"
    + "".join(
        f"    {chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 30) + "]\n"
        if i
        else "    a: &a [" + ",".join(['"xxxxxxxxxxxxxxxx"'] * 30) + "]\n"
        for i in range(7)
    )
    + "---\n# bomb\n"
)


@pytest.mark.parametrize(
    "readme",
    [
        BILLION_LAUGHS,
        "---\nbase_model: owner/base\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n",
        "---\nbase_model: owner/base\nx: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n---\n",
    ],
    ids=["billion-laughs", "deep-list", "deep-map"],
)
def test_hostile_model_card_front_matter(owned: Owned, readme: str) -> None:
    """Aliases in a card used to expand into gigabytes of JSON metadata (30**7 strings
    from 2 KB), and deep YAML escaped as RecursionError (a 500)."""
    response = hf_commit(owned, {**adapter_files(seed=9), "README.md": readme.encode()})
    assert response.status_code == 400, response.content[:300]
    assert response["X-Error-Code"] == "invalid_model_card"


def test_deep_json_commit_line_on_hf(owned: Owned) -> None:
    response = bearer(owned).post(
        "/hf/api/models/owner/lora/commit/main",
        '{"key":"header","value":' + deep_object(5000) + "}",
        content_type="application/x-ndjson",
    )
    assert response.status_code == 400
    assert response["X-Error-Code"] == "BadRequest"


# --- Very long names -------------------------------------------------------------------

LONG = "a" * 10_000


@pytest.mark.parametrize(
    ("method", "url", "body", "code"),
    [
        ("post", "/api/v1/repos", {"name": LONG, "kind": "adapter"}, "invalid_request"),
        ("post", "/api/v1/tokens", {"name": LONG}, "invalid_request"),
        ("post", "/api/v1/orgs", {"name": LONG}, "invalid_request"),
        ("put", f"/api/v1/repos/owner/lora/aliases/{LONG}", {"version": "v1"}, "invalid_alias"),
        ("put", "/api/v1/repos/owner/lora/aliases/stable", {"version": LONG}, "revision_not_found"),
        (
            "post",
            "/api/v1/repos/owner/lora/uploads",
            {"files": [{"path": LONG + ".json", "size": 1, "sha256": "0" * 64}]},
            "invalid_request",
        ),
    ],
)
def test_long_names_on_rest(owned: Owned, method: str, url: str, body: Any, code: str) -> None:
    response = getattr(bearer(owned), method)(url, body, content_type="application/json")
    assert response.status_code in (400, 404), response.content[:300]
    assert rest_code(response) == code


def test_long_names_in_urls(owned: Owned) -> None:
    client = bearer(owned)
    for url in (
        f"/api/v1/repos/owner/{LONG}",
        f"/api/v1/repos/{LONG}/lora",
        f"/api/v1/repos/owner/lora/versions/{LONG}",
        f"/api/v1/repos/owner/lora/versions/v1/files/{LONG}",
    ):
        response = client.get(url)
        assert response.status_code == 404, url[:80]
        assert rest_code(response) in ("repo_not_found", "revision_not_found", "entry_not_found")
    for url in (f"/owner/{LONG}", f"/{LONG}", f"/owner/lora/v/{LONG}"):
        assert Client().get(url).status_code == 404
    for url in (
        f"/hf/api/models/owner/{LONG}",
        f"/hf/api/models/owner/lora/revision/{LONG}",
        f"/hf/owner/lora/resolve/main/{LONG}",
    ):
        response = client.get(url)
        assert response.status_code == 404, url[:80]
        assert response["X-Error-Code"]


def test_long_file_path_in_a_push(owned: Owned) -> None:
    files = {**adapter_files(seed=6), f"{'d/' * 3000}notes.txt": b"hi"}
    response = bearer(owned).post(
        "/api/v1/repos/owner/lora/versions", multipart(files, {"base_model": "owner/base"})
    )
    assert response.status_code == 400
    # Django's multipart parser refuses a part header this long before the path check.
    assert rest_code(response) in ("invalid_path", "malformed_request")


@pytest.mark.parametrize(
    ("url", "body", "code"),
    [
        ("/hf/api/repos/create", {"name": LONG}, "invalid_name"),
        ("/hf/api/repos/create", {"name": "x", "organization": LONG}, "namespace_not_found"),
        ("/hf/api/models/owner/lora/tag/v1", {"tag": LONG}, "invalid_alias"),
        (
            "/hf/api/models/owner/lora/preupload/main",
            {"files": [{"path": LONG, "size": 1}]},
            "invalid_path",
        ),
    ],
)
def test_long_names_on_hf(owned: Owned, url: str, body: Any, code: str) -> None:
    response = bearer(owned).post(url, body, content_type="application/json")
    assert response.status_code in (400, 404), response.content[:300]
    assert response["X-Error-Code"] == code


def test_long_names_on_web_forms(owned: Owned) -> None:
    client = Client()
    client.force_login(owned.user)
    response = client.post(
        "/new", {"namespace": "owner", "name": LONG, "kind": "adapter", "visibility": "public"}
    )
    assert response.status_code == 200  # the form again, with the error
    assert not Repository.objects.filter(name=LONG).exists()
    response = client.post("/settings/tokens", {"name": LONG, "scope": "read"})
    assert response.status_code == 200
    assert not owned.user.api_tokens.filter(name=LONG).exists()
    anon = Client()
    response = anon.post(
        "/signup", {"username": LONG, "password1": "pw-123456789", "password2": "pw-123456789"}
    )
    assert response.status_code == 200
    assert b"characters" in response.content


# --- Confusable and invisible characters in names ------------------------------------

SPOOFS = [
    "\u043ewner",  # Cyrillic o
    "l\u043era",  # Cyrillic o in the repository name
    "lor\u0430",  # Cyrillic a
    "\uff4c\uff4f\uff52\uff41",  # fullwidth "lora"
    "lo\u200dra",  # zero-width joiner
    "lo\u200bra",  # zero-width space
    "lora\u202e",  # right-to-left override
    "\u202eanol",
    "lora\n",  # `$` in a regex matches before a trailing newline
    "lora\r",
    "lora ",
    " lora",
    "lora\u00a0",
    "\uff2cora",  # fullwidth L
    "lora\u0301",  # combining accent
    "\u2113ora",  # script small l (NFKC: l)
]


@pytest.mark.parametrize("name", SPOOFS)
def test_check_name_refuses_confusables(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_name(name)
    assert info.value.code == "invalid_name"
    with pytest.raises(BadRequest):
        check_name(name, what="organization")


@pytest.mark.parametrize("name", ["stable\n", "stab\u043ee", "stable\u200d", "\uff53table"])
def test_check_alias_refuses_confusables(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_alias(name)
    assert info.value.code == "invalid_alias"


def test_confusable_repository_names_on_every_door(owned: Owned) -> None:
    for name in SPOOFS:
        confusable_repository_name(owned, name)


def confusable_repository_name(owned: Owned, name: str) -> None:
    client = bearer(owned)
    response = client.post(
        "/api/v1/repos", {"name": name, "kind": "adapter"}, content_type="application/json"
    )
    # DRF trims surrounding whitespace: " lora" becomes "lora", which exists (409).
    assert response.status_code in (400, 409), response.content[:200]
    assert rest_code(response) in ("invalid_name", "repo_exists")
    response = client.post("/hf/api/repos/create", {"name": name}, content_type="application/json")
    assert response.status_code in (400, 409), response.content[:200]
    assert response["X-Error-Code"] in ("invalid_name", "RepoExists")
    web = Client()
    web.force_login(owned.user)
    web.post("/new", {"namespace": "owner", "name": name, "kind": "adapter"})
    assert set(Repository.objects.values_list("name", flat=True)) == {"base", "lora"}


def test_confusable_namespaces(owned: Owned) -> None:
    for name in SPOOFS:
        confusable_namespace(owned, name)


def confusable_namespace(owned: Owned, name: str) -> None:
    spoof = name.replace("lora", "owner").replace("anol", "renwo")
    response = bearer(owned).post("/api/v1/orgs", {"name": spoof}, content_type="application/json")
    assert response.status_code in (400, 409), response.content[:200]
    assert rest_code(response) in ("invalid_name", "name_taken", "invalid_request")
    signup = Client().post(
        "/signup",
        {"username": spoof, "password1": "pw-123456789", "password2": "pw-123456789"},
    )
    assert signup.status_code == 200  # the form again, with the error


def test_case_width_and_separator_variants_count_as_taken(owned: Owned) -> None:
    client = bearer(owned)
    for name in ("LORA", "Lora", "lOrA"):
        response = client.post(
            "/api/v1/repos", {"name": name, "kind": "adapter"}, content_type="application/json"
        )
        assert response.status_code == 409, name
    client.post("/api/v1/repos", {"name": "my_lora", "kind": "adapter"}, format="json")
    response = client.post(
        "/api/v1/repos", {"name": "my-lora", "kind": "adapter"}, content_type="application/json"
    )
    assert response.status_code == 201 or rest_code(response) == "repo_exists"
    assert canonical_name("My_Lora") == canonical_name("my-lora")
    for org in ("OWNER", "Owner"):
        response = client.post("/api/v1/orgs", {"name": org}, content_type="application/json")
        assert response.status_code == 409, org
        assert rest_code(response) == "name_taken"


def test_hf_tag_with_trailing_newline_is_refused(owned: Owned) -> None:
    response = bearer(owned).post(
        "/hf/api/models/owner/lora/tag/v1", {"tag": "stable\n"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response["X-Error-Code"] == "invalid_alias"
    assert not Alias.objects.filter(name__startswith="stable").exists()


# --- NUL characters ----------------------------------------------------------------------


NUL_URLS = [
    "/api/v1/repos?q=%00",
    "/api/v1/repos?owner=a%00",
    "/api/v1/repos/owner/lora/versions/v1/files/a%00b.json",
    "/hf/api/models/owner/lora/revision/v%001",
    "/hf/owner/lora/resolve/v1/a%00b.json",
    "/hf/api/models/owner/lora/tree/main/a%00",
    "/search?q=%00",
    "/-/complete?q=%00",
    "/owner/lora?tab=%00",
]


def test_nul_in_paths_and_queries(owned: Owned) -> None:
    client = bearer(owned)
    for url in NUL_URLS:
        response = client.get(url)
        assert response.status_code == 400, (url, response.content[:200])
        if url.startswith("/api/"):
            assert rest_code(response) == "invalid_characters"
        elif url.startswith("/hf/"):
            assert response["X-Error-Code"] == "invalid_characters"


def test_nul_in_push_metadata_is_refused_before_storing(owned: Owned) -> None:
    for meta in (
        {"base_model": "owner/base", "message": "a\x00"},
        {"base_model": "owner/base", "training_params": {"\x00": 1}},
        {"base_model": "owner/base", "datasets": ["https://example.org/\x00"]},
    ):
        response = bearer(owned).post(
            "/api/v1/repos/owner/lora/versions", multipart(adapter_files(seed=7), meta)
        )
        assert response.status_code == 400, response.content[:200]
        assert rest_code(response) == "invalid_characters"


def test_nul_in_hf_bodies(owned: Owned) -> None:
    client = bearer(owned)
    line = {"key": "header", "value": {"summary": "a\x00b"}}
    response = client.post(
        "/hf/api/models/owner/lora/commit/main",
        json.dumps(line)
        + "\n"
        + json.dumps({"key": "file", "value": {"path": "README.md", "content": "aGk="}}),
        content_type="application/x-ndjson",
    )
    assert response.status_code == 400
    assert response["X-Error-Code"] == "invalid_characters"
    for url, body in (
        ("/hf/api/repos/create", {"name": "x", "organization": "o\x00"}),
        ("/hf/api/models/owner/lora/tag/v1", {"tag": "t\x00"}),
    ):
        response = client.post(url, body, content_type="application/json")
        assert 400 <= response.status_code < 500, response.content[:200]
        assert response["X-Error-Code"]
