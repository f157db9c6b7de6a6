"""Verify large direct uploads by hashing them, then publish the version; collect orphans."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from hub.registry.blob_gc import blobs_collect_orphans
from hub.registry.errors import DomainError
from hub.registry.models import UploadSession
from hub.registry.uploads import upload_finalize, uploads_expire
from workers.runner import JobContext, UserError


def finalize_upload(ctx: JobContext) -> dict[str, Any]:
    session = UploadSession.objects.select_related("repository__namespace", "created_by").get(
        pk=ctx.job.params["session"]
    )
    if session.state == UploadSession.State.COMMITTED and session.version is not None:
        return {"version": session.version.label}
    ctx.log(f"hashing {session.files.exclude(staging_key='').count()} uploaded file(s)")
    try:
        version = upload_finalize(session)
    except DomainError as exc:
        UploadSession.objects.filter(pk=session.pk).update(
            state=UploadSession.State.FAILED, error_code=exc.code, error_message=exc.message
        )
        raise UserError(exc.code, exc.message) from exc
    ctx.log(f"published {version.label}")
    return {"version": version.label, "commit_id": version.commit_id}


def expire_uploads() -> int:
    return uploads_expire()


def collect_orphans() -> dict[str, int]:
    return asdict(blobs_collect_orphans())
