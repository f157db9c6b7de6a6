"""Direct-to-storage pushes: presigned (multipart) uploads, verified before publishing.

1. :func:`upload_start` records the files a client will send and answers, per file,
   either "the hub already has these bytes" or where to PUT them (one URL, or one URL
   per part for large files). Bytes go to server-made staging keys.
2. :func:`upload_commit` completes multipart uploads and checks every object's size
   and sha256. Small objects are hashed at once; large ones (or ones the store cannot
   vouch for) are hashed by a ``finalize_upload`` job, and the version is published when
   that job succeeds. An S3 ETag is not a sha256, so it is never trusted for this.
3. :func:`upload_finalize` promotes verified staging objects to their sha256 keys and
   publishes the version in one transaction: it appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hub.accounts.models import Role
from hub.registry import services
from hub.registry.access import Actor, check_role, repositories_visible_to
from hub.registry.blob_gc import blob_record
from hub.registry.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from hub.registry.lineage import spec_from_metadata, stored_metadata
from hub.registry.models import Blob, Job, UploadFile, UploadSession, Version, VersionFile
from hub.registry.names import check_file_path
from hub.registry.storage import (
    BlobMissing,
    UploadedPart,
    UploadRejected,
    blob_key,
    get_blob_store,
)

#: Objects up to this size are hashed inside the commit request; larger ones by a job.
SYNC_VERIFY_BYTES = 64 * 1024 * 1024
SESSION_TTL = timedelta(hours=24)
MAX_FILES = 1000
MAX_PARTS = 10_000


@dataclass(frozen=True)
class DeclaredFile:
    path: str
    size: int
    sha256: str


def _check_declared(files: list[DeclaredFile]) -> None:
    if not files:
        raise BadRequest("no_files", "Declare at least one file.")
    if len(files) > MAX_FILES:
        raise BadRequest("too_many_files", f"At most {MAX_FILES} files per upload.")
    if len({f.path for f in files}) != len(files):
        raise BadRequest("duplicate_path", "Each file path may appear only once.")
    for f in files:
        check_file_path(f.path)
        if len(f.sha256) != 64 or any(c not in "0123456789abcdef" for c in f.sha256):
            raise BadRequest("invalid_sha256", f"{f.path}: sha256 must be 64 lowercase hex.")
        if f.size < 0:
            raise BadRequest("invalid_size", f"{f.path}: size must be >= 0.")
        if f.size > settings.MAX_FILE_BYTES:
            raise PayloadTooLarge(
                "file_too_large",
                f"{f.path} is larger than the {settings.MAX_FILE_BYTES}-byte limit.",
            )


def blobs_known_to(actor: Actor, sha256s: list[str]) -> set[str]:
    """The hashes the hub holds in versions the actor can read.

    Only those count as "already uploaded": answering for any blob would let anyone
    confirm that a file exists in someone else's private repository.
    """
    visible = repositories_visible_to(actor).values("pk")
    return set(
        VersionFile.objects.filter(
            blob_id__in=sha256s, version__repository__in=visible
        ).values_list("blob_id", flat=True)
    )


def upload_start(
    *, actor: Actor, repository: Any, files: list[DeclaredFile]
) -> tuple[UploadSession, list[dict[str, Any]]]:
    """Open a session and return upload instructions for each declared file."""
    check_role(actor, repository, Role.WRITE)
    _check_declared(files)
    # Refuse an incomplete file set (e.g. an adapter without adapter_config.json) now,
    # before any byte is sent, rather than after the blobs were promoted at commit.
    services._check_file_set(repository.kind, [f.path for f in files])
    assert actor.user is not None
    # Refuse before any byte is sent; version_publish checks again under its lock.
    services.check_quota(repository, sum(f.size for f in files))
    known = blobs_known_to(actor, [f.sha256 for f in files])
    store = get_blob_store()
    ttl = settings.PRESIGN_TTL_SECONDS
    session = UploadSession.objects.create(
        repository=repository, created_by=actor.user, expires_at=timezone.now() + SESSION_TTL
    )
    instructions: list[dict[str, Any]] = []
    rows: list[UploadFile] = []
    for index, f in enumerate(files):
        row = UploadFile(session=session, path=f.path, size=f.size, sha256=f.sha256)
        if f.sha256 in known:
            instructions.append({"path": f.path, "exists": True})
            rows.append(row)
            continue
        row.staging_key = f"uploads/{session.pk.hex}/{index}"
        if f.size > settings.MULTIPART_THRESHOLD_BYTES:
            part_size = max(settings.MULTIPART_PART_BYTES, math.ceil(f.size / MAX_PARTS))
            row.part_size = part_size
            row.multipart_upload_id = store.create_multipart(row.staging_key)
            count = math.ceil(f.size / part_size)
            parts = [
                {
                    "part_number": n,
                    "url": store.presign_part(
                        row.staging_key, row.multipart_upload_id, n, expires=ttl
                    ),
                }
                for n in range(1, count + 1)
            ]
            instructions.append(
                {
                    "path": f.path,
                    "exists": False,
                    "multipart": {"part_size": part_size, "parts": parts},
                }
            )
        else:
            put = store.presign_put(row.staging_key, size=f.size, sha256=f.sha256, expires=ttl)
            instructions.append(
                {"path": f.path, "exists": False, "put": {"url": put.url, "headers": put.headers}}
            )
        rows.append(row)
    UploadFile.objects.bulk_create(rows)
    return session, instructions


def upload_session_for(actor: Actor, session_id: str) -> UploadSession:
    session = (
        UploadSession.objects.select_related("repository__namespace")
        .filter(pk=session_id, created_by=actor.user)
        .first()
        if actor.user is not None
        else None
    )
    if session is None:
        raise NotFound("upload_not_found", "No such upload session.")
    return session


@dataclass(frozen=True)
class CommitOutcome:
    session: UploadSession
    version: Version | None
    job: Job | None


def upload_commit(
    *,
    actor: Actor,
    session: UploadSession,
    parts: dict[str, list[UploadedPart]],
    metadata: dict[str, Any],
) -> CommitOutcome:
    """Finish the uploads, verify what can be verified now, and publish or queue a job."""
    check_role(actor, session.repository, Role.WRITE)
    if session.state == UploadSession.State.COMMITTED and session.version is not None:
        return CommitOutcome(session, session.version, None)
    if session.state != UploadSession.State.OPEN:
        raise Conflict("upload_not_open", f"This upload session is {session.state}.")
    if session.expires_at < timezone.now():
        raise Conflict("upload_expired", "This upload session has expired; start a new one.")
    services.check_json_limits(metadata, what="metadata")
    # Check everything version_publish will check (references, message, training
    # params) now, so bad metadata fails this request, not a job, and no blob is
    # promoted for a version that cannot be published.
    services.version_check(
        actor=actor,
        repository=session.repository,
        paths=list(session.files.values_list("path", flat=True)),
        spec=spec_from_metadata(metadata),
        message=str(metadata.get("message") or ""),
        metadata=stored_metadata(metadata),
    )

    store = get_blob_store()
    pending: list[UploadFile] = []
    for row in session.files.all():
        if not row.needs_upload:
            continue
        if row.multipart_upload_id:
            given = parts.get(row.path)
            if not given:
                raise BadRequest(
                    "upload_incomplete", f"{row.path}: send the ETag of every uploaded part."
                )
            try:
                store.complete_multipart(row.staging_key, row.multipart_upload_id, given)
            except (BlobMissing, UploadRejected) as exc:
                raise BadRequest(
                    "upload_incomplete", f"{row.path}: a part is missing or its ETag is wrong."
                ) from exc
            row.multipart_upload_id = ""
            row.save(update_fields=["multipart_upload_id"])
        info = store.head(row.staging_key)
        if info is None:
            raise BadRequest("upload_incomplete", f"{row.path} was never uploaded.")
        if info.size != row.size:
            store.delete(row.staging_key)
            _fail(
                session, "size_mismatch", f"{row.path}: {info.size} bytes arrived, not {row.size}."
            )
        if info.sha256 is not None:
            services.check_sha256(row.sha256, info.sha256, path=row.path)
        elif row.size <= SYNC_VERIFY_BYTES:
            verify_staged(row)
        else:
            pending.append(row)

    session.commit_metadata = metadata
    if not pending:
        session.save(update_fields=["commit_metadata"])
        version = upload_finalize(session, verified=True)
        return CommitOutcome(session, version, None)

    from hub.registry.jobs import job_request

    with transaction.atomic():
        session.state = UploadSession.State.VERIFYING
        session.save(update_fields=["commit_metadata", "state"])
        job, _ = job_request(
            kind=Job.Kind.FINALIZE_UPLOAD,
            version=None,
            params={"session": str(session.pk), "repository": session.repository.full_name},
            dedupe_key=f"finalize:{session.pk}",
            requested_by=actor.user,
        )
    return CommitOutcome(session, None, job)


def _fail(session: UploadSession, code: str, message: str) -> None:
    UploadSession.objects.filter(pk=session.pk).update(
        state=UploadSession.State.FAILED, error_code=code, error_message=message
    )
    _drop_staging(session)
    raise BadRequest(code, message)


def _drop_staging(session: UploadSession) -> None:
    store = get_blob_store()
    for row in session.files.exclude(staging_key=""):
        if row.multipart_upload_id:
            store.abort_multipart(row.staging_key, row.multipart_upload_id)
        store.delete(row.staging_key)


def verify_staged(row: UploadFile) -> None:
    """Hash a staged object by reading it back; raise (and drop it) on a mismatch."""
    digest = hashlib.sha256()
    size = 0
    for chunk in get_blob_store().iter_chunks(row.staging_key):
        digest.update(chunk)
        size += len(chunk)
    actual = digest.hexdigest()
    if size != row.size or not hmac.compare_digest(actual, row.sha256):
        _fail(
            row.session,
            "sha256_mismatch",
            f"{row.path}: the uploaded bytes hash to {actual} ({size} bytes), not the declared "
            f"{row.sha256} ({row.size} bytes).",
        )


def upload_finalize(session: UploadSession, *, verified: bool = False) -> Version:
    """Promote staged objects to their sha256 keys and publish the version.

    ``verified`` says the caller already checked every staged object; otherwise each
    one is hashed here (the ``finalize_upload`` job).
    """
    store = get_blob_store()
    files: list[tuple[str, Blob]] = []
    for row in session.files.select_related("session").order_by("path"):
        if row.needs_upload:
            if not verified:
                verify_staged(row)
            key = blob_key(row.sha256)
            blob = Blob.objects.filter(sha256=row.sha256).first()
            if blob is None or not store.head(key):
                store.copy(row.staging_key, key)
                blob = blob_record(
                    row.sha256,
                    row.size,
                    key,
                    store_again=partial(store.copy, row.staging_key, key),
                )
            store.delete(row.staging_key)
        else:
            blob = Blob.objects.get(sha256=row.sha256)
        files.append((row.path, blob))
    metadata = session.commit_metadata or {}
    actor = Actor(user=session.created_by, write_scope=True)
    published = services.version_publish(
        actor=actor,
        repository=session.repository,
        files=files,
        spec=spec_from_metadata(metadata),
        message=str(metadata.get("message") or ""),
        metadata=stored_metadata(metadata),
    )
    UploadSession.objects.filter(pk=session.pk).update(
        state=UploadSession.State.COMMITTED, version=published.version
    )
    session.state = UploadSession.State.COMMITTED
    session.version = published.version
    return published.version


def uploads_expire() -> int:
    """Drop staged bytes of sessions that were never committed (orphan collection)."""
    stale = UploadSession.objects.filter(
        state__in=[UploadSession.State.OPEN, UploadSession.State.FAILED],
        expires_at__lt=timezone.now(),
    )
    count = 0
    for session in stale:
        _drop_staging(session)
        UploadSession.objects.filter(pk=session.pk).update(state=UploadSession.State.EXPIRED)
        count += 1
    return count
