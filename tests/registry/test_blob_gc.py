"""Orphan collection on the real blob stores (S3 through moto, and the local directory)."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.blob_gc import blob_record, blobs_collect_orphans
from hub.registry.models import Blob, UploadFile, UploadSession
from hub.registry.services import IncomingFile, blob_ingest
from hub.registry.storage import BlobStore, blob_key, get_blob_store
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["configured", "local"])
def store(request: Any) -> BlobStore:
    if request.param == "local":
        request.getfixturevalue("local_store")
    return get_blob_store()


def put(store: BlobStore, data: bytes) -> str:
    """Store bytes under their key without a row: a process that died before recording."""
    sha = hashlib.sha256(data).hexdigest()
    store.put_file(blob_key(sha), io.BytesIO(data), size=len(data), sha256=sha)
    return sha


def recorded(data: bytes) -> Blob:
    sha = hashlib.sha256(data).hexdigest()
    return blob_ingest(IncomingFile("f.bin", len(data), sha, io.BytesIO(data)))


def test_unrecorded_objects_past_the_grace_are_collected_and_recorded_ones_kept(store):
    nonce = os.urandom(8)
    orphan = put(store, b"orphan " + nonce)
    kept = recorded(b"kept " + nonce)

    # Within the grace period nothing is touched: the push may still be recording it.
    assert blobs_collect_orphans(grace_seconds=3600).objects == 0
    assert store.head(blob_key(orphan)) is not None

    collected = blobs_collect_orphans(grace_seconds=0)
    assert collected.objects >= 1
    assert store.head(blob_key(orphan)) is None
    assert store.head(kept.storage_key) is not None
    assert Blob.objects.filter(pk=kept.pk).exists()


def test_abandoned_multipart_uploads_are_aborted_and_live_sessions_kept(store):
    owner = make_user("uploader")
    repo = services.repository_create(
        actor=Actor(user=owner, write_scope=True), namespace="uploader", name="big", kind="dataset"
    )
    live_key = f"uploads/{os.urandom(4).hex()}/0"
    live_id = store.create_multipart(live_key)
    session = UploadSession.objects.create(
        repository=repo, created_by=owner, expires_at=timezone.now() + timedelta(hours=1)
    )
    UploadFile.objects.create(
        session=session,
        path="big.bin",
        size=1,
        sha256="0" * 64,
        staging_key=live_key,
        multipart_upload_id=live_id,
    )
    abandoned_id = store.create_multipart(f"uploads/{os.urandom(4).hex()}/0")

    assert blobs_collect_orphans(grace_seconds=0).uploads_aborted >= 1
    pending = {u.upload_id for u in store.list_pending_uploads()}
    assert abandoned_id not in pending
    assert live_id in pending
    store.abort_multipart(live_key, live_id)


def test_recording_bytes_the_collector_just_removed_stores_them_again(store):
    data = b"raced " + os.urandom(8)
    sha = put(store, data)
    store.delete(blob_key(sha))  # the collector won the race for an identical orphan

    blob = blob_record(
        sha,
        len(data),
        blob_key(sha),
        store_again=lambda: store.put_file(blob_key(sha), io.BytesIO(data), size=len(data)),
    )
    assert b"".join(store.iter_chunks(blob.storage_key)) == data
