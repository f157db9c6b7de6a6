"""Benchmark Strata's streaming merge against the transformers + PEFT merge path.

The input is a synthetic Llama with TinyLlama-1.1B shapes (random bf16 weights, ~2.2 GB
in 1 GB shards, written directly without instantiating a model) and a rank-16 LoRA on
q, k, v, o, gate, up and down. Each contender runs in its own subprocess so its peak RSS
(from ``wait4``) is its own:

* ``strata``: ``workers.merge.merge_stack`` as the worker runs it: range readers over the
  shards, output shards written and sha256-hashed in one pass.
* ``peft``: ``AutoModelForCausalLM.from_pretrained`` (bf16), ``PeftModel.from_pretrained``,
  ``merge_and_unload``, ``save_pretrained``.
* ``copy+sha256``: copying the shard files and hashing them, the I/O floor.

Usage::

    .venv/bin/python bench/merge.py            # full size (needs ~7 GB free in /tmp)
    .venv/bin/python bench/merge.py --small    # a quick check
    .venv/bin/python bench/merge.py --verify   # also compare Strata's output with PEFT's

Prints a table and one JSON line. Generated files live in a temp dir that is deleted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES: dict[str, dict[str, int]] = {
    # TinyLlama-1.1B.
    "full": {
        "hidden": 2048,
        "intermediate": 5632,
        "layers": 22,
        "heads": 32,
        "kv_heads": 4,
        "vocab": 32000,
    },
    "small": {
        "hidden": 256,
        "intermediate": 688,
        "layers": 4,
        "heads": 8,
        "kv_heads": 2,
        "vocab": 4096,
    },
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def linear_shapes(s: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(out, in) of every LoRA-targetable projection in one decoder layer."""
    h, kv = s["hidden"], s["hidden"] // s["heads"] * s["kv_heads"]
    return {
        "self_attn.q_proj": (h, h),
        "self_attn.k_proj": (kv, h),
        "self_attn.v_proj": (kv, h),
        "self_attn.o_proj": (h, h),
        "mlp.gate_proj": (s["intermediate"], h),
        "mlp.up_proj": (s["intermediate"], h),
        "mlp.down_proj": (h, s["intermediate"]),
    }


def base_tensors(s: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    h = s["hidden"]
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (s["vocab"], h))]
    for i in range(s["layers"]):
        p = f"model.layers.{i}"
        out += [(f"{p}.{name}.weight", shape) for name, shape in linear_shapes(s).items()]
        out += [(f"{p}.input_layernorm.weight", (h,))]
        out += [(f"{p}.post_attention_layernorm.weight", (h,))]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (s["vocab"], h))]
    return out


