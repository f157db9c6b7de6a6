"""Benchmark compute core: eval set parsing, metrics on tiny models, speed, errors."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.workers.lora_fixtures import (
    LocalFiles,
    copy_configs,
    make_llama,
    make_lora,
    minilm_dir,
    peft_merged,
)
from workers import bench
from workers.bench import (
    BENCH_VERSION,
    BenchmarkError,
    BenchSettings,
    EvalSet,
    EvalSetError,
    EvalSetLimits,
    load_eval_set,
    parse_eval_set,
    run_benchmark,
)
from workers.bench_quality import TextPair, rankdata, spearman
from workers.merge import merge_stack

FAST = BenchSettings(
    max_tokens=400, max_length=64, batch_size=3, speed_seq_len=16, warmup=1, repeats=2
)
NO_SPEED = BenchSettings(max_tokens=400, max_length=64, batch_size=3, speed=False)
TEXTS = [
    "the cat sat on the mat.",
    "a quick brown fox jumps over the lazy dog!",
    "rivers run to the sea, and the sea is never full.",
    "is it raining? no, it is sunny today.",
    "one, two, three - four five six seven eight nine ten.",
    "hello world",
    "x",  # one token: predicts nothing, so it is skipped
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: per-op threading overhead outweighs the parallel work, and on a busy
    shared machine two spinning OpenMP threads run several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_char_tokenizer(path: Path) -> None:
    """A character-level tokenizer that fits TINY_LLAMA's 96-token vocabulary."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyz0123456789 .,'!?-"
    vocab = {"[PAD]": 0, "[UNK]": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(path)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-llama")
    base = make_llama(root / "base")
    save_char_tokenizer(base)
    return {
        "base": base,
        "a": make_lora(base, root / "a", seed=1, target_modules=["q_proj", "v_proj"]),
        "b": make_lora(base, root / "b", seed=2, target_modules=["o_proj", "up_proj"], r=2),
        "zero": make_lora(base, root / "zero", seed=3, target_modules=["q_proj"], std=0.0),
    }


@pytest.fixture(scope="module")
def english() -> EvalSet:
    return EvalSet.from_texts("english", TEXTS)


def direct_loss(model: Any, tokenizer: Any, texts: list[str]) -> float:
    """Token-weighted mean of HF's own per-sequence loss, one unpadded sequence at a time."""
    total, count = 0.0, 0
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        if ids.shape[1] < 2:
            continue
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss
        total += float(loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    return total / count


def llama_from_state(base: Path, state: dict[str, torch.Tensor]) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- eval sets


def test_jsonl_texts_and_pairs() -> None:
    data = (
        b'{"text": "first"}\n\n'
        b'{"text": "a", "text_pair": "b", "score": 4.5}\n'
        b'{"text": "c", "text_pair": "d", "score": 1, "extra": true}\n'
    )
    es = parse_eval_set("set.jsonl", data)
    assert es.format == "jsonl"
    assert es.texts == ("first", "a", "c")
    assert es.pairs == (TextPair("a", "b", 4.5), TextPair("c", "d", 1))
    assert es.sha256 == hashlib.sha256(data).hexdigest()


def test_plain_text_lines_and_paragraphs() -> None:
    lines = parse_eval_set("x.txt", b"one line\r\ntwo line\n  \n")
    assert lines.texts == ("one line", "two line")
    assert lines.format == "text"
    paragraphs = parse_eval_set("x.txt", b"para one\nstill one\n\n\npara two\n")
    assert paragraphs.texts == ("para one\nstill one", "para two")
    # No extension: sniffed from the first non-blank line; a UTF-8 BOM is ignored.
    assert parse_eval_set("data", b'\xef\xbb\xbf\n{"text": "j"}\n').format == "jsonl"
    assert parse_eval_set("data", b"plain {not json}\n").texts == ("plain {not json}",)
    assert parse_eval_set("x.txt", b'{"text": "raw"}', format="text").texts == ('{"text": "raw"}',)


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("x.jsonl", b'{"text": "a"}\n{"text": ', "invalid_json"),
        ("x.jsonl", b'["text"]', "invalid_record"),
        ("x.jsonl", b'{"text": 3}', "invalid_record"),
        ("x.jsonl", b'{"prompt": "a"}', "missing_text"),
        ("x.jsonl", b'{"text": "  "}', "empty_text"),
        ("x.jsonl", b'{"text": "a", "text_pair": "b"}', "invalid_pair"),
        ("x.jsonl", b'{"text": "a", "score": 1}', "invalid_pair"),
        ("x.jsonl", b'{"text": "a", "text_pair": 2, "score": 1}', "invalid_pair"),
        ("x.jsonl", b'{"text": "a", "text_pair": "b", "score": "high"}', "invalid_score"),
        ("x.jsonl", b'{"text": "a", "text_pair": "b", "score": true}', "invalid_score"),
        ("x.jsonl", b'{"text": "a", "text_pair": "b", "score": NaN}', "invalid_score"),
        ("x.txt", b"\xff\xfe bad", "not_utf8"),
        ("x.txt", b"a\x00b", "not_utf8"),
        ("x.txt", b"\n \n", "empty"),
        ("x.jsonl", b"", "empty"),
    ],
)
def test_eval_set_errors_have_codes(name: str, data: bytes, code: str) -> None:
    with pytest.raises(EvalSetError) as info:
        parse_eval_set(name, data)
    assert info.value.code == code
    assert str(info.value).startswith(f"[{code}] ")


