"""Benchmark adapter validation: the header-only check and the full numeric scan.

Generates a synthetic PEFT LoRA (Llama-7B shapes: q, k, v, o, gate, up and down on as many
layers as it takes to reach ``--size-mb``) plus a matching base manifest in a temp dir,
then times:

* ``header check``: :func:`workers.validate.check_header_compat` (config + headers +
  base manifest; two range reads);
* ``full scan``: :func:`workers.validate.validate_adapter` (everything above plus NaN/Inf,
  per-module Gram norms and the overflow check over every byte);
* ``read only``: reading every byte into a reused 1 MiB buffer (``cat > /dev/null``).

The file is read from the page cache (it was just written), so "read only" is a memory
copy and the scan's time is its computation; S3 range reads are far slower than both.
Timings are medians of ``--repeats`` runs; on a shared machine, rerun when it is idle. Usage::

    .venv/bin/python bench/validate.py                 # ~1 GB, bf16, rank 64
    .venv/bin/python bench/validate.py --size-mb 200 --rank 16 --dtype f32

Prints a table and one JSON line. The generated files are deleted on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from workers.safetensors_io import file_reader
from workers.validate import (
    Limits,
    WeightFile,
    check_header_compat,
    validate_adapter,
)

HIDDEN, INTERMEDIATE, VOCAB = 4096, 11008, 32000
PREFIX = "base_model.model."
DTYPES = {"bf16": (torch.bfloat16, "BF16"), "f32": (torch.float32, "F32")}


def layer_modules(layer: int) -> list[tuple[str, int, int]]:
    """(module, out_features, in_features) for one Llama decoder layer."""
    p = f"model.layers.{layer}"
    return [
        (f"{p}.self_attn.q_proj", HIDDEN, HIDDEN),
        (f"{p}.self_attn.k_proj", HIDDEN, HIDDEN),
        (f"{p}.self_attn.v_proj", HIDDEN, HIDDEN),
        (f"{p}.self_attn.o_proj", HIDDEN, HIDDEN),
        (f"{p}.mlp.gate_proj", INTERMEDIATE, HIDDEN),
        (f"{p}.mlp.up_proj", INTERMEDIATE, HIDDEN),
        (f"{p}.mlp.down_proj", HIDDEN, INTERMEDIATE),
    ]


def plan(size_bytes: int, rank: int, itemsize: int) -> list[tuple[str, int, int]]:
    per_layer = sum((out + ins) * rank * itemsize for _, out, ins in layer_modules(0))
    layers = max(1, round(size_bytes / per_layer))
    return [m for i in range(layers) for m in layer_modules(i)]


def write_adapter(path: Path, modules: list[tuple[str, int, int]], rank: int, dtype: str) -> int:
    """Write the adapter tensor by tensor (bounded memory); return its size."""
    torch_dtype, st_dtype = DTYPES[dtype]
    itemsize = torch.empty(0, dtype=torch_dtype).element_size()
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    cursor = 0
    shapes: list[tuple[str, tuple[int, int]]] = []
    for module, out, ins in modules:
        for name, shape in (
            (f"{PREFIX}{module}.lora_A.weight", (rank, ins)),
            (f"{PREFIX}{module}.lora_B.weight", (out, rank)),
        ):
            nbytes = shape[0] * shape[1] * itemsize
            header[name] = {
                "dtype": st_dtype,
                "shape": list(shape),
                "data_offsets": [cursor, cursor + nbytes],
            }
            shapes.append((name, shape))
            cursor += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    gen = torch.Generator().manual_seed(0)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for _, shape in shapes:
            t = (torch.randn(shape, generator=gen) * 0.02).to(torch_dtype)
            fh.write(t.view(-1).view(torch.uint8).numpy().tobytes())
    return path.stat().st_size


def base_manifest(layers: int) -> dict[str, dict[str, Any]]:
    manifest: dict[str, dict[str, Any]] = {
        "model.embed_tokens.weight": {"dtype": "BF16", "shape": [VOCAB, HIDDEN]},
        "model.norm.weight": {"dtype": "BF16", "shape": [HIDDEN]},
        "lm_head.weight": {"dtype": "BF16", "shape": [VOCAB, HIDDEN]},
    }
    for i in range(layers):
        for module, out, ins in layer_modules(i):
            manifest[f"{module}.weight"] = {"dtype": "BF16", "shape": [out, ins]}
        for norm in ("input_layernorm", "post_attention_layernorm"):
            manifest[f"model.layers.{i}.{norm}.weight"] = {"dtype": "BF16", "shape": [HIDDEN]}
    return manifest


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median and best wall time of ``repeats`` runs, and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), result


def read_all(path: Path, chunk: int = 1024 * 1024) -> int:
    """What ``cat > /dev/null`` does: read every byte into one reused buffer."""
    buf = memoryview(bytearray(chunk))
    total = 0
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            total += n
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="adapter size (default 1024)")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank (default 64)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--tmpdir", default=None, help="where to write the adapter")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads in the scan (Limits.torch_threads)"
    )
    args = parser.parse_args()
    limits = Limits(torch_threads=args.threads)

    itemsize = torch.empty(0, dtype=DTYPES[args.dtype][0]).element_size()
    modules = plan(args.size_mb * 1024 * 1024, args.rank, itemsize)
    layers = len(modules) // 7
    manifest = base_manifest(layers)
    config = json.dumps(
        {
            "peft_type": "LORA",
            "r": args.rank,
            "lora_alpha": 2 * args.rank,
            "target_modules": sorted({m.rsplit(".", 1)[-1] for m, _, _ in modules}),
            "base_model_name_or_path": "bench/llama-7b-shaped",
        }
    ).encode()

    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="strata-bench-") as tmp:
        path = Path(tmp) / "adapter_model.safetensors"
        start = time.perf_counter()
        size = write_adapter(path, modules, args.rank, args.dtype)
        generate_s = time.perf_counter() - start

        with path.open("rb") as fh:
            weights = [WeightFile(path.name, size, file_reader(fh))]

            def header_check() -> Any:
                return check_header_compat(
                    config=config,
                    weights=weights,
                    base_manifest=manifest,
                    base_id="bench/llama-7b-shaped",
                )

            def full_scan() -> Any:
                return validate_adapter(
                    config=config,
                    weights=weights,
                    base_manifest=manifest,
                    base_id="bench/llama-7b-shaped",
                    limits=limits,
                )

            load_before = os.getloadavg()[0]
            read_s, read_best, _ = timed(lambda: read_all(path), args.repeats)
            header_s, header_best, header_report = timed(header_check, max(args.repeats, 5))
            scan_s, scan_best, scan_report = timed(full_scan, args.repeats)

    assert header_report.status == "valid", header_report.findings
    assert scan_report.status == "valid", scan_report.findings
    gb = size / 1e9
    result = {
        "bench": "validate",
        "size_bytes": size,
        "dtype": args.dtype,
        "rank": args.rank,
        "tensors": 2 * len(modules),
        "layers": layers,
        "header_check_ms": round(header_s * 1000, 2),
        "header_check_best_ms": round(header_best * 1000, 2),
        "full_scan_s": round(scan_s, 3),
        "full_scan_gb_s": round(gb / scan_s, 3),
        "full_scan_best_gb_s": round(gb / scan_best, 3),
        "read_only_s": round(read_s, 3),
        "read_only_gb_s": round(gb / read_s, 3),
        "repeats": args.repeats,
        "load_average_before": round(load_before, 2),
        "generate_s": round(generate_s, 1),
        "torch_threads": args.threads or torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "page_cache": "warm",
    }
    print(
        f"adapter: {size / 2**20:.0f} MiB, {args.dtype}, rank {args.rank}, "
        f"{result['tensors']} tensors ({layers} Llama-7B-shaped layers), "
        f"{result['torch_threads']} torch threads in the scan"
    )
    print(f"{'step':<14}{'median':>12}{'throughput':>14}{'best':>12}")
    print(f"{'header check':<14}{header_s * 1000:>10.1f}ms{'':>14}{header_best * 1000:>10.1f}ms")
    print(f"{'full scan':<14}{scan_s:>11.3f}s{gb / scan_s:>9.2f} GB/s{gb / scan_best:>7.2f} GB/s")
    print(f"{'read only':<14}{read_s:>11.3f}s{gb / read_s:>9.2f} GB/s{gb / read_best:>7.2f} GB/s")
    print(f"load average before timing: {load_before:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
