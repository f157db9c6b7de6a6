"""A rejected push leaves nothing behind: no object in the bucket and no Blob row that
no version references. Every case uses bytes the hub has never seen, so a stored blob
would show up as a new object."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hub.registry.models import Blob, VersionFile
from hub.registry.storage import S3BlobStore, get_blob_store
from tests.factories import adapter_files, multipart
from tests.fuzz.conftest import Owned

pytestmark = pytest.mark.timeout(60)


def bucket_keys() -> set[str]:
    store = get_blob_store()
    assert isinstance(store, S3BlobStore), "these tests list the real S3 (moto) bucket"
    keys: set[str] = set()
    for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def unreferenced_blobs() -> set[str]:
    referenced = set(VersionFile.objects.values_list("blob_id", flat=True)) | set(
        VersionFile.objects.exclude(uploaded_blob=None).values_list("uploaded_blob_id", flat=True)
    )
    return set(Blob.objects.exclude(pk__in=referenced).values_list("sha256", flat=True))


def fresh_files(**overrides: bytes) -> dict[str, bytes]:
    """An adapter with bytes never stored before (a random README makes them unique)."""
    seed = int.from_bytes(os.urandom(4), "little")
    files = adapter_files(seed=seed)
    files["README.md"] = f"---\nbase_model: owner/base\n---\n{os.urandom(16).hex()}\n".encode()
    return {**files, **overrides}


def assert_nothing_left(push: Callable[[], Any], *, status: int, code: str) -> None:
    keys, orphans = bucket_keys(), unreferenced_blobs()
    response = push()
    assert response.status_code == status, response.content[:300]
    body = json.loads(response.content)
    got = body["error"]["code"] if isinstance(body.get("error"), dict) else response["X-Error-Code"]
    assert got == code
    assert bucket_keys() - keys == set(), "a rejected push left objects in the bucket"
    assert unreferenced_blobs() - orphans == set(), "a rejected push left Blob rows behind"


def rest_push(owned: Owned, files: dict[str, bytes], meta: dict[str, Any] | None = None) -> Any:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}")
    meta = {"base_model": "owner/base", **(meta or {})}
    return client.post("/api/v1/repos/owner/lora/versions", multipart(files, meta))


def hf_commit(owned: Owned, files: dict[str, bytes], summary: str = "push") -> Any:
    lines = [{"key": "header", "value": {"summary": summary}}] + [
        {
            "key": "file",
            "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"},
        }
        for p, d in files.items()
    ]
    return Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}").post(
        "/hf/api/models/owner/lora/commit/main",
        "\n".join(json.dumps(line) for line in lines),
        content_type="application/x-ndjson",
    )


REST_CASES = [
    ("pickle", {"model.bin": b"\x80\x04K\x01." + os.urandom(8)}, None, 400, "pickle_refused"),
    ("python", {"modeling.py": b"import os"}, None, 400, "remote_code_refused"),
    ("bad-path", {"../escape.json": b"{}"}, None, 400, "invalid_path"),
    ("bad-name", {"weights.exe": b"MZ"}, None, 400, "file_type_refused"),
    ("unknown-base", {}, {"base_model": "owner/nope"}, 400, "reference_not_found"),
    ("base-not-a-base", {}, {"base_model": "owner/lora"}, 400, "reference_wrong_kind"),
    ("nul-metadata", {}, {"message": "a\x00b"}, 400, "invalid_characters"),
    ("deep-metadata", {}, {"training_params": [[[[[[[[[[1]]]]]]]]]]}, 400, "metadata_too_deep"),
    ("sha-mismatch", {}, {"files": {"README.md": {"sha256": "0" * 64}}}, 400, "sha256_mismatch"),
]


@pytest.mark.parametrize(
    ("extra", "meta", "status", "code"),
    [case[1:] for case in REST_CASES],
    ids=[case[0] for case in REST_CASES],
)
def test_rejected_rest_push_leaves_nothing(
    owned: Owned, extra: dict[str, bytes], meta: dict[str, Any] | None, status: int, code: str
) -> None:
    assert_nothing_left(
        lambda: rest_push(owned, fresh_files(**extra), meta), status=status, code=code
    )


def test_rest_push_over_quota_leaves_nothing(owned: Owned, settings: Any) -> None:
    settings.NAMESPACE_QUOTA_BYTES = 4096
    assert_nothing_left(lambda: rest_push(owned, fresh_files()), status=413, code="quota_exceeded")


def test_hf_commit_over_quota_leaves_nothing(owned: Owned, settings: Any) -> None:
    settings.NAMESPACE_QUOTA_BYTES = 4096
    assert_nothing_left(lambda: hf_commit(owned, fresh_files()), status=413, code="quota_exceeded")


HF_CASES = [
    ("pickle", {"model.bin": b"\x80\x04K\x01."}, "push", 400, "pickle_refused"),
    ("bad-path", {"a/../../x.json": b"{}"}, "push", 400, "invalid_path"),
    ("nul-summary", {}, "a\x00b", 400, "invalid_characters"),
]


@pytest.mark.parametrize(
    ("extra", "summary", "status", "code"),
    [case[1:] for case in HF_CASES],
    ids=[case[0] for case in HF_CASES],
)
def test_rejected_hf_commit_leaves_nothing(
    owned: Owned, extra: dict[str, bytes], summary: str, status: int, code: str
) -> None:
    assert_nothing_left(
        lambda: hf_commit(owned, fresh_files(**extra), summary), status=status, code=code
    )


def test_bad_safetensors_is_accepted_and_every_blob_is_referenced(owned: Owned) -> None:
    """Bad weights are not refused at push: the version is published pending and the
    validator marks it invalid. Its blobs are the version's record, referenced by it."""
    junk = b"\xff" * 8 + os.urandom(32)
    orphans = unreferenced_blobs()
    keys = bucket_keys()
    response = rest_push(owned, fresh_files(**{"adapter_model.safetensors": junk}))
    assert response.status_code == 201, response.content[:300]
    assert unreferenced_blobs() - orphans == set()
    new_keys = bucket_keys() - keys
    assert new_keys, "the pushed bytes are stored"
    stored = set(Blob.objects.values_list("storage_key", flat=True))
    assert new_keys <= stored
    assert f"{hashlib.sha256(junk).hexdigest()}" in {k.rsplit("/", 1)[-1] for k in new_keys}


