"""Orphan collection: stored bytes that no blob row records, and abandoned multipart uploads.

Bytes are stored before their ``Blob`` row is written (a row must never point at
nothing), so a process that dies in between - a killed worker mid-merge, a web process
restarted mid-push - leaves an object no row accounts for. Multipart uploads that were
started and never completed hold parts S3 bills for but nobody can see. A periodic task
deletes both once they are older than ``ORPHAN_GRACE_SECONDS``, long enough that no
upload still in flight can be mistaken for one.

The one race that matters - a push recording the same bytes while the collector deletes
them - is closed by :func:`blob_lock`: the collector deletes only under the lock and only
when no row exists, and :func:`blob_record` checks, under the same lock, that the object
is still there before writing the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from hub.registry.models import Blob, UploadFile, UploadSession
from hub.registry.storage import get_blob_store

log = logging.getLogger(__name__)

BLOB_PREFIX = "blobs/"


@contextmanager
def blob_lock(sha256: str) -> Iterator[None]:
    """Serialize recording the blob ``sha256`` with collecting it as an orphan."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [sha256])
        # SQLite: the hub opens write transactions IMMEDIATE, which serializes them anyway.
        yield


def blob_record(sha256: str, size: int, key: str, *, store_again: Callable[[], None]) -> Blob:
    """Write the row for bytes just stored under ``key``. If the collector removed them
    in the meantime (an identical orphan older than the grace period), store them again."""
    with blob_lock(sha256):
        if get_blob_store().head(key) is None:
            store_again()
        blob, _ = Blob.objects.get_or_create(
            sha256=sha256, defaults={"size": size, "storage_key": key}
        )
    return blob


@dataclass(frozen=True)
class Collected:
    objects: int
    bytes: int
    uploads_aborted: int


def blobs_collect_orphans(*, grace_seconds: int | None = None) -> Collected:
    """Delete unrecorded objects and abandoned multipart uploads older than the grace."""
    grace = settings.ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = timezone.now() - timedelta(seconds=grace)
    store = get_blob_store()
    objects = freed = 0
    batch: list[tuple[str, int]] = []

    def collect(batch: list[tuple[str, int]]) -> None:
        nonlocal objects, freed
        shas = {key.rsplit("/", 1)[-1]: (key, size) for key, size in batch}
        recorded = set(Blob.objects.filter(sha256__in=shas).values_list("sha256", flat=True))
        for sha, (key, size) in shas.items():
            if sha in recorded:
                continue
            with blob_lock(sha):
                if Blob.objects.filter(sha256=sha).exists():
                    continue  # recorded since we listed it
                store.delete(key)
            log.info("collected orphan object %s (%d bytes)", key, size)
            objects += 1
            freed += size

    for obj in store.list_objects(BLOB_PREFIX):
        if obj.modified < cutoff:
            batch.append((obj.key, obj.size))
        if len(batch) >= 500:
            collect(batch)
            batch = []
    collect(batch)

    # Uploads of live sessions are theirs to finish or expire (uploads_expire), however
    # old they look: some S3 servers report no useful start time.
    live = set(
        UploadFile.objects.exclude(multipart_upload_id="")
        .exclude(session__state__in=[UploadSession.State.COMMITTED, UploadSession.State.EXPIRED])
        .values_list("multipart_upload_id", flat=True)
    )
    aborted = 0
    for upload in store.list_pending_uploads():
        if upload.started < cutoff and upload.upload_id not in live:
            store.abort_multipart(upload.key, upload.upload_id)
            log.info("aborted multipart upload %s of %s", upload.upload_id, upload.key)
            aborted += 1
    return Collected(objects=objects, bytes=freed, uploads_aborted=aborted)
