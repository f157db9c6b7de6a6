"""End to end: a live server, a real Celery worker, PostgreSQL, Redis and S3 (moto)."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from hub.registry.models import Blob, Job, Version
from hub.registry.storage import S3BlobStore, blob_key, get_blob_store
from tests.conftest import wait_for
from tests.factories import TINY_BASE, base_model_files, make_token, make_user, requests_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_pushed_base_model_gets_its_manifest_from_a_worker(live_server, celery_worker):
    owner = make_user("alice")
    token = make_token(owner)
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{live_server.url}/api/v1"

    created = requests.post(
        f"{api}/repos", json={"name": "tiny-base", "kind": "base_model"}, headers=auth, timeout=30
    )
    assert created.status_code == 201, created.text

    files = base_model_files()
    pushed = requests.post(
        f"{api}/repos/alice/tiny-base/versions",
        files=requests_files(files),
        data={"metadata": json.dumps({"message": "first weights"})},
        headers=auth,
        timeout=60,
    )
    assert pushed.status_code == 201, pushed.text
    body = pushed.json()
    assert body["label"] == "v1"
    assert body["status"] == "pending"
    (job_ref,) = body["jobs"]
    assert job_ref["kind"] == "manifest"

    job = wait_for(
        lambda: Job.objects.filter(pk=job_ref["id"], state__in=["succeeded", "failed"]).first()
    )
    assert job.state == Job.State.SUCCEEDED, (job.error_code, job.error_message, job.log_tail)
    assert job.attempts == 1
    assert job.worker_host

    version = Version.objects.get(repository__name="tiny-base", number=1)
    assert version.status == Version.Status.VALID
    assert version.manifest == {
        name: {"dtype": "F32", "shape": list(shape), "file": "model.safetensors"}
        for name, shape in TINY_BASE.items()
    }
    assert version.report["facts"]["parameters"] == sum(a * b for a, b in TINY_BASE.values())

    # The bytes live in S3 under their sha256, and the version is now `main`.
    weights = files["model.safetensors"]
    sha = hashlib.sha256(weights).hexdigest()
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)
    assert Blob.objects.get(sha256=sha).storage_key == blob_key(sha)
    stored = store.client.get_object(Bucket=store.bucket, Key=blob_key(sha))["Body"].read()
    assert stored == weights
    main = requests.get(f"{api}/repos/alice/tiny-base/versions/main", headers=auth, timeout=30)
    assert main.json()["commit_id"] == version.commit_id