def test_rejected_upload_session_commit_drops_its_staging_objects(owned: Owned) -> None:
    """A direct-to-storage upload whose object does not match its declared sha256:
    the commit is refused and the staged object deleted."""
    import requests

    client = Client(HTTP_AUTHORIZATION=f"Bearer {owned.token}")
    files = fresh_files()
    declared = [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in files.items()
    ]
    keys = bucket_keys()
    started = client.post(
        "/api/v1/repos/owner/lora/uploads",
        {"files": declared, "metadata": {"base_model": "owner/base"}},
        content_type="application/json",
    )
    assert started.status_code in (200, 201), started.content[:300]
    session = json.loads(started.content)
    for entry in session["files"]:
        data = files[entry["path"]]
        if entry["path"] == "README.md":
            data = data[:-1] + b"!"  # same size, other bytes
        upload = entry.get("upload") or entry
        url = upload.get("url")
        if url is None:
            continue
        requests.put(url, data=data, headers=upload.get("headers") or {}, timeout=10)
    committed = client.post(
        f"/api/v1/uploads/{session['id']}/commit", {}, content_type="application/json"
    )
    assert 400 <= committed.status_code < 500, committed.content[:300]
    left = {k for k in bucket_keys() - keys if not k.startswith("blobs/")}
    assert left == set(), f"staging objects left behind: {left}"
