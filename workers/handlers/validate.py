"""Validate an adapter version against its base model's manifest."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from django.db import transaction

from hub.registry.benchmarks import benchmark_request
from hub.registry.lineage import adapter_base
from hub.registry.models import Blob, Version, VersionFile
from hub.registry.selectors import version_files
from hub.registry.services import IncomingFile, blob_ingest, version_set_status
from workers.handlers.common import blob_reader, read_small
from workers.handlers.derived import request_auto_merge
from workers.runner import JobContext, UserError
from workers.validate import WeightFile, validate_adapter


class BaseNotReady(RuntimeError):
    """The base model's manifest has not been read yet. Retried like an infrastructure error."""


def validate_version(ctx: JobContext) -> dict[str, Any]:
    version = ctx.job.version
    if version is None:
        raise UserError("no_version", "This job has no version to validate.")
    if version.status != Version.Status.PENDING:
        return {"status": version.status, "skipped": True}
    base = adapter_base(version)
    if base is not None and base.manifest is None and base.status == Version.Status.PENDING:
        raise BaseNotReady(f"the manifest of {base.repository.full_name}@{base.label} is not ready")
    files = list(version_files(version))
    config_file = next(f for f in files if f.path == "adapter_config.json")
    weights = [
        WeightFile(path=f.path, size=f.blob.size, read=blob_reader(f.blob))
        for f in files
        if f.path.endswith(".safetensors")
    ]
    base_id = base.repository.full_name if base is not None else None
    target = f"{base_id}@{base.label}" if base is not None else "no base"
    ctx.log(f"validating {len(weights)} weight file(s) against {target}")
    report = validate_adapter(
        config=read_small(config_file.blob),
        weights=weights,
        base_manifest=base.manifest if base is not None else None,
        base_id=base_id,
    )
    result = report.to_json()
    if report.status == "valid":
        _serve_normalized_config(version, config_file, report.normalized_config_bytes(), result)
    version_set_status(version=version, status=report.status, report=result)
    if report.status == "valid":
        version.status = Version.Status.VALID
        request_auto_merge(version)
        # Every valid version is measured on its (and its base's) eval sets, if any.
        benchmark_request(actor=None, version=version)
    ctx.log(f"{report.status}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return {
        "status": report.status,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
        "codes": sorted(report.codes()),
    }


def _serve_normalized_config(
    version: Version, config_file: VersionFile, normalized: bytes | None, result: dict[str, Any]
) -> None:
    """Serve an adapter_config.json whose base_model_name_or_path is the hub's base id.

    Uploaded configs often name a local path (``/kaggle/input/...``) or nothing, which
    sends vLLM's resolver and PEFT looking for the wrong base. The original stays a
    blob of its own and is recorded in the report.
    """
    if normalized is None:
        return
    sha = hashlib.sha256(normalized).hexdigest()
    result["original_config"] = {"sha256": config_file.blob.sha256}
    if sha == config_file.blob.sha256:
        return
    blob: Blob = blob_ingest(
        IncomingFile("adapter_config.json", len(normalized), sha, io.BytesIO(normalized))
    )
    with transaction.atomic():
        VersionFile.objects.filter(pk=config_file.pk).update(
            blob=blob, uploaded_blob=config_file.blob
        )
