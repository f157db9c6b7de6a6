"""Benchmark an adapter version against its base on eval sets, on GPU when there is one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from hub.registry.benchmarks import benchmark_record
from hub.registry.lineage import adapter_base, stack_of
from hub.registry.lookups import version_files
from hub.registry.models import Version
from hub.registry.storage import get_blob_store
from workers.bench import (
    BENCH_VERSION,
    BenchmarkError,
    BenchSettings,
    EvalSet,
    EvalSetError,
    EvalSetLimits,
    parse_eval_set,
    run_benchmark,
)
from workers.runner import JobContext, UserError

EVAL_SUFFIXES = (".jsonl", ".txt")


class WorkerOutOfMemory(RuntimeError):
    """The worker ran out of memory: ours to retry (elsewhere), never the adapter's fault."""

    code = "out_of_memory"


def materialize(version: Version) -> Path:
    """A local folder with the version's files, cached by commit id and shared by jobs."""
    target = Path(settings.WORKER_CACHE_DIR) / "versions" / version.commit_id
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    store = get_blob_store()
    # Download beside the target, then rename: a concurrent job never sees half a folder.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        for vf in version_files(version):
            path = tmp / vf.path
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                for chunk in store.iter_chunks(vf.blob.storage_key):
                    out.write(chunk)
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, target)
        except OSError:  # another job finished first; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_eval_set(version: Version) -> EvalSet:
    limits = EvalSetLimits()
    files = [f for f in version_files(version) if f.path.endswith(EVAL_SUFFIXES)]
    name = f"{version.repository.full_name}@{version.label}"
    if not files:
        raise UserError("eval_set_empty", f"{name} has no .jsonl or .txt file to evaluate on.")
    blob = files[0].blob
    if blob.size > limits.max_bytes:
        raise UserError(
            "eval_set_too_large", f"{name}: {files[0].path} is over {limits.max_bytes} bytes."
        )
    data = get_blob_store().read_range(blob.storage_key, 0, blob.size)
    try:
        return parse_eval_set(files[0].path, data, limits=limits)
    except EvalSetError as exc:
        raise UserError(f"eval_set_{exc.code}", f"{name}: {exc.message}") from exc


def benchmark_version(ctx: JobContext) -> dict[str, Any]:
    version = ctx.job.version
    if version is None or version.status != Version.Status.VALID:
        raise UserError("version_not_valid", "Only valid adapter versions are benchmarked.")
    base = adapter_base(version)
    if base is None:
        raise UserError("no_base", "This adapter declares no base model.")
    eval_versions = list(
        Version.objects.select_related("repository__namespace").filter(
            pk__in=ctx.job.params.get("eval_sets") or []
        )
    )
    if not eval_versions:
        raise UserError("no_eval_sets", "No eval set is left to run (deleted or hidden).")
    stack = stack_of(version)
    ctx.log(f"downloading {base.repository.full_name}@{base.label} and {len(stack)} adapter(s)")
    base_dir = materialize(base)
    adapter_dirs = [materialize(v) for v in stack]
    eval_sets = [load_eval_set(v) for v in eval_versions]
    ctx.log(f"benchmarking on {', '.join(e.name for e in eval_sets)}")
    try:
        result = run_benchmark(
            base_dir=base_dir,
            adapter_dirs=adapter_dirs,
            eval_sets=eval_sets,
            base_id=f"{base.repository.full_name}@{base.label}",
            adapter_ids=[f"{v.repository.full_name}@{v.label}" for v in stack],
            settings=BenchSettings(
                max_tokens=settings.BENCHMARK_MAX_TOKENS,
                speed_seq_len=settings.BENCHMARK_SPEED_SEQ_LEN,
                repeats=settings.BENCHMARK_SPEED_REPEATS,
            ),
        )
    except BenchmarkError as exc:
        if exc.code == "out_of_memory":
            raise WorkerOutOfMemory(exc.message) from exc
        raise UserError(exc.code, exc.message) from exc
    data = result.to_dict()
    device = data["environment"].get("gpu_name") or data["environment"].get("device", "cpu")
    recorded = []
    for eval_version, entry in zip(eval_versions, data["eval_sets"], strict=True):
        for metric, base_value, adapter_value in _metrics(entry):
            row = benchmark_record(
                version=version,
                eval_set=eval_version,
                code=BENCH_VERSION,
                metric=metric,
                base_value=base_value,
                adapter_value=adapter_value,
                device=str(device),
                result={**entry, "speed": data.get("speed"), "environment": data["environment"]},
                job=ctx.job,
            )
            recorded.append({"eval_set": entry["name"], "metric": metric, "delta": row.delta})
    ctx.log(f"recorded {len(recorded)} result(s)")
    return {"results": recorded, "speedup": (data.get("speed") or {}).get("speedup")}


def _metrics(entry: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(metric, base value, adapter value) rows for one eval set's result."""
    if entry["metric"] == "perplexity":
        return [("perplexity", entry["base"]["perplexity"], entry["adapter"]["perplexity"])]
    rows = [("embedding_drift", 1.0, entry["adapter"]["cosine_to_base_mean"])]
    if entry["base"].get("spearman") is not None and entry["adapter"].get("spearman") is not None:
        rows.append(("spearman", entry["base"]["spearman"], entry["adapter"]["spearman"]))
    return rows
