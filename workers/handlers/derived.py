"""Merge a stack into ready-to-serve weights, or compose adapters into one."""

from __future__ import annotations

import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from hub.registry.access import Actor
from hub.registry.derived import auto_merge_wanted, merge_request, merged_version_publish
from hub.registry.lineage import LineageSpec, Ref, adapter_base, stack_of
from hub.registry.lookups import version_files
from hub.registry.models import Blob, LineageEdge, Repository, Version, VersionFile
from hub.registry.services import IncomingFile, blob_ingest, version_publish
from hub.registry.storage import get_blob_store
from workers.compose import compose_adapters
from workers.handlers.common import blob_reader, read_small
from workers.merge import (
    AdapterFiles,
    BaseModelFiles,
    MergeError,
    SourceFile,
    files_to_carry,
    merge_stack,
)
from workers.runner import JobContext, UserError
from workers.safetensors_writer import OutputFile


def _ingest(out: OutputFile) -> Blob:
    with out.local_path.open("rb") as fh:
        return blob_ingest(IncomingFile(out.path, out.size, out.sha256, fh))


def _source(vf: VersionFile) -> SourceFile:
    return SourceFile(vf.path, vf.blob.size, blob_reader(vf.blob))


def base_files(base: Version) -> tuple[BaseModelFiles, list[VersionFile]]:
    files = {f.path: f for f in version_files(base)}
    index = files.get("model.safetensors.index.json")
    index_json = read_small(index.blob) if index is not None else None
    if index_json is not None:
        order = list(dict.fromkeys(json.loads(index_json)["weight_map"].values()))
    else:
        order = sorted(p for p in files if p.endswith(".safetensors"))
    config = files.get("config.json")
    return (
        BaseModelFiles(
            shards=[_source(files[p]) for p in order],
            index_json=index_json,
            config_json=read_small(config.blob) if config is not None else None,
        ),
        list(files.values()),
    )


def adapter_files(version: Version) -> AdapterFiles:
    files = {f.path: f for f in version_files(version)}
    weights = files.get("adapter_model.safetensors") or next(
        f for p, f in files.items() if p.endswith(".safetensors")
    )
    return AdapterFiles(
        config_json=read_small(files["adapter_config.json"].blob),
        weights=_source(weights),
        name=f"{version.repository.full_name}@{version.label}",
    )


