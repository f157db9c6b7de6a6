"""SmolLM2 conversion (GGUF -> safetensors, cached) and a real fine-tune benchmarked.

The converted model is cached under ``$STRATA_MODEL_CACHE`` (default here
``/tmp/strata-model-cache``), so only the first run pays the conversion (~1 minute).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from workers import smollm
from workers.bench import BenchSettings, EvalSet, run_benchmark
from workers.smollm import MARKER, SMOLLM2_NAME, smollm2_dir

TRAIN = [
    "The lighthouse keeper lit the lamp at dusk every evening.",
    "Ships passing the rocky cape looked for the lighthouse beam.",
    "The keeper climbed one hundred and twelve steps to the lamp room.",
    "In winter storms the keeper polished the great glass lens twice.",
    "The lighthouse stood on the cape for two hundred years.",
    "Fishermen trusted the keeper and the steady white light.",
    "Each morning the keeper wrote the weather in a leather logbook.",
    "The lamp room smelled of oil, brass polish and salt.",
    "When fog rolled in, the keeper rang the bell every minute.",
    "The old keeper retired and the light became automatic.",
]
ENGLISH = [
    "The history of the city begins with a small settlement on the banks of the river. "
    "Farmers grew wheat and barley in the fertile fields, and traders brought salt, cloth "
    "and tools from the coast.",
    "Scientists have long been interested in how birds find their way during migration. "
    "Some species travel thousands of kilometres every year, returning to the same nesting "
    "sites with remarkable accuracy.",
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed "
    "that spending on roads and public transport should increase, but they could not decide "
    "how to pay for it.",
]


def _cache_root() -> Path:
    return Path(os.environ.get("STRATA_MODEL_CACHE") or "/tmp/strata-model-cache")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return smollm2_dir(_cache_root())


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Batches here are a few dozen tokens, so per-op threading overhead outweighs the
    parallel work, and on a busy shared machine two spinning OpenMP threads run several
    times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- cache logic (fast)


def _fake_convert(calls: list[Path]) -> Any:
    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    return convert


def test_cache_converts_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(smollm, "convert_gguf", _fake_convert(calls))
    folder = smollm2_dir(tmp_path)
    assert folder == tmp_path / SMOLLM2_NAME
    assert (folder / "config.json").exists()
    assert json.loads((folder / MARKER).read_text())["dtype"] == "float32"
    assert smollm2_dir(tmp_path) == folder
    assert len(calls) == 1
    # Converted in a temporary sibling, renamed into place; nothing else is left behind.
    assert calls[0].parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{SMOLLM2_NAME}.lock", SMOLLM2_NAME]


def test_cache_env_and_stale_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(smollm, "convert_gguf", _fake_convert(calls))
    monkeypatch.setenv("STRATA_MODEL_CACHE", str(tmp_path))
    folder = smollm2_dir()
    assert folder.parent == tmp_path
    marker = json.loads((folder / MARKER).read_text())
    (folder / MARKER).write_text(json.dumps({**marker, "converter_version": 0}))
    assert smollm2_dir() == folder
    assert len(calls) == 2
    assert json.loads((folder / MARKER).read_text()) == marker
    assert not [p for p in tmp_path.iterdir() if ".stale." in p.name]


def test_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gguf: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(smollm, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        smollm2_dir(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f".{SMOLLM2_NAME}.lock"]


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_converted_folder(smollm2: Path) -> None:
    from transformers import AutoTokenizer

    names = {p.name for p in smollm2.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= names
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert tokenizer.decode(tokenizer("Hello, world!")["input_ids"]) == "Hello, world!"


def _train_lora(base: Path, out: Path) -> Path:
    """r=8 LoRA on q_proj/v_proj, 20 AdamW steps (lr 1e-3) over TRAIN in batches of 2."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    peft: Any = get_peft_model(model, config)
    peft.train()
    params = [p for p in peft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for step in range(20):
        start = (2 * step) % len(TRAIN)
        enc = tokenizer(
            TRAIN[start : start + 2],
            padding=True,
            truncation=True,
            max_length=64,
            return_tensors="pt",
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = peft(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft.save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_finetuned_lora_lowers_loss(smollm2: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    adapter = _train_lora(smollm2, tmp_path / "lighthouse-lora")
    trained_s = time.perf_counter() - started
    train_set = EvalSet.from_texts("train", TRAIN)
    english = EvalSet.from_texts("english", ENGLISH)
    settings = BenchSettings(
        max_tokens=1024, max_length=128, batch_size=4, speed_seq_len=32, warmup=1, repeats=2
    )
    result = run_benchmark(
        base_dir=smollm2,
        adapter_dirs=[adapter],
        eval_sets=[train_set, english],
        settings=settings,
        base_id="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)",
    )
    trained, general = result.eval_sets
    # A small instruct model on plain English prose.
    assert 5 < general["base"]["perplexity"] < 80
    # The adapter learned its training text.
    assert trained["adapter"]["loss"] < trained["base"]["loss"] - 0.3
    assert trained["delta"]["loss"] < 0
    speed = result.speed
    assert speed is not None
    assert speed["unmerged"]["tokens_per_second"] > 0
    assert speed["merged"]["tokens_per_second"] > 0
    # Merged and unmerged compute the same logits (float32, up to rounding).
    assert speed["max_abs_output_diff"] < 1e-3
    print(f"training {trained_s:.1f} s, benchmark {result.timings_s['total']:.1f} s")