def test_eval_set_limits(tmp_path: Path) -> None:
    limits = EvalSetLimits(max_bytes=64, max_records=2, max_text_chars=10)
    with pytest.raises(EvalSetError, match="limit 64") as info:
        parse_eval_set("x.txt", b"a\n" * 40, limits=limits)
    assert info.value.code == "too_large"
    for name, data in [("x.txt", b"a\nb\nc\n"), ("x.jsonl", b'{"text":"a"}\n' * 3)]:
        with pytest.raises(EvalSetError) as info:
            parse_eval_set(name, data, limits=limits)
        assert info.value.code == "too_many_records"
    with pytest.raises(EvalSetError) as info:
        parse_eval_set("x.txt", b"a" * 11, limits=limits)
    assert info.value.code == "text_too_long"
    # load_eval_set reads at most max_bytes + 1 bytes of a huge file.
    big = tmp_path / "big.txt"
    big.write_bytes(b"word " * 100_000)
    with pytest.raises(EvalSetError) as info:
        load_eval_set(big, limits=limits)
    assert info.value.code == "too_large"
    small = tmp_path / "ok.txt"
    small.write_bytes(b"hi\n")
    assert load_eval_set(small).texts == ("hi",)


# --------------------------------------------------------------------------- spearman


def test_spearman_known_rankings() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Monotone but not linear: Spearman only sees the ranks.
    assert spearman([1, 2, 3, 4, 5], [1, 8, 27, 64, 1000]) == pytest.approx(1.0)
    # Hand-computed: ranks (1,2,3,4,5) vs (2,1,4,3,5): 1 - 6*4/(5*24) = 0.8.
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    assert spearman([1, 2], [3, 3]) is None
    assert spearman([1], [1]) is None


def test_rankdata_averages_ties() -> None:
    np.testing.assert_array_equal(rankdata(np.array([10, 20, 20, 5, 20])), [2, 4, 4, 1, 4])
    # Ties: Pearson of the average ranks (1, 2.5, 2.5, 4) and (1, 2, 3, 4).
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4.0])
    expected = float(np.corrcoef(ra, rb)[0, 1])
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)


# --------------------------------------------------------------------------- causal LMs


