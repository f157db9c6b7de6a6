"""Upload sessions: declare files, PUT them to presigned S3 URLs, commit, get a version.

The hub checks every staged object's size and sha256 before a version exists; S3
(moto here) is given presigned URLs only, and a refused commit leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from rest_framework.test import APIClient

from hub.registry import services
from hub.registry.models import Blob, UploadSession, Version
from hub.registry.storage import S3BlobStore, get_blob_store
from hub.registry.uploads import uploads_expire
from tests.factories import adapter_files, base_model_files, make_token, make_user, multipart

pytestmark = pytest.mark.django_db

API = "/api/v1"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staging(session: dict[str, Any]) -> str:
    """The prefix of a session's staged objects (``uploads/<session hex>/<n>``)."""
    return f"uploads/{uuid.UUID(session['id']).hex}/"


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return str(body["error"]["code"])


def rows() -> tuple[int, set[str]]:
    return Version.objects.count(), set(Blob.objects.values_list("sha256", flat=True))


def s3() -> S3BlobStore:
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)
    return store


def create_repo(client: APIClient, name: str, kind: str, **fields: Any) -> str:
    response = client.post(f"{API}/repos", {"name": name, "kind": kind, **fields}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def start(client: APIClient, repo: str, files: dict[str, bytes], **overrides: Any) -> Any:
    declared = [
        {"path": p, "size": len(b), "sha256": sha(b)} | overrides.get(p, {})
        for p, b in files.items()
    ]
    return client.post(f"{API}/repos/{repo}/uploads", {"files": declared}, format="json")


def started(client: APIClient, repo: str, files: dict[str, bytes]) -> dict[str, Any]:
    response = start(client, repo, files)
    assert response.status_code == 201, response.content
    return dict(response.json())


def send(session: dict[str, Any], files: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """PUT every file the hub asked for; returns the part ETags for the commit."""
    parts: dict[str, list[dict[str, Any]]] = {}
    for f in session["files"]:
        data = files[f["path"]]
        if f["exists"]:
            continue
        if "put" in f:
            sent = requests.put(f["put"]["url"], data=data, headers=f["put"]["headers"], timeout=60)
            assert sent.status_code == 200, sent.text
            continue
        size = f["multipart"]["part_size"]
        parts[f["path"]] = []
        for part in f["multipart"]["parts"]:
            n = part["part_number"]
            chunk = data[(n - 1) * size : n * size]
            sent = requests.put(part["url"], data=chunk, timeout=60)
            assert sent.status_code == 200, sent.text
            parts[f["path"]].append({"part_number": n, "etag": sent.headers["ETag"]})
    return parts


def commit(client: APIClient, session: dict[str, Any], **body: Any) -> Any:
    return client.post(f"{API}/uploads/{session['id']}/commit", body, format="json")


def upload(
    client: APIClient, repo: str, files: dict[str, bytes], metadata: dict[str, Any] | None = None
) -> Any:
    session = started(client, repo, files)
    parts = send(session, files)
    return commit(client, session, parts=parts, metadata=metadata or {})


@pytest.fixture
def alice(api: Callable[..., APIClient]) -> APIClient:
    return api(make_token(make_user("alice")))


@pytest.fixture
def base(alice: APIClient) -> str:
    repo = create_repo(alice, "tiny-base", "base_model")
    assert (
        alice.post(f"{API}/repos/{repo}/versions", multipart(base_model_files())).status_code == 201
    )
    services.version_set_status(
        version=Version.objects.get(repository__name="tiny-base"), status="valid"
    )
    return repo


# --- the happy paths ------------------------------------------------------------------


def test_a_presigned_put_and_a_commit_publish_a_version(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(base=base)
    session = started(alice, repo, files)
    assert session["state"] == "open"
    assert {f["path"] for f in session["files"]} == set(files)
    assert all(not f["exists"] and f["put"]["url"].startswith("http") for f in session["files"])
    parts = send(session, files)
    assert parts == {}
    assert Version.objects.filter(repository__name="my-lora").count() == 0  # not before commit

    response = commit(
        alice,
        session,
        metadata={"base_model": base, "message": "direct", "training_params": {"r": 4}},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["label"] == "v1"
    assert body["message"] == "direct"
    assert body["metadata"] == {"training_params": {"r": 4}, "base_revision": "v1"}
    assert sorted((f["path"], f["size"], f["sha256"]) for f in body["files"]) == sorted(
        (p, len(b), sha(b)) for p, b in files.items()
    )
    detail = alice.get(f"{API}/uploads/{session['id']}").json()
    assert (detail["state"], detail["version"]) == ("committed", "v1")
    # The bytes now live under their sha256 keys, and staging is empty.
    for path, data in files.items():
        got = alice.get(f"{API}/repos/{repo}/versions/v1/files/{path}")
        assert requests.get(got["Location"], timeout=30).content == data
    staged = s3().client.list_objects_v2(Bucket=s3().bucket, Prefix=staging(session))
    assert staged.get("KeyCount", 0) == 0


def test_a_large_file_goes_up_in_multipart_parts_of_at_least_5_mib(alice, settings):
    settings.MULTIPART_THRESHOLD_BYTES = 5 * MIB
    settings.MULTIPART_PART_BYTES = 5 * MIB
    repo = create_repo(alice, "corpus", "dataset")
    big = hashlib.sha256(b"seed").digest() * (11 * MIB // 32 + 7)  # 11 MiB and a bit
    files = {"train.jsonl": big, "README.md": b"# corpus\n"}

    session = started(alice, repo, files)
    by_path = {f["path"]: f for f in session["files"]}
    multipart_spec = by_path["train.jsonl"]["multipart"]
    assert multipart_spec["part_size"] >= 5 * MIB
    assert [p["part_number"] for p in multipart_spec["parts"]] == [1, 2, 3]
    assert "put" in by_path["README.md"]
    parts = send(session, files)
    response = commit(alice, session, parts=parts, metadata={"message": "big"})

    assert response.status_code == 201, response.content
    got = alice.get(f"{API}/repos/{repo}/versions/v1/files/train.jsonl")
    served = requests.get(got["Location"], timeout=60).content
    assert len(served) == len(big)
    assert sha(served) == sha(big)


def test_files_the_hub_already_has_are_not_sent_again(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(base=base)
    assert upload(alice, repo, files, {"base_model": base}).status_code == 201
    changed = {**files, "README.md": b"# now with a card\n"}

    session = started(alice, repo, changed)

    exists = {f["path"]: f["exists"] for f in session["files"]}
    assert exists == {
        "adapter_config.json": True,
        "adapter_model.safetensors": True,
        "README.md": False,
    }
    response = commit(alice, session, parts=send(session, changed), metadata={"base_model": base})
    assert response.status_code == 201, response.content
    assert response.json()["label"] == "v2"
    assert Blob.objects.filter(sha256=sha(files["adapter_model.safetensors"])).count() == 1


def test_a_blob_in_someone_elses_private_repo_is_not_reported_as_existing(alice, api):
    carol = api(make_token(make_user("carol")))
    secret = create_repo(carol, "secret", "dataset", visibility="private")
    data = {"data.jsonl": b'{"secret": true}\n'}
    assert upload(carol, secret, data).status_code == 201
    repo = create_repo(alice, "guess", "dataset")

    session = started(alice, repo, data)

    # Answering "exists" would confirm the file is in carol's private repository.
    assert session["files"][0]["exists"] is False


def test_committing_twice_returns_the_same_version(alice):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    session = started(alice, repo, files)
    send(session, files)
    first = commit(alice, session)
    second = commit(alice, session)
    assert first.status_code == second.status_code == 201
    assert first.json()["commit_id"] == second.json()["commit_id"]
    assert Version.objects.count() == 1


def test_repeating_the_newest_version_through_a_session_returns_it(alice):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    first = upload(alice, repo, files).json()
    again = upload(alice, repo, files)
    assert again.status_code == 201
    assert again.json()["commit_id"] == first["commit_id"]
    assert Version.objects.count() == 1


# --- refusals: nothing half-written ---------------------------------------------------


def test_it_refuses_uploaded_bytes_whose_sha256_differs_from_the_declared_one(alice):
    repo = create_repo(alice, "corpus", "dataset")
    declared = {"a.jsonl": b'{"a": 1}\n'}
    session = started(alice, repo, declared)
    forged = {"a.jsonl": b'{"a": 2}\n'}  # same size, other bytes
    requests.put(session["files"][0]["put"]["url"], data=forged["a.jsonl"], timeout=30)
    assert s3().client.list_objects_v2(Bucket=s3().bucket, Prefix=staging(session))["KeyCount"] == 1
    before = rows()

    response = commit(alice, session)

    assert response.status_code == 400
    assert error_code(response) == "sha256_mismatch"
    assert rows() == before
    detail = alice.get(f"{API}/uploads/{session['id']}").json()
    assert detail["state"] == "failed"
    assert detail["error"]["code"] == "sha256_mismatch"
    staged = s3().client.list_objects_v2(Bucket=s3().bucket, Prefix=staging(session))
    assert staged.get("KeyCount", 0) == 0
    retry = commit(alice, session)
    assert retry.status_code == 409
    assert error_code(retry) == "upload_not_open"


def test_it_refuses_an_object_of_another_size(alice):
    repo = create_repo(alice, "corpus", "dataset")
    session = started(alice, repo, {"a.jsonl": b"12345\n"})
    requests.put(session["files"][0]["put"]["url"], data=b"123\n", timeout=30)
    before = rows()
    response = commit(alice, session)
    assert response.status_code == 400
    assert error_code(response) == "size_mismatch"
    assert rows() == before


def test_a_commit_whose_staged_object_is_missing_publishes_nothing(alice):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n", "b.jsonl": b"2\n"}
    session = started(alice, repo, files)
    only_a = next(f for f in session["files"] if f["path"] == "a.jsonl")
    requests.put(only_a["put"]["url"], data=files["a.jsonl"], timeout=30)
    before = rows()

    response = commit(alice, session)

    assert response.status_code == 400
    assert error_code(response) == "upload_incomplete"
    assert "b.jsonl" in response.json()["error"]["message"]
    assert rows() == before
    # The session stays open: send the missing file and commit again.
    send({"files": [f for f in session["files"] if f["path"] == "b.jsonl"]}, files)
    assert commit(alice, session).status_code == 201


def test_a_multipart_commit_needs_every_part_etag(alice, settings):
    settings.MULTIPART_THRESHOLD_BYTES = 5 * MIB
    settings.MULTIPART_PART_BYTES = 5 * MIB
    repo = create_repo(alice, "corpus", "dataset")
    files = {"big.jsonl": b"z" * (6 * MIB)}
    session = started(alice, repo, files)
    parts = send(session, files)
    before = rows()

    missing = commit(alice, session)
    assert missing.status_code == 400
    assert error_code(missing) == "upload_incomplete"
    wrong = [{**parts["big.jsonl"][0], "etag": '"0123"'}, parts["big.jsonl"][1]]
    bad_etag = commit(alice, session, parts={"big.jsonl": wrong})
    assert bad_etag.status_code == 400
    assert error_code(bad_etag) == "upload_incomplete"
    assert rows() == before
    assert commit(alice, session, parts=parts).status_code == 201


def test_an_expired_session_cannot_be_committed(alice):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    session = started(alice, repo, files)
    send(session, files)
    UploadSession.objects.filter(pk=session["id"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = commit(alice, session)
    assert response.status_code == 409
    assert error_code(response) == "upload_expired"
    assert uploads_expire() == 1
    staged = s3().client.list_objects_v2(Bucket=s3().bucket, Prefix=staging(session))
    assert staged.get("KeyCount", 0) == 0
    assert Version.objects.count() == 0


def test_a_session_belongs_to_the_person_who_started_it(alice, api):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    session = started(alice, repo, files)
    send(session, files)
    mallory = api(make_token(make_user("mallory")))
    for response in (
        mallory.get(f"{API}/uploads/{session['id']}"),
        commit(mallory, session),
        APIClient().get(f"{API}/uploads/{session['id']}"),
    ):
        assert response.status_code == 404
        assert error_code(response) == "upload_not_found"
    assert Version.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("adapter_model.bin", "pickle_refused"),
        ("optimizer.pt", "pickle_refused"),
        ("rng.pth", "pickle_refused"),
        ("step.ckpt", "pickle_refused"),
        ("data.pkl", "pickle_refused"),
        ("modeling.py", "remote_code_refused"),
        ("run.sh", "file_type_refused"),
        ("../up.safetensors", "invalid_path"),
        ("tab\there.safetensors", "invalid_path"),
        ("y" * 190 + ".safetensors", "invalid_path"),
    ],
)
def test_upload_start_refuses_unsafe_file_names(alice, base, path, code):
    repo = create_repo(alice, "my-lora", "adapter")
    files = {**adapter_files(), path: b"x"}
    response = start(alice, repo, files)
    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert not UploadSession.objects.exists()


def test_upload_start_refuses_a_declared_file_over_the_size_limit(alice, settings):
    settings.MAX_FILE_BYTES = 1000
    repo = create_repo(alice, "corpus", "dataset")
    response = alice.post(
        f"{API}/repos/{repo}/uploads",
        {"files": [{"path": "a.jsonl", "size": 1001, "sha256": "0" * 64}]},
        format="json",
    )
    assert response.status_code == 413
    assert error_code(response) == "file_too_large"
    assert not UploadSession.objects.exists()


def test_an_adapter_upload_without_its_config_is_refused_before_any_bytes_are_sent(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = {"adapter_model.safetensors": adapter_files()["adapter_model.safetensors"]}
    response = start(alice, repo, files)
    assert response.status_code == 400
    assert error_code(response) == "adapter_files_missing"
    assert not UploadSession.objects.exists()


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([], "no_files"),
        ([{"path": "a.jsonl", "size": 1, "sha256": "A" * 64}], "invalid_request"),
        ([{"path": "a.jsonl", "size": -1, "sha256": "0" * 64}], "invalid_request"),
        (
            [
                {"path": "a.jsonl", "size": 1, "sha256": "0" * 64},
                {"path": "a.jsonl", "size": 2, "sha256": "1" * 64},
            ],
            "duplicate_path",
        ),
    ],
)
def test_upload_start_refuses_malformed_declarations(alice, files, code):
    repo = create_repo(alice, "corpus", "dataset")
    response = alice.post(f"{API}/repos/{repo}/uploads", {"files": files}, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) == code


@pytest.mark.parametrize(
    ("metadata", "code", "status"),
    [
        ({"base_model": "alice/nothing"}, "reference_not_found", 400),
        ({"base_model": "alice/corpus-data"}, "reference_wrong_kind", 400),
        ({"base_model": "tiny-base"}, "invalid_reference", 400),
        ({"stacked_on": ["alice/nothing@v1"]}, "reference_not_found", 400),
        ({"message": "m" * 5001}, "message_too_long", 400),
        ({"training_params": "fast"}, "invalid_metadata", 400),
        ({"training_params": {"blob": "x" * 70_000}}, "metadata_too_large", 413),
    ],
)
def test_a_commit_with_bad_metadata_publishes_nothing(alice, base, metadata, code, status):
    data_repo = create_repo(alice, "corpus-data", "dataset")
    assert upload(alice, data_repo, {"d.jsonl": b"{}\n"}).status_code == 201
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(seed=77)
    session = started(alice, repo, files)
    send(session, files)
    before = rows()

    response = commit(alice, session, metadata={"base_model": base, **metadata})

    assert response.status_code == status, response.content
    assert error_code(response) == code
    assert rows() == before
    assert alice.get(f"{API}/uploads/{session['id']}").json()["version"] is None


@pytest.mark.parametrize("levels", [9, 600, 5000])
def test_a_commit_with_deeply_nested_metadata_is_refused_cleanly(alice, levels):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    session = started(alice, repo, files)
    send(session, files)
    body = '{"metadata": {"training_params": ' + '{"k": ' * levels + "1" + "}" * levels + "}}"

    response = alice.generic(
        "POST",
        f"{API}/uploads/{session['id']}/commit",
        body,
        content_type="application/json",
    )

    assert response.status_code == 400, response.content[:300]
    assert error_code(response) in {"metadata_too_deep", "malformed_request"}
    assert Version.objects.count() == 0


def test_readers_cannot_start_uploads(alice, api):
    repo = create_repo(alice, "corpus", "dataset")
    bob = api(make_token(make_user("bob")))
    response = start(bob, repo, {"a.jsonl": b"1\n"})
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    anonymous = start(APIClient(), repo, {"a.jsonl": b"1\n"})
    assert anonymous.status_code == 401
    assert error_code(anonymous) == "auth_required"
    assert not UploadSession.objects.exists()
