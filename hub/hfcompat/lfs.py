"""The Git-LFS batch API, for files the preupload answer sent the "lfs" way.

Built on Strata's direct-to-storage uploads (``hub.registry.uploads``): each batch opens
an upload session whose files go to server-made staging keys, through a presigned PUT
or, above the multipart threshold, presigned part URLs in the Hub's multipart convention
(``header.chunk_size`` plus numbered part URLs, then a completion POST with the parts'
ETags). Nothing is trusted until the commit: :func:`staged_upload` finds the pusher's
staged object, and ``uploads.upload_finalize`` hashes it before it becomes a blob.

Clients 1.x and later must run with ``HF_HUB_DISABLE_XET=1`` to take this path; otherwise
they try the xet protocol, which Strata does not speak (docs/HF_COMPAT.md §7).
"""

from __future__ import annotations

import math
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from hub.accounts.models import Role
from hub.hfcompat.common import actor_of, find_repo, hub_url, read_json
from hub.hfcompat.errors import HubError, hub_view
from hub.registry import uploads
from hub.registry.access import Actor
from hub.registry.models import Repository, UploadFile, UploadSession
from hub.registry.storage import BlobMissing, UploadedPart, UploadRejected, get_blob_store

LFS_CONTENT_TYPE = "application/vnd.git-lfs+json"
_SALT = "hub.hfcompat.lfs.complete"


