"""Read a base model's tensor manifest from its safetensors headers (range reads only)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hub.registry.lookups import version_files
from hub.registry.models import Version
from hub.registry.services import version_set_status
from workers.handlers.common import blob_reader, read_json_file
from workers.runner import JobContext, UserError
from workers.safetensors_io import SafetensorsError, read_header

QUANTIZED_DTYPES = {"U8", "I8", "F8_E4M3", "F8_E5M2"}


def read_manifest(ctx: JobContext) -> dict[str, Any]:
    version = ctx.job.version
    if version is None:
        raise UserError("no_version", "This job has no version to read.")
    manifest: dict[str, dict[str, Any]] = {}
    findings: list[dict[str, Any]] = []
    weight_files = [f for f in version_files(version) if f.path.endswith(".safetensors")]
    for vf in weight_files:
        ctx.log(f"reading the header of {vf.path} ({vf.blob.size} bytes)")
        try:
            header = read_header(blob_reader(vf.blob), vf.blob.size)
        except SafetensorsError as exc:
            findings.append(
                {
                    "code": exc.code,
                    "severity": "error",
                    "message": f"{vf.path}: {exc.message}",
                    "tensor": exc.tensor,
                }
            )
            continue
        for name, entry in header.manifest().items():
            if name in manifest:
                findings.append(
                    {
                        "code": "duplicate_tensor_across_shards",
                        "severity": "error",
                        "message": f"{name} is stored in both {manifest[name]['file']} and "
                        f"{vf.path}.",
                        "tensor": name,
                    }
                )
            manifest[name] = {**entry, "file": vf.path}

    config = read_json_file(version, "config.json") or {}
    dtypes = Counter(entry["dtype"] for entry in manifest.values())
    parameters = 0
    for entry in manifest.values():
        count = 1
        for dim in entry["shape"]:
            count *= dim
        parameters += count
    quantized = bool(config.get("quantization_config")) or (
        bool(dtypes) and dtypes.most_common(1)[0][0] in QUANTIZED_DTYPES
    )
    facts = {
        "architecture": (config.get("architectures") or [None])[0],
        "model_type": config.get("model_type"),
        "parameters": parameters,
        "tensors": len(manifest),
        "dtype": dtypes.most_common(1)[0][0] if dtypes else None,
        "dtypes": dict(dtypes),
        "quantized": quantized,
        "shards": len(weight_files),
    }
    status = Version.Status.INVALID if findings else Version.Status.VALID
    version_set_status(
        version=version,
        status=status,
        report={"status": status, "findings": findings, "facts": facts},
        manifest=manifest,
    )
    ctx.log(f"{len(manifest)} tensors, {parameters} parameters: {status}")
    return {"status": status, "tensors": len(manifest), "parameters": parameters}
