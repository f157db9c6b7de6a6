"""End to end: large direct uploads verified by the real Celery worker, and abandoned ones.

Files above ``SYNC_VERIFY_BYTES`` are hashed by a ``finalize_upload`` job; their version
appears only once that job has succeeded. Sessions that are never committed, or whose
staged object is missing or wrong, publish nothing and leave no blob.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from hub.registry import uploads
from hub.registry.models import Blob, Job, UploadSession, Version
from hub.registry.storage import S3BlobStore, blob_key, get_blob_store
from tests.conftest import wait_for
from tests.factories import make_token, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MB = 1000 * 1000
MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staging(session: dict[str, Any]) -> str:
    """The prefix of a session's staged objects (``uploads/<session hex>/<n>``)."""
    return f"uploads/{uuid.UUID(session['id']).hex}/"


@pytest.fixture
def hub(live_server: Any, settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    token = make_token(make_user("alice"))
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{live_server.url}/api/v1"
    made = requests.post(
        f"{api}/repos", json={"name": "big-corpus", "kind": "dataset"}, headers=auth, timeout=30
    )
    assert made.status_code == 201, made.text
    return {"api": api, "auth": auth, "repo": "alice/big-corpus"}


def start(hub: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    response = requests.post(
        f"{hub['api']}/repos/{hub['repo']}/uploads",
        json={"files": [{"path": p, "size": len(b), "sha256": sha(b)} for p, b in files.items()]},
        headers=hub["auth"],
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def send_parts(instruction: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    size = instruction["multipart"]["part_size"]
    sent = []
    with requests.Session() as http:
        for part in instruction["multipart"]["parts"]:
            n = part["part_number"]
            answer = http.put(part["url"], data=data[(n - 1) * size : n * size], timeout=300)
            assert answer.status_code == 200, answer.text
            sent.append({"part_number": n, "etag": answer.headers["ETag"]})
    return sent


def commit(hub: dict[str, Any], session: dict[str, Any], **body: Any) -> requests.Response:
    return requests.post(
        f"{hub['api']}/uploads/{session['id']}/commit", json=body, headers=hub["auth"], timeout=120
    )


def test_a_large_upload_is_published_only_after_the_worker_verifies_it(hub, celery_worker):
    data = os.urandom(80 * MB)
    assert len(data) > uploads.SYNC_VERIFY_BYTES  # so the job path is taken
    session = start(hub, {"train.parquet": data})
    (instruction,) = session["files"]
    parts = instruction["multipart"]["parts"]
    assert instruction["multipart"]["part_size"] >= 5 * MIB
    assert len(parts) >= 2
    etags = send_parts(instruction, data)

    answer = commit(hub, session, parts={"train.parquet": etags}, metadata={"message": "80 MB"})

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["state"] == "verifying"
    assert body["job"]["kind"] == "finalize_upload"
    # Nothing is visible while the worker hashes the bytes.
    assert Version.objects.count() == 0
    assert not Blob.objects.filter(sha256=sha(data)).exists()
    listed = requests.get(f"{hub['api']}/repos/{hub['repo']}/versions", timeout=30)
    assert listed.json() == []

    job = wait_for(
        lambda: Job.objects.filter(pk=body["job"]["id"], state__in=["succeeded", "failed"]).first(),
        timeout=150,
    )
    assert job.state == Job.State.SUCCEEDED, (job.error_code, job.error_message, job.log_tail)
    version = Version.objects.get(repository__name="big-corpus")
    assert version.created_at >= job.started_at
    assert (version.label, version.message, version.total_size) == ("v1", "80 MB", len(data))
    assert job.result["version"] == "v1"
    detail = requests.get(
        f"{hub['api']}/uploads/{session['id']}", headers=hub["auth"], timeout=30
    ).json()
    assert (detail["state"], detail["version"]) == ("committed", "v1")

    pulled = requests.get(
        f"{hub['api']}/repos/{hub['repo']}/versions/v1/files/train.parquet",
        allow_redirects=False,
        timeout=30,
    )
    assert pulled.status_code == 302
    assert pulled.headers["ETag"] == f'"{sha(data)}"'
    digest = hashlib.sha256()
    with requests.get(pulled.headers["Location"], stream=True, timeout=120) as served:
        for chunk in served.iter_content(8 * MIB):
            digest.update(chunk)
    assert digest.hexdigest() == sha(data)
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)
    staged = store.client.list_objects_v2(Bucket=store.bucket, Prefix=staging(session))
    assert staged.get("KeyCount", 0) == 0


def test_a_wrong_large_upload_fails_its_job_and_publishes_nothing(
    hub, celery_worker, settings, monkeypatch
):
    # The live server runs in this process, so these smaller limits apply to it; the
    # worker hashes whatever it is given.
    settings.MULTIPART_THRESHOLD_BYTES = 5 * MIB
    settings.MULTIPART_PART_BYTES = 5 * MIB
    monkeypatch.setattr(uploads, "SYNC_VERIFY_BYTES", 1 * MIB)
    declared = os.urandom(6 * MIB)
    sent = bytearray(declared)
    sent[-1] ^= 0xFF  # same size, one bit pattern off
    session = start(hub, {"train.parquet": declared})
    etags = send_parts(session["files"][0], bytes(sent))

    answer = commit(hub, session, parts={"train.parquet": etags})

    assert answer.status_code == 202, answer.text
    job = wait_for(
        lambda: Job.objects.filter(
            pk=answer.json()["job"]["id"], state__in=["succeeded", "failed"]
        ).first(),
        timeout=90,
    )
    assert (job.state, job.error_code, job.attempts) == ("failed", "sha256_mismatch", 1)
    assert Version.objects.count() == 0
    assert not Blob.objects.filter(sha256__in=[sha(declared), sha(bytes(sent))]).exists()
    detail = requests.get(
        f"{hub['api']}/uploads/{session['id']}", headers=hub["auth"], timeout=30
    ).json()
    assert detail["state"] == "failed"
    assert detail["error"]["code"] == "sha256_mismatch"


def test_an_upload_that_is_never_committed_publishes_nothing(hub):
    data = f"abandoned {uuid.uuid4()}\n".encode()
    session = start(hub, {"data.jsonl": data})
    put = session["files"][0]["put"]
    assert requests.put(put["url"], data=data, headers=put["headers"], timeout=30).ok
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)

    def staged() -> int:
        listing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=staging(session))
        return int(listing.get("KeyCount", 0))

    assert staged() == 1
    assert Version.objects.count() == 0
    assert not Blob.objects.filter(sha256=sha(data)).exists()
    assert store.head(blob_key(sha(data))) is None

    # The client never commits; once the session expires its staged bytes are dropped.
    UploadSession.objects.filter(pk=session["id"]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert uploads.uploads_expire() == 1
    assert staged() == 0
    assert UploadSession.objects.get(pk=session["id"]).state == "expired"
    late = commit(hub, session)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "upload_not_open"
    assert Version.objects.count() == 0


def test_a_commit_whose_staged_object_vanished_publishes_nothing(hub):
    data = f"vanishing {uuid.uuid4()}\n".encode()
    session = start(hub, {"data.jsonl": data})
    put = session["files"][0]["put"]
    assert requests.put(put["url"], data=data, headers=put["headers"], timeout=30).ok
    store = get_blob_store()
    store.delete(f"{staging(session)}0")

    answer = commit(hub, session)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "upload_incomplete"
    assert Version.objects.count() == 0
    assert not Blob.objects.filter(sha256=sha(data)).exists()
    assert store.head(blob_key(sha(data))) is None
