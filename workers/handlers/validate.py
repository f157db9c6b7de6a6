"""Validate an adapter version against its base model's manifest."""

from __future__ import annotations

from typing import Any

from hub.registry.benchmarks import benchmark_request
from hub.registry.lineage import adapter_base
from hub.registry.lookups import version_files
from hub.registry.models import Version
from hub.registry.services import version_set_status
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
        # The pushed config, not the normalized copy the hub serves, so the report
        # records what the uploader's config really said about its base.
        config=read_small(config_file.uploaded_blob or config_file.blob),
        weights=weights,
        base_manifest=base.manifest if base is not None else None,
        base_id=base_id,
    )
    result = report.to_json()
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