def write_base(path: Path, s: dict[str, int], shard_bytes: int) -> int:
    """Random bf16 shards (HF naming and fill order) plus index and config; returns bytes."""
    import torch
    from transformers import LlamaConfig

    from workers.safetensors_writer import SafetensorsWriter, TensorSpec

    path.mkdir(parents=True)
    LlamaConfig(
        hidden_size=s["hidden"],
        intermediate_size=s["intermediate"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        vocab_size=s["vocab"],
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        dtype="bfloat16",
    ).save_pretrained(path)
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for name, shape in base_tensors(s):
        spec = TensorSpec(name, "BF16", shape)
        if shards[-1] and size + spec.nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    generator = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    for i, specs in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        writer = SafetensorsWriter(path / name, name, specs, {"format": "pt"})
        for spec in specs:
            writer.write_tensor((torch.randn(spec.shape, generator=generator) * 0.02).bfloat16())
            weight_map[spec.name] = name
            total += spec.nbytes
        writer.finish()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def write_adapter(path: Path, base: Path, s: dict[str, int], rank: int) -> None:
    import torch

    from workers.safetensors_writer import write_safetensors

    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for i in range(s["layers"]):
        for name, (out_f, in_f) in linear_shapes(s).items():
            p = f"base_model.model.model.layers.{i}.{name}"
            tensors[f"{p}.lora_A.weight"] = torch.randn(rank, in_f, generator=generator) * 0.01
            tensors[f"{p}.lora_B.weight"] = torch.randn(out_f, rank, generator=generator) * 0.01
    write_safetensors(path / "adapter_model.safetensors", "adapter", tensors, {"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base),
        "r": rank,
        "lora_alpha": 2 * rank,
        "lora_dropout": 0.0,
        "target_modules": list(TARGETS),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2))


# ------------------------------------------------------------------ contenders (children)


def run_strata(work: Path) -> dict[str, Any]:
    import torch  # noqa: F401  (a worker has torch loaded; keep the import out of the timing)

    from workers.merge import files_to_carry, local_adapter, local_base, merge_stack

    out = work / "out_strata"
    started = time.perf_counter()
    with ExitStack() as files:
        result = merge_stack(
            base=local_base(work / "base", files),
            stack=[local_adapter(work / "adapter", files)],
            out_dir=out,
            device="cpu",
        )
    names = [p.name for p in (work / "base").iterdir()]
    for name in files_to_carry(names):
        shutil.copyfile(work / "base" / name, out / name)
    return {"seconds": time.perf_counter() - started, "files": len(result.files)}


def run_peft(work: Path, shard_bytes: int) -> dict[str, Any]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    phases = {}
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(work / "base", dtype=torch.bfloat16)
    phases["load_base"] = time.perf_counter() - t0
    t = time.perf_counter()
    model = PeftModel.from_pretrained(model, work / "adapter")
    phases["load_adapter"] = time.perf_counter() - t
    t = time.perf_counter()
    model = model.merge_and_unload()
    phases["merge"] = time.perf_counter() - t
    t = time.perf_counter()
    model.save_pretrained(work / "out_peft", max_shard_size=shard_bytes)
    phases["save"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "phases": phases}


def run_copy(work: Path) -> dict[str, Any]:
    out = work / "out_copy"
    out.mkdir()
    shards = sorted((work / "base").glob("*.safetensors"))
    t0 = time.perf_counter()
    for shard in shards:
        shutil.copyfile(shard, out / shard.name)
    copied = time.perf_counter()
    for shard in shards:
        digest = hashlib.sha256()
        with shard.open("rb") as fh:
            while chunk := fh.read(16 << 20):
                digest.update(chunk)
    end = time.perf_counter()
    return {"seconds": end - t0, "phases": {"copy": copied - t0, "sha256": end - copied}}


def peak_rss_mb() -> float | None:
    """This process's own high-water RSS (VmHWM). Unlike ``wait4``'s ru_maxrss it does not
    inherit the parent's peak across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child(kind: str, work: Path, shard_bytes: int) -> None:
    runs = {"strata": run_strata, "copy+sha256": run_copy}
    result = run_peft(work, shard_bytes) if kind == "peft" else runs[kind](work)
    result["peak_rss_mb"] = peak_rss_mb()
    (work / f"{kind}.json").write_text(json.dumps(result))


def measure(kind: str, work: Path, shard_bytes: int) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its own peak RSS comes from wait4."""
    # Start every contender with no dirty pages left by the previous one (or by generating
    # the base): otherwise kernel writeback throttling lands on whoever runs next.
    os.sync()
    cmd = [sys.executable, __file__, "--child", kind, "--workdir", str(work)]
    cmd += ["--shard-bytes", str(shard_bytes)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{kind} failed with exit code {proc.returncode}")
    result = json.loads((work / f"{kind}.json").read_text())
    result["process_seconds"] = time.perf_counter() - started
    if result["peak_rss_mb"] is None:  # no /proc: fall back to wait4 (Linux KiB, macOS bytes)
        result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


# ------------------------------------------------------------------ verification


def verify(work: Path) -> dict[str, Any]:
    """Max ULP distance between Strata's and PEFT's merged tensors (streamed by name)."""
    from workers.safetensors_io import file_reader, load_tensor, read_header

    def open_dir(path: Path, files: ExitStack) -> dict[str, Any]:
        where = {}
        for shard in path.glob("*.safetensors"):
            read = file_reader(files.enter_context(shard.open("rb")))
            header = read_header(read, shard.stat().st_size)
            where.update({name: (read, header) for name in header.tensors})
        return where

    import torch

    worst, differing, total = 0, 0, 0
    with ExitStack() as files:
        ours, theirs = open_dir(work / "out_strata", files), open_dir(work / "out_peft", files)
        assert set(ours) == set(theirs), set(ours) ^ set(theirs)
        for name, (read, header) in ours.items():
            a = load_tensor(read, header, name).view(torch.int16).to(torch.int32)
            b = load_tensor(*theirs[name], name).view(torch.int16).to(torch.int32)
            # Order bf16 bit patterns so integer distance counts representable steps.
            a = torch.where(a < 0, -(a & 0x7FFF), a)
            b = torch.where(b < 0, -(b & 0x7FFF), b)
            ulps = (a - b).abs()
            worst = max(worst, int(ulps.max()))
            differing += int((ulps > 0).sum())
            total += ulps.numel()
    return {"max_ulp": worst, "differing_fraction": differing / total}


# ------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny shapes for a quick check")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--shard-bytes", type=int, default=10**9, help="base shard size")
    parser.add_argument("--workdir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--skip-peft", action="store_true", help="skip the slow PEFT path")
    parser.add_argument("--verify", action="store_true", help="compare outputs (needs PEFT)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per contender; the median is reported"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir, args.shard_bytes)
        return

    shapes = SHAPES["small" if args.small else "full"]
    shard_bytes = args.shard_bytes if not args.small else min(args.shard_bytes, 8 * 10**6)
    work = Path(tempfile.mkdtemp(prefix="strata-merge-bench-", dir=args.workdir))
    try:
        t = time.perf_counter()
        base_bytes = write_base(work / "base", shapes, shard_bytes)
        write_adapter(work / "adapter", work / "base", shapes, args.rank)
        print(f"generated {base_bytes / 1e9:.2f} GB base in {time.perf_counter() - t:.1f}s")

        results: dict[str, dict[str, Any]] = {}
        kinds = ("copy+sha256", "strata", *(() if args.skip_peft else ("peft",)))
        # Interleaved rounds, so slow phases of a shared disk hit every contender alike.
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for _ in range(args.repeat):
            for kind in kinds:
                shutil.rmtree(work / f"out_{kind.split('+')[0]}", ignore_errors=True)
                runs[kind].append(measure(kind, work, shard_bytes))
        shutil.rmtree(work / "out_copy", ignore_errors=True)
        for kind, measured in runs.items():
            measured.sort(key=lambda r: r["seconds"])
            results[kind] = dict(measured[len(measured) // 2])
            results[kind]["all_seconds"] = [round(r["seconds"], 3) for r in measured]
            results[kind]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in measured)
        verification = verify(work) if args.verify and not args.skip_peft else None
        report(results, base_bytes, shapes, args, verification)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(
    results: dict[str, dict[str, Any]],
    base_bytes: int,
    shapes: dict[str, int],
    args: argparse.Namespace,
    verification: dict[str, Any] | None,
) -> None:
    peft_seconds = results.get("peft", {}).get("seconds")
    head = ("path", "seconds", "process s", "peak RSS MB", "GB/s", "speedup")
    print("\n{:<12} {:>8} {:>9} {:>11} {:>6} {:>8}".format(*head))
    for kind, r in results.items():
        r["gb_per_s"] = base_bytes / 1e9 / r["seconds"]
        speedup = f"{peft_seconds / r['seconds']:.1f}x" if peft_seconds else "-"
        print(
            f"{kind:<12} {r['seconds']:>8.2f} {r['process_seconds']:>9.2f} "
            f"{r['peak_rss_mb']:>11.0f} {r['gb_per_s']:>6.2f} {speedup:>8}"
        )
    for kind, r in results.items():
        if len(r["all_seconds"]) > 1:
            print(f"  {kind} runs: {', '.join(f'{t:.2f}s' for t in r['all_seconds'])}")
        if "phases" in r:
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items())
            print(f"  {kind}: {phases}")
    if verification:
        print(f"  strata vs peft: {verification}")
    line = {
        "bench": "merge",
        "size": "small" if args.small else "full",
        "shapes": shapes,
        "rank": args.rank,
        "base_bytes": base_bytes,
        "machine": machine(),
        "results": results,
        "verify": verification,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
