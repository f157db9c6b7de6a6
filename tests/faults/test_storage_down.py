"""Object storage unreachable during a push: a clear 503, nothing published, a retry works."""

from __future__ import annotations

import pytest

from hub.registry.models import Blob, Version
from hub.registry.storage import S3BlobStore, get_blob_store
from tests.factories import make_token, make_user, multipart

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def s3_down(settings):
    """Point the blob store at a closed port until the fixture's ``restore`` is called."""
    if not isinstance(get_blob_store(), S3BlobStore):
        pytest.skip("needs the S3 backend")
    working = settings.S3_ENDPOINT_URL
    settings.S3_ENDPOINT_URL = "http://127.0.0.1:1"
    get_blob_store.cache_clear()

    def restore() -> None:
        settings.S3_ENDPOINT_URL = working
        get_blob_store.cache_clear()

    yield restore
    restore()


def test_a_push_while_s3_is_down_is_a_503_and_leaves_nothing_behind(api, s3_down):
    client = api(make_token(make_user("alice")))
    assert (
        client.post(
            f"{API}/repos", {"name": "corpus", "kind": "dataset"}, format="json"
        ).status_code
        == 201
    )
    payload = {"train.jsonl": b'{"text": "storage is down"}\n'}

    refused = client.post(f"{API}/repos/alice/corpus/versions", multipart(payload))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "service_unavailable"
    assert refused["Retry-After"]
    assert not Version.objects.exists()
    assert not Blob.objects.exists()

    s3_down()
    retried = client.post(f"{API}/repos/alice/corpus/versions", multipart(payload))
    assert retried.status_code == 201, retried.content
    assert retried.json()["label"] == "v1"
