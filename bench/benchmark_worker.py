"""Benchmark job cost: one r=8 LoRA (q_proj, v_proj) on SmolLM2-135M with run_benchmark.

Measures what a benchmark job costs on this machine: the wall time of
``workers.bench.run_benchmark`` (load, base and adapter perplexity over the token budget,
unmerged and merged forward passes) and the tokens/second it reports for the unmerged
(PEFT at run time) and merged models. The one-time GGUF -> safetensors conversion of the
base is excluded, and reported on its own when it had to run.

The adapter has random (non-zero) factors: quality numbers only show that it changes the
model; its speed is the same as a trained adapter's. The eval set is built-in English
prose, repeated to fill the token budget (each document is its own sequence, so
repetition does not change the per-token loss).

Usage::

    .venv/bin/python bench/benchmark_worker.py                  # defaults of BenchSettings
    .venv/bin/python bench/benchmark_worker.py --eval-file x.jsonl --repeats 10

Prints a table (progress on stderr) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.bench import (
    BenchSettings,
    EvalSet,
    load_eval_set,
    run_benchmark,
)
from workers.smollm import model_cache_root, smollm2_cached, smollm2_dir

PARAGRAPHS = [
    "The history of the city begins with a small settlement on the banks of the river. "
    "Farmers grew wheat and barley in the fertile fields, and traders brought salt, cloth "
    "and tools from the coast. Over the centuries the village became a market town, and by "
    "the end of the eighteenth century it had a population of more than ten thousand people.",
    "When the railway arrived in 1850, the town changed quickly. New factories were built "
    "near the station, and workers moved in from the surrounding countryside. Many of the old "
    "wooden houses were replaced by rows of brick terraces. The council opened a public "
    "library, a hospital and several schools, paid for by taxes on the growing industries.",
    "Scientists have long been interested in how birds find their way during migration. Some "
    "species travel thousands of kilometres every year, returning to the same nesting sites "
    "with remarkable accuracy. Experiments suggest that birds use several cues at once, "
    "including the position of the sun, the pattern of the stars and the Earth's magnetic "
    "field.",
    "To make a simple tomato sauce, heat two tablespoons of olive oil in a pan over medium "
    "heat. Add a finely chopped onion and cook it slowly until it is soft and golden, which "
    "takes about ten minutes. Stir in two cloves of crushed garlic, then add a tin of chopped "
    "tomatoes, a pinch of salt and a little sugar. Let the sauce simmer for twenty minutes, "
    "stirring from time to time.",
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed "
    "that spending on roads and public transport should increase, but they could not decide "
    "how to pay for it. Some argued for higher property taxes, while others suggested cutting "
    "the number of staff in the planning department. A final vote is expected next month.",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_adapter(base: Path, out: Path, rank: int, seed: int) -> Path:
    """A PEFT LoRA on q_proj/v_proj with small random A and B (B is zero at PEFT init)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"])
    peft: Any = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft.named_parameters():
        if "lora_" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.02
    peft.save_pretrained(out)
    return out


def english_eval_set(repeat: int) -> EvalSet:
    return EvalSet.from_texts("english-prose", PARAGRAPHS * repeat)


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache root")
    parser.add_argument("--eval-file", type=Path, default=None, help="JSONL or text eval set")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--speed-batch", type=int, default=defaults.speed_batch)
    parser.add_argument("--seq-len", type=int, default=defaults.speed_seq_len)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if any)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cache_root = args.cache_dir or model_cache_root()
    converted = not smollm2_cached(cache_root)
    start = time.perf_counter()
    if converted:
        log(f"converting SmolLM2 GGUF into {cache_root} (one time)...")
    base = smollm2_dir(cache_root)
    conversion_s = time.perf_counter() - start if converted else None

    settings = BenchSettings(
        max_tokens=args.max_tokens,
        max_length=args.max_length,
        batch_size=args.batch_size,
        speed_batch=args.speed_batch,
        speed_seq_len=args.seq_len,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    if args.eval_file:
        eval_set = load_eval_set(args.eval_file)
    else:
        # Enough copies that the budget, not the text, ends the run (~69 tokens each).
        eval_set = english_eval_set(repeat=max(1, args.max_tokens // 300 + 1))

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="strata-bench-") as tmp:
        log("creating the adapter...")
        start = time.perf_counter()
        adapter = make_adapter(base, Path(tmp) / "lora-r8-qv", args.rank, seed=0)
        adapter_s = time.perf_counter() - start
        log("benchmarking...")
        start = time.perf_counter()
        result = run_benchmark(
            base_dir=base,
            adapter_dirs=[adapter],
            eval_sets=[eval_set],
            device=args.device,
            settings=settings,
            base_id="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to f32)",
            adapter_ids=[f"random-lora-r{args.rank}-q_proj-v_proj"],
        )
        bench_s = time.perf_counter() - start
    load_after = os.getloadavg()[0]

    quality = result.eval_sets[0]
    speed = result.speed or {}
    t = result.timings_s
    env = result.environment
    rows = [
        ("machine", f"{env['cpu_model']}, {env['cpu_count']} CPUs, {env['torch_threads']} threads"),
        ("device", env["device"] + (f" ({env['gpu_name']})" if "gpu_name" in env else "")),
        ("load average before/after", f"{load_before:.2f} / {load_after:.2f}"),
        ("conversion (one time)", f"{conversion_s:.1f} s" if conversion_s else "cached"),
        ("adapter creation (excluded)", f"{adapter_s:.1f} s"),
        ("benchmark wall time", f"{bench_s:.1f} s"),
        ("  load base + tokenizer", f"{t.get('load', 0):.1f} s"),
        (
            "  base perplexity",
            f"{t.get('quality_base', 0):.1f} s ({quality['base']['predicted_tokens']} tokens)",
        ),
        ("  apply stack (PEFT)", f"{t.get('apply_stack', 0):.2f} s"),
        ("  adapter perplexity", f"{t.get('quality_adapter', 0):.1f} s"),
        ("  speed, unmerged", f"{t.get('speed_unmerged', 0):.1f} s"),
        ("  merge_and_unload", f"{t.get('merge', 0):.2f} s"),
        ("  speed, merged", f"{t.get('speed_merged', 0):.1f} s"),
        (
            "perplexity base / adapter",
            f"{quality['base']['perplexity']:.2f} / {quality['adapter']['perplexity']:.2f}",
        ),
    ]
    for side in ("unmerged", "merged"):
        s = speed.get(side)
        if s:
            rows.append(
                (
                    f"{side} ({s['batch']}x{s['seq_len']} tokens)",
                    f"{s['tokens_per_second']:.0f} tok/s, median {s['latency_median_s'] * 1e3:.0f}"
                    f" ms, peak +{mib(s['peak_bytes'])}, weights {mib(s['weights_bytes'])}",
                )
            )
    if speed:
        rows.append(("merged speedup", f"{speed['speedup']:.2f}x"))
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")

    summary = {
        "benchmark": "benchmark_worker",
        "conversion_s": conversion_s,
        "adapter_creation_s": adapter_s,
        "benchmark_s": bench_s,
        "load_average": [load_before, load_after],
        "tokens_per_second": {
            side: speed[side]["tokens_per_second"]
            for side in ("unmerged", "merged")
            if side in speed
        },
        "speedup": speed.get("speedup"),
        "perplexity": {
            "base": quality["base"]["perplexity"],
            "adapter": quality["adapter"]["perplexity"],
        },
        "result": json.loads(result.to_json()),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
