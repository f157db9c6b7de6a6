"""Hypothesis-generated requests against the Hugging Face protocol routes under ``/hf``.

These routes are not in the OpenAPI schema, and should not be: they are plain Django
views speaking the Hub's own protocol (NDJSON commits, Git-LFS batch JSON, HEAD-driven
downloads, ``X-Error-Code`` headers), which the Hub itself does not describe in OpenAPI
and drf-spectacular cannot describe without turning every view into a DRF view. So they
are fuzzed here directly: every route, with generated revisions, file paths, query
strings and bodies (random bytes, random JSON, and JSON shaped like what the client
sends with random values), as ``owner`` with a write token. Checks: no 5xx, and every
error carries ``X-Error-Code`` (what ``huggingface_hub`` classifies errors by).

Budget: a fixed ``max_examples`` per route group, derandomized.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import Owned

EXAMPLES = 30
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
segment = st.one_of(
    st.sampled_from(["main", "v1", "v2", "v1-merged", "stable", "0" * 40, "..", "%2e%2e"]),
    text.filter(bool),
)
file_path = st.one_of(
    st.sampled_from(
        [
            "adapter_config.json",
            "adapter_model.safetensors",
            "README.md",
            "a/b/c.json",
            "../../etc/passwd",
            "model.bin",
        ]
    ),
    st.lists(text.filter(bool), min_size=1, max_size=3).map("/".join),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
query = st.dictionaries(
    st.sampled_from(["expand", "recursive", "limit", "cursor", "blobs", "p", "create_pr", "x"]),
    st.one_of(st.sampled_from(["1", "true", "-1", "0", "99999999999999999999"]), text),
    max_size=3,
)


def q(value: str) -> str:
    return quote(value, safe="")


def q_path(value: str) -> str:
    return "/".join(q(part) for part in value.split("/"))


def check(response: Any, what: str) -> None:
    if response.status_code == 501 and "/xet-" in what:
        return  # the deliberate "set HF_HUB_DISABLE_XET=1" answer
    assert response.status_code < 500, (
        f"{what} answered {response.status_code}: {response.content[:500]!r}"
    )
    if response.status_code >= 400:
        assert response.get("X-Error-Code"), f"{what}: {response.status_code} without X-Error-Code"


@pytest.fixture
def hf(owned: Owned) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}")


@FUZZ
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
    repo_type=st.sampled_from(["models", "datasets", "spaces"]),
    repo=st.sampled_from(["owner/lora", "owner/base", "owner/nope", "nobody/lora"]),
    route=st.sampled_from(["", "/revision/{rev}", "/tree/{rev}", "/tree/{rev}/{path}", "/refs"])
    | st.just("/commits/{rev}"),
    rev=segment,
    path=file_path,
    params=query,
)
@pytest.mark.timeout(120)
def test_hf_read_routes(
    hf: Client,
    method: str,
    repo_type: str,
    repo: str,
    route: str,
    rev: str,
    path: str,
    params: dict[str, str],
) -> None:
    url = f"/hf/api/{repo_type}/{repo}" + route.format(rev=q(rev), path=q_path(path))
    if params:
        url += "?" + urlencode(params)
    check(hf.generic(method, url), f"{method} {url}")


@FUZZ
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    dataset=st.booleans(),
    rev=segment,
    path=file_path,
    range_header=st.none()
    | st.sampled_from(["bytes=0-10", "bytes=-5", "bytes=99999999999-", "bytes=5-1", "x"])
    | text,
)
@pytest.mark.timeout(120)
def test_hf_resolve(
    hf: Client, method: str, dataset: bool, rev: str, path: str, range_header: str | None
) -> None:
    url = f"/hf/{'datasets/' if dataset else ''}owner/lora/resolve/{q(rev)}/{q_path(path)}"
    headers = {"HTTP_RANGE": range_header} if range_header is not None else {}
    check(hf.generic(method, url, **headers), f"{method} {url} Range={range_header!r}")


def preupload_bodies() -> st.SearchStrategy[bytes]:
    files = st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "path": file_path | json_values,
                "size": st.integers(min_value=-1, max_value=2**64) | json_values,
                "sample": text,
            },
        ),
        max_size=4,
    )
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
        files.map(lambda f: json.dumps({"files": f}).encode()),
    )


def commit_line() -> st.SearchStrategy[dict[str, Any]]:
    content = st.one_of(
        st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode()), text, json_values
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"key": st.just("header"), "value": st.dictionaries(text, json_values, max_size=3)}
        ),
        st.fixed_dictionaries(
            {
                "key": st.just("file"),
                "value": st.fixed_dictionaries(
                    {"path": file_path | json_values, "content": content},
                    optional={"encoding": st.sampled_from(["base64", "utf-8"]) | json_values},
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["lfsFile", "deletedFile", "deletedFolder", "copyFile"]),
                "value": st.fixed_dictionaries(
                    {"path": file_path | json_values},
                    optional={
                        "oid": st.sampled_from(["0" * 64, "z" * 64]) | json_values,
                        "algo": st.just("sha256") | json_values,
                        "size": json_values,
                        "srcPath": file_path,
                        "srcRevision": segment,
                    },
                ),
            }
        ),
        st.dictionaries(text, json_values, max_size=3),
    )


def commit_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.lists(commit_line(), max_size=4).map(
            lambda lines: b"\n".join(json.dumps(line).encode() for line in lines)
        ),
    )


@FUZZ
@given(
    route=st.sampled_from(["preupload", "commit", "tag", "paths-info"]),
    repo_type=st.sampled_from(["models", "datasets"]),
    rev=segment,
    params=query,
    body=st.data(),
)
@pytest.mark.timeout(120)
def test_hf_write_routes(
    hf: Client, route: str, repo_type: str, rev: str, params: dict[str, str], body: Any
) -> None:
    url = f"/hf/api/{repo_type}/owner/lora/{route}/{q(rev)}"
    if params:
        url += "?" + urlencode(params)
    if route == "preupload":
        data, content_type = body.draw(preupload_bodies()), "application/json"
    elif route == "commit":
        data, content_type = body.draw(commit_bodies()), "application/x-ndjson"
    elif route == "tag":
        tag_body = st.fixed_dictionaries({}, optional={"tag": segment | json_values})
        data = body.draw(st.one_of(st.binary(max_size=32), tag_body.map(json.dumps)))
        content_type = "application/json"
    else:
        fields = st.lists(st.tuples(st.sampled_from(["paths", "expand"]), text), max_size=4)
        data, content_type = body.draw(fields.map(urlencode)), "application/x-www-form-urlencoded"
    check(hf.generic("POST", url, data, content_type=content_type), f"POST {url}")


@FUZZ
@given(
    route=st.sampled_from(
        [
            "/hf/api/repos/create",
            "/hf/api/validate-yaml",
            "/hf/owner/lora.git/info/lfs/objects/batch",
            "/hf/datasets/owner/lora.git/info/lfs/objects/batch",
            "/hf/api/lfs/1/verify",
            "/hf/api/lfs/1/complete?exp=1&sig=x",
            "/hf/api/whoami-v2",
            "/hf/api/models/owner/lora/xet-write-token/main",
            "/hf/whatever/else",
        ]
    ),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    body=st.one_of(
        st.binary(max_size=64),
        json_values.map(json.dumps),
        st.fixed_dictionaries(
            {},
            optional={
                "name": segment | json_values,
                "organization": segment | json_values,
                "type": st.sampled_from(["model", "dataset", "space"]) | json_values,
                "private": json_values,
                "content": text,
                "operation": st.sampled_from(["upload", "download"]) | json_values,
                "objects": st.lists(
                    st.fixed_dictionaries({"oid": text | json_values, "size": json_values}),
                    max_size=3,
                ),
                "oid": text,
                "parts": json_values,
            },
        ).map(json.dumps),
    ),
)
@pytest.mark.timeout(120)
def test_hf_other_routes(hf: Client, route: str, method: str, body: Any) -> None:
    response = hf.generic(method, route, body, content_type="application/json")
    check(response, f"{method} {route}")
