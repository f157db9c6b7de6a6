"""Merge compute core: exactness against PEFT's merge_and_unload, streaming output, refusals."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.workers.lora_fixtures import (
    ATTENTION,
    HIDDEN,
    MLP,
    LocalFiles,
    copy_configs,
    index_map,
    make_gpt2,
    make_llama,
    make_lora,
    memory_adapter,
    memory_base,
    minilm_dir,
    peft_merged,
    read_dir,
    ulp_distance,
)
from workers.merge import (
    AdapterFiles,
    BaseModelFiles,
    MergeError,
    MergeResult,
    SourceFile,
    files_to_carry,
    merge_stack,
)
from workers.parity import stack_parity
from workers.safetensors_io import bytes_reader, file_reader, read_header
from workers.safetensors_writer import SafetensorsWriter, TensorSpec, write_safetensors

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def merge_dirs(base: Path, adapters: Sequence[Path], out: Path, **kwargs: Any) -> MergeResult:
    with LocalFiles() as files:
        return merge_stack(
            base=files.base(base), stack=files.adapters(adapters), out_dir=out, **kwargs
        )


def assert_fp32_close(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    """Within 1e-6 relative, measured against each tensor's largest entry (elementwise
    relative error is meaningless where W + delta cancels to ~0)."""
    assert set(ours) <= set(ref)
    for name, tensor in ours.items():
        expected = ref[name].to(tensor.dtype)
        scale = float(expected.abs().max()) or 1.0
        torch.testing.assert_close(tensor, expected, rtol=1e-6, atol=1e-6 * scale, msg=name)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("merge")


@pytest.fixture(scope="module")
def llama(work: Path) -> Path:
    return make_llama(work / "llama")


@pytest.fixture(scope="module")
def stack(work: Path, llama: Path) -> list[Path]:
    """Two adapters overlapping on q_proj, different ranks; the second saved in bf16."""
    return [
        make_lora(llama, work / "a1", seed=1, target_modules=ATTENTION),
        make_lora(
            llama,
            work / "a2",
            seed=2,
            target_modules=[*MLP, "q_proj"],
            r=2,
            lora_alpha=4,
            save_dtype=torch.bfloat16,
        ),
    ]


# ------------------------------------------------------------------ exactness vs PEFT


@pytest.mark.parametrize("shards", [1, 2])
def test_fp32_stack_matches_peft_and_keeps_layout(
    work: Path, stack: list[Path], tmp_path: Path, shards: int
) -> None:
    base = make_llama(work / f"llama_{shards}", shards=shards)
    seen: list[str] = []
    result = merge_dirs(base, stack, tmp_path, on_file=lambda f: seen.append(f.path))

    ours = read_dir(tmp_path)
    reference = peft_merged(base, stack, dtype=torch.float32)
    assert_fp32_close(ours, reference)
    targeted = {n for n in ours if n.endswith(tuple(f"{m}.weight" for m in ATTENTION + MLP))}
    assert set(result.merged_tensors) == targeted
    untouched = read_dir(base)
    for name in set(ours) - targeted:
        assert torch.equal(ours[name], untouched[name]), name

    # Same files, same tensor -> shard assignment, same tensor order in each header.
    base_files = sorted(p.name for p in base.glob("*.safetensors"))
    assert [f.path for f in result.files if f.path.endswith(".safetensors")] == base_files
    assert seen == [f.path for f in result.files]
    assert index_map(tmp_path) == index_map(base)
    assert (shards > 1) == (result.files[-1].path == "model.safetensors.index.json")
    for name in base_files:
        assert _order(tmp_path / name) == _order(base / name)
    for f in result.files:  # hashed while written, and the reference loader agrees
        data = (tmp_path / f.path).read_bytes()
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        if f.path.endswith(".safetensors"):
            assert set(load_file(tmp_path / f.path)) <= set(ours)


def _order(path: Path) -> list[str]:
    with path.open("rb") as fh:
        header = read_header(file_reader(fh), path.stat().st_size)
    return [t.name for t in sorted(header.tensors.values(), key=lambda t: t.begin)]


VARIANTS: dict[str, dict[str, Any]] = {
    "rank_alpha_pattern": {
        "target_modules": ATTENTION + MLP,
        "rank_pattern": {"q_proj": 2, "layers.1.mlp.down_proj": 6},
        "alpha_pattern": {"v_proj": 3, "gate_proj": 16},
    },
    "rslora": {"target_modules": ATTENTION, "r": 8, "lora_alpha": 4, "use_rslora": True},
    "embedding_and_modules_to_save": {
        "target_modules": ["embed_tokens", "q_proj"],
        "modules_to_save": ["lm_head"],
    },
    "lora_bias": {"target_modules": ["q_proj", "down_proj"], "lora_bias": True},
    "trained_biases": {"target_modules": ["q_proj"], "bias": "all"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_match_peft(work: Path, stack: list[Path], tmp_path: Path, variant: str) -> None:
    biased = variant in ("lora_bias", "trained_biases")
    base = make_llama(work / f"llama_{variant}", biases=biased) if biased else work / "llama"
    adapter = make_lora(base, tmp_path / "adapter", seed=3, **VARIANTS[variant])
    # Stacked after a plain adapter so replacements and deltas interleave in order.
    adapters = [adapter] if biased else [stack[0], adapter]
    merge_dirs(base, adapters, tmp_path / "out")
    assert_fp32_close(read_dir(tmp_path / "out"), peft_merged(base, adapters, dtype=torch.float32))


def test_gpt2_conv1d_fan_in_fan_out_matches_peft(tmp_path: Path) -> None:
    # attn.c_proj is square, so only fan_in_fan_out tells its orientation; c_attn and
    # mlp.c_proj are not, and their shapes must agree with it.
    base = make_gpt2(tmp_path / "gpt2")
    adapter = make_lora(
        base, tmp_path / "a", seed=4, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True
    )
    merge_dirs(base, [adapter], tmp_path / "out")
    assert_fp32_close(read_dir(tmp_path / "out"), peft_merged(base, [adapter], dtype=torch.float32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_stack_within_one_ulp(
    work: Path, stack: list[Path], tmp_path: Path, dtype: torch.dtype
) -> None:
    """Ours rounds once: cast(W.float() + sum of fp32 deltas).

    The reference for a stack is PEFT's own merge of the fp32-upcast base (exact for
    16-bit weights), cast back once. PEFT's native 16-bit stack merge rounds after every
    adapter, so where a later delta cancels most of the weight it can be many ULPs of the
    final value away from the correctly rounded sum; comparing to it would test PEFT's
    double rounding, not our arithmetic. For a single adapter PEFT rounds once too (the
    fp32 delta is added in place to the 16-bit weight), and we must agree with it directly.
    """
    base = make_llama(work / f"llama_{dtype}", dtype=dtype)
    merge_dirs(base, stack, tmp_path / "stack")
    ours = read_dir(tmp_path / "stack")
    reference = peft_merged(base, stack, dtype=torch.float32)
    for name, tensor in ours.items():
        assert tensor.dtype == dtype
        assert int(ulp_distance(tensor, reference[name].to(dtype)).max()) <= 1, name

    merge_dirs(base, stack[:1], tmp_path / "single")
    ours = read_dir(tmp_path / "single")
    native = peft_merged(base, stack[:1], dtype=dtype)
    for name, tensor in ours.items():
        assert int(ulp_distance(tensor, native[name]).max()) <= 1, name


def test_minilm_query_value_matches_peft_and_parity(tmp_path: Path) -> None:
    base = minilm_dir()
    adapter = make_lora(
        base,
        tmp_path / "a",
        seed=5,
        target_modules=["query", "value"],
        r=8,
        lora_alpha=16,
        auto_model="AutoModel",
    )
    out = tmp_path / "merged"
    result = merge_dirs(base, [adapter], out)
    assert len(result.merged_tensors) == 12  # 6 layers x (query, value)
    ours = read_dir(out)
    reference = peft_merged(base, [adapter], dtype=torch.float32, auto_model="AutoModel")
    assert_fp32_close({k: v for k, v in ours.items() if k in reference}, reference)
    assert torch.equal(ours["embeddings.position_ids"], read_dir(base)["embeddings.position_ids"])

    copy_configs(base, out)
    report = stack_parity(base, [adapter], out)
    assert report.output == "last_hidden_state"
    assert report.max_abs_diff < 1e-4 * report.max_abs_reference
    unmerged = stack_parity(base, [adapter], base)  # the check notices a missing adapter
    assert unmerged.max_abs_diff > 1e-2 * unmerged.max_abs_reference


def test_parity_of_llama_stack(llama: Path, stack: list[Path], tmp_path: Path) -> None:
    merge_dirs(llama, stack, tmp_path / "merged")
    copy_configs(llama, tmp_path / "merged")
    report = stack_parity(llama, stack, tmp_path / "merged")
    assert report.output == "logits"
    assert report.tokens == 32
    assert report.max_abs_diff < 1e-5 * report.max_abs_reference
    assert report.mean_abs_diff <= report.max_abs_diff

    merge_dirs(llama, stack[:1], tmp_path / "first")
    copy_configs(llama, tmp_path / "first")
    partial = stack_parity(llama, stack, tmp_path / "first")
    assert partial.max_abs_diff > 1e-3 * partial.max_abs_reference


def test_dtype_override_recasts_every_float_tensor(
    llama: Path, stack: list[Path], tmp_path: Path
) -> None:
    merge_dirs(llama, stack, tmp_path / "fp32")
    merge_dirs(llama, stack, tmp_path / "bf16", dtype="bfloat16")
    full, half = read_dir(tmp_path / "fp32"), read_dir(tmp_path / "bf16")
    for name, tensor in half.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, full[name].to(torch.bfloat16)), name


def test_carried_files() -> None:
    names = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer.model",
        "1_Pooling/config.json",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "README.md",
        ".gitattributes",
        "onnx/model.onnx",
    ]
    assert files_to_carry(names) == [
        "1_Pooling/config.json",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer.model",
    ]


# ------------------------------------------------------------------ refusals (synthetic)

P = "base_model.model.layers.0.q_proj"
A, B = f"{P}.lora_A.weight", f"{P}.lora_B.weight"
GGUF = b"GGUF" + bytes(60)
NOT_SAFETENSORS = BaseModelFiles([SourceFile("model.safetensors", 64, bytes_reader(bytes(64)))])
BNB = {
    "layers.0.q_proj.weight": torch.zeros(32, 1, dtype=torch.uint8),
    "layers.0.q_proj.weight.absmax": torch.ones(1),
}
INT8 = {"layers.0.q_proj.weight": torch.zeros(HIDDEN, HIDDEN, dtype=torch.int8)}
FACTORS = {A: torch.randn(2, HIDDEN), B: torch.randn(HIDDEN, 2)}
REFUSALS: dict[str, tuple[str, BaseModelFiles, list[AdapterFiles]]] = {
    "dora": ("dora_unsupported", memory_base(), [memory_adapter({"use_dora": True})]),
    "dora_tensor": (
        "dora_unsupported",
        memory_base(),
        [memory_adapter(tensors={**FACTORS, f"{P}.lora_magnitude_vector": torch.ones(HIDDEN)})],
    ),
    "pissa": (
        "base_modifying_init",
        memory_base(),
        [memory_adapter({"init_lora_weights": "pissa"})],
    ),
    "alora": (
        "unsupported_lora_variant",
        memory_base(),
        [memory_adapter({"alora_invocation_tokens": [1, 2]})],
    ),
    "bnb_base": ("quantized_base", memory_base(BNB), [memory_adapter()]),
    "quantization_config": (
        "quantized_base",
        memory_base(config={"quantization_config": {"quant_method": "gptq"}}),
        [memory_adapter()],
    ),
    "int8_target": ("quantized_base", memory_base(INT8), [memory_adapter()]),
    "gguf": (
        "quantized_base",
        BaseModelFiles([SourceFile("model", 64, bytes_reader(GGUF))]),
        [memory_adapter()],
    ),
    "other_base": (
        "shape_mismatch",
        memory_base({"layers.0.q_proj.weight": torch.randn(16, 16)}),
        [memory_adapter()],
    ),
    "missing_module": (
        "module_not_in_base",
        memory_base({"layers.0.k_proj.weight": torch.randn(HIDDEN, HIDDEN)}),
        [memory_adapter()],
    ),
    "rank_mismatch": ("rank_mismatch", memory_base(), [memory_adapter({"r": 4})]),
    "incomplete": ("incomplete_module", memory_base(), [memory_adapter(tensors={A: FACTORS[A]})]),
    "unexpected": (
        "unexpected_tensor",
        memory_base(),
        [
            memory_adapter(
                tensors={**FACTORS, "base_model.model.layers.0.up_proj.weight": torch.ones(3)}
            )
        ],
    ),
    "conv": (
        "unsupported_layer",
        memory_base(),
        [
            memory_adapter(
                tensors={A: torch.randn(2, HIDDEN, 1, 1), B: torch.randn(HIDDEN, 2, 1, 1)}
            )
        ],
    ),
    "not_lora": ("unsupported_peft_type", memory_base(), [memory_adapter({"peft_type": "IA3"})]),
    "empty_stack": ("empty_stack", memory_base(), []),
    "bad_base_file": ("invalid_base", NOT_SAFETENSORS, [memory_adapter()]),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals(case: str, tmp_path: Path) -> None:
    code, base, adapters = REFUSALS[case]
    with pytest.raises(MergeError) as info:
        merge_stack(base=base, stack=adapters, out_dir=tmp_path)
    assert info.value.code == code
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_bad_dtype_and_bad_index(tmp_path: Path) -> None:
    with pytest.raises(MergeError) as info:
        merge_stack(base=memory_base(), stack=[memory_adapter()], out_dir=tmp_path, dtype="int4")
    assert info.value.code == "unsupported_dtype"
    index = json.dumps({"weight_map": {"layers.0.q_proj.weight": "model.safetensors"}}).encode()
    base = memory_base()
    base = BaseModelFiles(base.shards, index_json=index)
    with pytest.raises(MergeError) as info:
        merge_stack(base=base, stack=[memory_adapter()], out_dir=tmp_path)
    assert info.value.code == "invalid_base"


def test_reader_failures_propagate_and_leave_no_partial_file(tmp_path: Path) -> None:
    base = memory_base()
    inner = base.shards[0]
    header_end = read_header(inner.read, inner.size).data_start

    def flaky(offset: int, length: int) -> bytes:
        if offset >= header_end:
            raise ConnectionError("S3 went away")
        return inner.read(offset, length)

    broken = BaseModelFiles([SourceFile(inner.name, inner.size, flaky)])
    with pytest.raises(ConnectionError):
        merge_stack(base=broken, stack=[memory_adapter()], out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_failures_propagate_and_leave_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0

    def full_disk(self: SafetensorsWriter, data: bytes) -> None:
        nonlocal writes
        writes += 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SafetensorsWriter, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        merge_stack(base=memory_base(), stack=[memory_adapter()], out_dir=tmp_path)
    assert writes == 1  # the background writer stops at the first failure
    assert list(tmp_path.iterdir()) == []


def test_synthetic_merge_arithmetic(tmp_path: Path) -> None:
    """Without PEFT: W + s1 B1 A1 + s2 B2 A2, rsLoRA scale on the second."""
    base = memory_base()
    a = [memory_adapter(), memory_adapter({"use_rslora": True, "lora_alpha": 3})]
    merge_stack(base=base, stack=a, out_dir=tmp_path)
    out = load_file(tmp_path / "model.safetensors")
    w = load_file_bytes(base)["layers.0.q_proj.weight"]
    expected = w.clone()
    for adapter, scale in zip(a, (4 / 2, 3 / 2**0.5), strict=True):
        factors = load_file_bytesmemory_adapter(adapter)
        expected += scale * factors[f"{P}.lora_B.weight"] @ factors[f"{P}.lora_A.weight"]
    torch.testing.assert_close(out["layers.0.q_proj.weight"], expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(out["embed.weight"], load_file_bytes(base)["embed.weight"])


def load_file_bytes(base: BaseModelFiles) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    shard = base.shards[0]
    return load(shard.read(0, shard.size))


def load_file_bytesmemory_adapter(adapter: AdapterFiles) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(adapter.weights.read(0, adapter.weights.size))


# ------------------------------------------------------------------ writer


def test_writer_roundtrip_and_size_checks(tmp_path: Path) -> None:
    tensors = {
        "b": torch.randn(3, 5, dtype=torch.bfloat16),
        "a": torch.arange(7, dtype=torch.int64),
        "e": torch.empty(0, 4),
    }
    out = write_safetensors(tmp_path / "x.safetensors", "x.safetensors", tensors, {"k": "v"})
    data = (tmp_path / "x.safetensors").read_bytes()
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert out.size == len(data)
    loaded = load_file(tmp_path / "x.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    header = read_header(bytes_reader(data), len(data))
    assert header.metadata == {"k": "v"}
    assert header.data_start % 8 == 0

    specs = [TensorSpec("t", "F32", (4,))]
    short = SafetensorsWriter(tmp_path / "s.safetensors", "s", specs)
    short.write(b"\0" * 8)
    with pytest.raises(ValueError, match="declares"):
        short.finish()
    long = SafetensorsWriter(tmp_path / "l.safetensors", "l", specs)
    with pytest.raises(ValueError, match="more data"):
        long.write(b"\0" * 20)
    long.abort()
    assert not (tmp_path / "l.safetensors").exists()