def _is_sha256(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _signature(file_id: int, expires_at: int) -> str:
    return salted_hmac(_SALT, f"{file_id}:{expires_at}").hexdigest()


def completion_url(row: UploadFile) -> str:
    """The multipart completion URL. The client POSTs to it without credentials (LFS
    headers only), so it authorises itself with a signature, like a presigned URL."""
    expires_at = int(time.time()) + settings.PRESIGN_TTL_SECONDS
    return hub_url(
        f"api/lfs/{row.pk}/complete?exp={expires_at}&sig={_signature(row.pk, expires_at)}"
    )


def _object_error(oid: object, size: object, code: int, message: str) -> dict[str, Any]:
    return {
        "oid": oid if isinstance(oid, str) else "",
        "size": size if isinstance(size, int) else 0,
        "error": {"code": code, "message": message},
    }


def _instructions(row: UploadFile) -> dict[str, Any]:
    """Where the client sends one object's bytes, and how it confirms them."""
    store = get_blob_store()
    ttl = settings.PRESIGN_TTL_SECONDS
    upload: dict[str, Any]
    if row.multipart_upload_id:
        count = math.ceil(row.size / row.part_size)
        header: dict[str, str] = {"chunk_size": str(row.part_size)}
        for number in range(1, count + 1):
            header[str(number)] = store.presign_part(
                row.staging_key, row.multipart_upload_id, number, expires=ttl
            )
        upload = {"href": completion_url(row), "header": header}
    else:
        # No checksum header: the client sends none, and S3 would refuse a URL that
        # signed one. The bytes are hashed at commit time instead.
        put = store.presign_put(row.staging_key, size=row.size, sha256=None, expires=ttl)
        upload = {"href": put.url}
    return {
        "upload": upload,
        "verify": {"href": hub_url(f"api/lfs/{row.pk}/verify")},
    }


@hub_view("POST")
def batch(
    request: HttpRequest, namespace: str, name: str, repo_type: str = "model"
) -> JsonResponse:
    """``POST /{repo}.git/info/lfs/objects/batch`` (upload only)."""
    actor = actor_of(request)
    repository = find_repo(actor, repo_type, namespace, name, need=Role.WRITE)
    body = read_json(request)
    if not isinstance(body, dict) or body.get("operation") != "upload":
        raise HubError(400, "BadRequest", "Only the LFS 'upload' operation is supported.")
    objects = body.get("objects")
    if not isinstance(objects, list) or len(objects) > uploads.MAX_FILES:
        raise HubError(400, "BadRequest", f"objects must be a list of at most {uploads.MAX_FILES}.")
    oids = [o.get("oid") for o in objects if isinstance(o, dict) and _is_sha256(o.get("oid"))]
    # Only blobs in versions the pusher can read count as present: answering for any blob
    # would let anyone probe private repositories by hash.
    known = uploads.blobs_known_to(actor, [str(o) for o in oids])
    assert actor.user is not None  # find_repo(need=WRITE) refuses anonymous callers
    store = get_blob_store()
    session: UploadSession | None = None
    answered: dict[str, dict[str, Any]] = {}
    answers: list[dict[str, Any]] = []
    for obj in objects:
        oid = obj.get("oid") if isinstance(obj, dict) else None
        size = obj.get("size") if isinstance(obj, dict) else None
        if not _is_sha256(oid) or not isinstance(size, int) or size < 0:
            answers.append(_object_error(oid, size, 422, "oid must be a sha256, size >= 0."))
            continue
        assert isinstance(oid, str)
        if size > settings.MAX_FILE_BYTES:
            answers.append(
                _object_error(oid, size, 413, f"Files are limited to {settings.MAX_FILE_BYTES} B.")
            )
            continue
        if oid in answered:
            answers.append(answered[oid])
            continue
        answer: dict[str, Any] = {"oid": oid, "size": size}
        if oid not in known:
            if session is None:
                session = UploadSession.objects.create(
                    repository=repository,
                    created_by=actor.user,
                    expires_at=timezone.now() + uploads.SESSION_TTL,
                )
            # The batch does not say which path an object is for; the commit does. The
            # session row is keyed by the object id until then.
            row = UploadFile(
                session=session,
                path=oid,
                size=size,
                sha256=oid,
                staging_key=f"uploads/{session.pk.hex}/{len(answered)}",
            )
            if size > settings.MULTIPART_THRESHOLD_BYTES:
                row.part_size = max(
                    settings.MULTIPART_PART_BYTES, math.ceil(size / uploads.MAX_PARTS)
                )
                row.multipart_upload_id = store.create_multipart(row.staging_key)
            row.save()
            answer |= {"authenticated": True, "actions": _instructions(row)}
        answered[oid] = answer
        answers.append(answer)
    return JsonResponse(
        {"transfer": "basic", "objects": answers, "hash_algo": "sha256"},
        content_type=LFS_CONTENT_TYPE,
    )


def _row(file_id: int) -> UploadFile:
    row = UploadFile.objects.select_related("session").filter(pk=file_id).first()
    if row is None or row.session.state != UploadSession.State.OPEN:
        raise HubError(404, "EntryNotFound", "No such upload in progress.")
    return row


@hub_view("POST")
def complete(request: HttpRequest, file_id: int) -> JsonResponse:
    """Assemble a multipart upload from the parts' ETags (signed URL, no credentials)."""
    try:
        expires_at = int(request.GET.get("exp", "0"))
    except ValueError:
        expires_at = 0
    if expires_at < time.time() or not constant_time_compare(
        _signature(file_id, expires_at), request.GET.get("sig", "")
    ):
        raise HubError(403, "Forbidden", "This completion URL is invalid or has expired.")
    row = _row(file_id)
    body = read_json(request)
    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("oid") != row.sha256 or not isinstance(parts, list):
        raise HubError(
            400, "BadRequest", "Send {oid, parts: [{partNumber, etag}]} for this upload."
        )
    store = get_blob_store()
    if not row.multipart_upload_id:  # a retried completion
        if store.head(row.staging_key) is None:
            raise HubError(404, "EntryNotFound", "This upload is gone; upload the file again.")
        return JsonResponse({"oid": row.sha256, "size": row.size})
    try:
        given = [UploadedPart(int(p["partNumber"]), str(p["etag"])) for p in parts]
    except (KeyError, TypeError, ValueError) as exc:
        raise HubError(400, "BadRequest", "Each part needs a partNumber and an etag.") from exc
    try:
        store.complete_multipart(row.staging_key, row.multipart_upload_id, given)
    except (BlobMissing, UploadRejected) as exc:
        raise HubError(
            400, "BadRequest", "A part is missing, too small or its ETag is wrong."
        ) from exc
    UploadFile.objects.filter(pk=row.pk).update(multipart_upload_id="")
    return JsonResponse({"oid": row.sha256, "size": row.size})


@hub_view("POST")
def verify(request: HttpRequest, file_id: int) -> JsonResponse:
    """Check that the object arrived whole (size); its hash is checked at commit time."""
    actor = actor_of(request)
    row = _row(file_id)
    if actor.user is None or row.session.created_by_id != actor.user.pk:
        raise HubError(404, "EntryNotFound", "No such upload in progress.")
    body = read_json(request)
    if not isinstance(body, dict) or body.get("oid") != row.sha256:
        raise HubError(400, "BadRequest", "The oid does not match this upload.")
    info = None if row.multipart_upload_id else get_blob_store().head(row.staging_key)
    if info is None:
        raise HubError(404, "EntryNotFound", f"Object {row.sha256} was not uploaded.")
    if info.size != row.size:
        raise HubError(
            400, "BadRequest", f"Object {row.sha256}: {info.size} bytes arrived, not {row.size}."
        )
    return JsonResponse({"oid": row.sha256, "size": row.size})


def staged_upload(actor: Actor, repository: Repository, sha256: str) -> UploadFile | None:
    """The pusher's uploaded, not yet verified object with this hash, if there is one."""
    if actor.user is None:
        return None
    rows = (
        UploadFile.objects.filter(
            session__repository=repository,
            session__created_by=actor.user,
            session__state=UploadSession.State.OPEN,
            session__expires_at__gt=timezone.now(),
            sha256=sha256,
            multipart_upload_id="",
        )
        .exclude(staging_key="")
        .order_by("-session__created_at")
    )
    store = get_blob_store()
    for row in rows[:5]:
        info = store.head(row.staging_key)
        if info is not None and info.size == row.size:
            return row
    return None