def test_perplexity_matches_direct_forward(llama: dict[str, Path], english: EvalSet) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = run_benchmark(
        base_dir=llama["base"], adapter_dirs=[llama["a"]], eval_sets=[english], settings=FAST
    )
    (entry,) = result.eval_sets
    assert entry["metric"] == "perplexity"
    tokenizer = AutoTokenizer.from_pretrained(llama["base"])
    base = AutoModelForCausalLM.from_pretrained(llama["base"], dtype=torch.float32).eval()
    expected_base = direct_loss(base, tokenizer, TEXTS)
    tuned = llama_from_state(
        llama["base"], peft_merged(llama["base"], [llama["a"]], dtype=torch.float32)
    )
    expected_tuned = direct_loss(tuned, tokenizer, TEXTS)

    assert entry["base"]["loss"] == pytest.approx(expected_base, rel=1e-5)
    assert entry["adapter"]["loss"] == pytest.approx(expected_tuned, rel=1e-5)
    assert entry["base"]["perplexity"] == pytest.approx(math.exp(entry["base"]["loss"]))
    assert entry["delta"]["loss"] == pytest.approx(expected_tuned - expected_base, abs=1e-5)
    assert abs(entry["delta"]["loss"]) > 1e-4  # the adapter does something
    # Every text but the one-token one; the first token of each sequence is not predicted.
    tokens = [len(t) for t in TEXTS[:-1]]
    assert entry["base"]["input_tokens"] == sum(tokens)
    assert entry["base"]["predicted_tokens"] == sum(tokens) - len(tokens)
    assert entry["base"]["texts_used"] == len(TEXTS) - 1
    assert entry["base"]["texts_total"] == len(TEXTS)