def _download(vf: VersionFile, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for chunk in get_blob_store().iter_chunks(vf.blob.storage_key):
            out.write(chunk)


def _parity(
    base: Version, stack: list[Version], merged_dir: Path, work: Path, device: str
) -> dict[str, Any]:
    from workers.parity import stack_parity

    base_dir = work / "base"
    for vf in version_files(base):
        _download(vf, base_dir / vf.path)
    adapter_dirs = []
    for i, adapter in enumerate(stack):
        folder = work / f"adapter{i}"
        for vf in version_files(adapter):
            if vf.path in ("adapter_config.json", "adapter_model.safetensors"):
                _download(vf, folder / vf.path)
        adapter_dirs.append(folder)
    return stack_parity(base_dir, adapter_dirs, merged_dir, device=device).as_dict()


def merge_version(ctx: JobContext) -> dict[str, Any]:
    version = ctx.job.version
    if version is None:
        raise UserError("no_version", "This job has no version to merge.")
    dtype = ctx.job.params.get("dtype")
    base = adapter_base(version)
    if base is None:
        raise UserError("no_base", "This adapter declares no base model to merge into.")
    stack = stack_of(version)
    base_model, base_version_files = base_files(base)
    check_parity = base.total_size <= settings.PARITY_MAX_BASE_BYTES
    ctx.log(
        f"merging {len(stack)} adapter(s) into {base.repository.full_name}@{base.label} "
        f"({base.total_size} bytes)"
    )
    with tempfile.TemporaryDirectory(prefix="strata-merge-") as tmp:
        out_dir = Path(tmp) / "merged"
        out_dir.mkdir()
        outputs: list[tuple[str, Blob]] = []

        def upload(out: OutputFile) -> None:
            outputs.append((out.path, _ingest(out)))
            ctx.log(f"stored {out.path} ({out.size} bytes)")
            if not check_parity:
                out.local_path.unlink()  # keep the disk footprint at one shard

        try:
            result = merge_stack(
                base=base_model,
                stack=[adapter_files(v) for v in stack],
                out_dir=out_dir,
                dtype=dtype,
                on_file=upload,
            )
        except MergeError as exc:
            raise UserError(exc.code, exc.message) from exc
        carried = {f.path: f for f in base_version_files}
        for path in files_to_carry(carried):
            outputs.append((path, carried[path].blob))
        report: dict[str, Any] = {
            "merge": {
                "device": result.device,
                "seconds": round(result.seconds, 3),
                "base_bytes": result.base_bytes,
                "merged_tensors": len(result.merged_tensors),
                "dtype": dtype or "base",
                "stack": [f"{v.repository.full_name}@{v.label}" for v in stack],
                "base": f"{base.repository.full_name}@{base.label}",
            },
            "parity": None,
        }
        if check_parity:
            for path in files_to_carry(carried):
                _download(carried[path], out_dir / path)
            ctx.log("checking parity: merged outputs against the unmerged stack")
            report["parity"] = _parity(base, stack, out_dir, Path(tmp), result.device)
    merged = merged_version_publish(adapter=version, dtype=dtype, files=outputs, report=report)
    ctx.log(f"published {merged.label}")
    return {"version": merged.label, "commit_id": merged.commit_id, "parity": report["parity"]}


def compose(ctx: JobContext) -> dict[str, Any]:
    params = ctx.job.params
    by_id = Version.objects.select_related("repository__namespace").in_bulk(
        [i["version"] for i in params["inputs"]]
    )
    versions = [by_id[i["version"]] for i in params["inputs"]]
    weights = [float(i["weight"]) for i in params["inputs"]]
    base = adapter_base(versions[0])
    assert base is not None
    target = Repository.objects.select_related("namespace").get(pk=params["target"])
    requester = ctx.job.requested_by
    if requester is None:
        raise UserError("no_requester", "Composed adapters are published for a user.")
    ctx.log(f"composing {len(versions)} adapter(s) with method {params['method']}")
    with tempfile.TemporaryDirectory(prefix="strata-compose-") as tmp, ExitStack():
        try:
            result = compose_adapters(
                adapters=[adapter_files(v) for v in versions],
                out_dir=Path(tmp),
                weights=weights,
                method=params["method"],
                rank=params.get("rank"),
                base_model_name_or_path=base.repository.full_name,
            )
        except MergeError as exc:
            raise UserError(exc.code, exc.message) from exc
        files = [(out.path, _ingest(out)) for out in result.files]
    recipe = {
        **result.recipe,
        "inputs": [
            {
                "repo": v.repository.full_name,
                "version": v.label,
                "commit_id": v.commit_id,
                "weight": w,
            }
            for v, w in zip(versions, weights, strict=True)
        ],
    }
    with transaction.atomic():
        published = version_publish(
            actor=Actor(user=requester, write_scope=True),
            repository=target,
            files=files,
            spec=LineageSpec(base=Ref(base.repository.full_name, base.label)),
            message=params.get("message")
            or f"Composed ({params['method']}) from {len(versions)} adapters",
            metadata={
                "recipe": recipe,
                "compose": {
                    "total_error": result.total_error,
                    "module_errors": result.module_errors,
                    "ranks": result.ranks,
                },
            },
        )
        if published.created:
            LineageEdge.objects.bulk_create(
                LineageEdge(
                    child=published.version,
                    parent=v,
                    kind=LineageEdge.Kind.COMPOSED_FROM,
                    position=i,
                    weight=w,
                )
                for i, (v, w) in enumerate(zip(versions, weights, strict=True))
            )
    ctx.log(f"published {target.full_name}@{published.version.label}")
    return {
        "repo": target.full_name,
        "version": published.version.label,
        "total_error": result.total_error,
    }


def request_auto_merge(version: Version) -> None:
    """After validation: merge at once when the repository or base asks for it."""
    if version.status == Version.Status.VALID and auto_merge_wanted(version):
        merge_request(actor=None, version=version)