def test_stack_equals_merged_stack(
    llama: dict[str, Path], english: EvalSet, tmp_path: Path
) -> None:
    """Two adapters, all active and unmerged, score like the merge of the stack."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stack = [llama["a"], llama["b"]]
    merged = tmp_path / "merged"
    merged.mkdir()
    with LocalFiles() as files:
        merge_stack(base=files.base(llama["base"]), stack=files.adapters(stack), out_dir=merged)
    copy_configs(llama["base"], merged)
    result = run_benchmark(
        base_dir=llama["base"],
        adapter_dirs=stack,
        eval_sets=[english],
        settings=FAST,
        merged_dir=merged,
        base_id="tiny/llama@v1",
        adapter_ids=["tiny/a@v1", "tiny/b@v3"],
    )
    tokenizer = AutoTokenizer.from_pretrained(llama["base"])
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    assert result.eval_sets[0]["adapter"]["loss"] == pytest.approx(
        direct_loss(model, tokenizer, TEXTS), rel=1e-5
    )
    speed = result.speed
    assert speed is not None
    assert speed["merged_source"] == "folder"
    assert speed["max_abs_output_diff"] < 1e-4 * max(1.0, speed["max_abs_output"])
    assert result.inputs["base_id"] == "tiny/llama@v1"
    assert result.inputs["adapter_ids"] == ["tiny/a@v1", "tiny/b@v3"]
    assert result.inputs["merged_id"] == "merged"


def test_zero_adapter_changes_nothing(llama: dict[str, Path], english: EvalSet) -> None:
    result = run_benchmark(
        base_dir=llama["base"], adapter_dirs=[llama["zero"]], eval_sets=[english], settings=FAST
    )
    delta = result.eval_sets[0]["delta"]
    assert delta["loss"] == 0.0
    assert delta["perplexity"] == 0.0
    assert delta["perplexity_ratio"] == 1.0
    assert result.speed is not None
    assert result.speed["max_abs_output_diff"] == 0.0


def test_deterministic_and_batch_independent(llama: dict[str, Path], english: EvalSet) -> None:
    def quality(settings: BenchSettings) -> list[dict[str, Any]]:
        return run_benchmark(
            base_dir=llama["base"],
            adapter_dirs=[llama["a"], llama["b"]],
            eval_sets=[english],
            settings=settings,
        ).eval_sets

    first = quality(NO_SPEED)
    assert quality(NO_SPEED) == first
    one_by_one = quality(BenchSettings(max_tokens=400, max_length=64, batch_size=1, speed=False))
    assert one_by_one[0]["adapter"]["loss"] == pytest.approx(first[0]["adapter"]["loss"], rel=1e-5)


def test_token_budget_and_truncation(llama: dict[str, Path], english: EvalSet) -> None:
    settings = BenchSettings(max_tokens=50, max_length=30, batch_size=2, speed=False)
    result = run_benchmark(
        base_dir=llama["base"], adapter_dirs=[llama["a"]], eval_sets=[english], settings=settings
    )
    base = result.eval_sets[0]["base"]
    # 23 tokens, then 30 of 42 (max_length), which would pass the budget: cut to 27.
    assert base["input_tokens"] == 50
    assert base["sequences"] == 2
    assert base["truncated"] == 1
    assert base["texts_used"] == 2
    assert result.settings["max_tokens"] == 50


def test_result_records_inputs_and_environment(llama: dict[str, Path], english: EvalSet) -> None:
    other = parse_eval_set("other.txt", b"the sea.\nthe dog ran.\n")
    result = run_benchmark(
        base_dir=llama["base"],
        adapter_dirs=[llama["a"]],
        eval_sets=[english, other],
        settings=FAST,
        device="cpu",
    )
    data = json.loads(result.to_json())
    assert data["bench_version"] == BENCH_VERSION
    assert data["model_kind"] == "causal_lm"
    assert [e["name"] for e in data["eval_sets"]] == ["english", "other.txt"]
    assert data["inputs"]["eval_sets"][1]["sha256"] == other.sha256
    assert data["inputs"]["base_id"] == "base"
    assert data["inputs"]["adapter_ids"] == ["a"]
    env = data["environment"]
    assert env["device"] == "cpu"
    assert env["torch"] == torch.__version__
    assert env["torch_threads"] >= 1
    assert env["cpu_model"]
    speed = data["speed"]
    for side in ("unmerged", "merged"):
        stats = speed[side]
        assert stats["batch"] == 1
        assert stats["seq_len"] == 16
        assert stats["tokens_per_second"] > 0
        assert stats["latency_min_s"] <= stats["latency_median_s"] <= stats["latency_max_s"]
        assert stats["peak_bytes"] >= 0
        assert stats["memory_method"].startswith("cpu_rss")
    # The unmerged model carries the LoRA factors on top of the base weights.
    assert speed["unmerged"]["weights_bytes"] > speed["merged"]["weights_bytes"]
    assert speed["merged_source"] == "merge_and_unload"
    assert speed["speedup"] > 0
    assert set(data["timings_s"]) >= {"load", "quality_base", "quality_adapter", "total"}


# --------------------------------------------------------------------------- errors


def test_errors(llama: dict[str, Path], english: EvalSet, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(base_dir=llama["base"], adapter_dirs=[], eval_sets=[english])
    assert info.value.code == "no_adapters"

    bare = make_llama(tmp_path / "no-tokenizer")
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(base_dir=bare, adapter_dirs=[llama["a"]], eval_sets=[english])
    assert info.value.code == "missing_tokenizer"


@pytest.mark.parametrize("change", ["rename", "reshape"])
def test_adapter_for_another_base_is_refused(
    llama: dict[str, Path], english: EvalSet, tmp_path: Path, change: str
) -> None:
    """Tensors PEFT cannot place (it only warns about those) or that do not fit."""
    from safetensors.torch import load_file, save_file

    moved = tmp_path / change
    moved.mkdir()
    (moved / "adapter_config.json").write_bytes((llama["a"] / "adapter_config.json").read_bytes())
    tensors = load_file(llama["a"] / "adapter_model.safetensors")
    if change == "rename":
        tensors = {k.replace("layers.1.", "layers.7."): v for k, v in tensors.items()}
    else:  # as if trained on a base with half the hidden size
        tensors = {k: v[:, :32] if "lora_A" in k else v for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, moved / "adapter_model.safetensors")
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(base_dir=llama["base"], adapter_dirs=[moved], eval_sets=[english])
    assert info.value.code == "adapter_mismatch"
    assert ("layers.7." if change == "rename" else "size mismatch") in info.value.message


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_becomes_benchmark_error(
    llama: dict[str, Path],
    english: EvalSet,
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise error("simulated")

    monkeypatch.setattr(bench, "causal_lm_loss", boom)
    with pytest.raises(BenchmarkError) as info:
        run_benchmark(base_dir=llama["base"], adapter_dirs=[llama["a"]], eval_sets=[english])
    assert info.value.code == "out_of_memory"
    assert "quality_base" in info.value.message
    assert isinstance(info.value.__cause__, error)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        BenchSettings(max_tokens=0)
    with pytest.raises(ValueError, match="dtype"):
        BenchSettings(dtype="int8")


# --------------------------------------------------------------------------- encoders

STS = [
    TextPair("A man is playing a guitar.", "A person plays the guitar.", 4.8),
    TextPair("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
    TextPair("The cat sleeps on the sofa.", "A cat is napping on a couch.", 4.0),
    TextPair("A dog runs in the park.", "A child reads a book at home.", 0.4),
    TextPair("Stock markets fell sharply today.", "A chef is baking bread.", 0.1),
    TextPair("Two men are playing football.", "People are playing a sport.", 3.1),
    TextPair("The train arrives at noon.", "The train leaves in the evening.", 2.0),
    TextPair("It is raining heavily.", "The weather is sunny and warm.", 1.0),
]


@pytest.fixture(scope="module")
def minilm_adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-minilm")
    base = minilm_dir()
    kwargs: dict[str, Any] = {"target_modules": ["query", "value"], "auto_model": "AutoModel"}
    return {
        "zero": make_lora(base, root / "zero", seed=1, std=0.0, **kwargs),
        "random": make_lora(base, root / "random", seed=2, std=0.05, **kwargs),
    }


@pytest.fixture(scope="module")
def sts() -> EvalSet:
    return EvalSet.from_texts("sts", [p.text for p in STS], STS)


def test_encoder_zero_adapter_has_no_drift(minilm_adapters: dict[str, Path], sts: EvalSet) -> None:
    result = run_benchmark(
        base_dir=minilm_dir(),
        adapter_dirs=[minilm_adapters["zero"]],
        eval_sets=[sts],
        settings=FAST,
    )
    assert result.model_kind == "encoder"
    (entry,) = result.eval_sets
    assert entry["metric"] == "embedding_drift"
    assert entry["adapter"]["cosine_to_base_mean"] == pytest.approx(1.0, abs=1e-12)
    assert entry["delta"]["embedding_drift"] == pytest.approx(0.0, abs=1e-12)
    assert entry["delta"]["spearman"] == 0.0
    assert entry["base"]["pairs"] == len(STS)
    # A real sentence encoder ranks these pairs roughly like the scores do.
    assert entry["base"]["spearman"] > 0.7
    assert result.speed is not None
    assert result.speed["max_abs_output_diff"] == 0.0


def test_encoder_drift_and_spearman(minilm_adapters: dict[str, Path], sts: EvalSet) -> None:
    from transformers import AutoModel, AutoTokenizer

    result = run_benchmark(
        base_dir=minilm_dir(),
        adapter_dirs=[minilm_adapters["random"]],
        eval_sets=[sts],
        settings=NO_SPEED,
    )
    entry = result.eval_sets[0]
    assert 0.0 < entry["delta"]["embedding_drift"] < 1.0
    assert entry["adapter"]["cosine_to_base_min"] <= entry["adapter"]["cosine_to_base_mean"]

    # Independently: sentence-transformers' mean pooling, one text at a time.
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir(), dtype=torch.float32).eval()

    def embed(text: str) -> torch.Tensor:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        return hidden.mean(0)

    cosines = [
        float(torch.nn.functional.cosine_similarity(embed(p.text), embed(p.text_pair), dim=0))
        for p in STS
    ]
    assert entry["base"]["spearman"] == pytest.approx(spearman(cosines, [p.score for p in STS]))
