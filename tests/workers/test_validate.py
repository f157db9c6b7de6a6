"""validate_adapter: valid controls, the numbers it computes, facts and its error contract."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch

from tests.workers.adapters import (
    ATTENTION,
    BASE_ID,
    DTYPE_NAMES,
    MLP,
    config_bytes,
    explicit_delta_norm,
    isclose,
    lora_tensors,
    run,
    safetensors_bytes,
    toy_base_manifest,
    weight_file,
)
from workers.lora import PEFT_PREFIX, base_weight_name
from workers.safetensors_io import SafetensorsError
from workers.validate import (
    BaseIndex,
    Limits,
    WeightFile,
    check_header_compat,
    regex_problem,
    validate_adapter,
)

ALL = ATTENTION + MLP
Q0 = "model.layers.0.self_attn.q_proj"


def errors(report: Any) -> list[str]:
    return [f.code for f in report.errors]


def stats_of(report: Any, module: str) -> Any:
    return next(s for s in report.module_stats if s.module == module)


# -- valid controls ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_plain_attention_adapter_is_valid(dtype: torch.dtype) -> None:
    report = run(lora_tensors(toy_base_manifest(), dtype=dtype))
    assert report.status == "valid", report.findings
    assert report.errors == []
    assert report.facts["dtypes"] == [DTYPE_NAMES[dtype]]
    assert report.facts["numeric_scan"] is True
    assert len(report.module_stats) == 2 * 2


def test_non_square_mlp_modules_with_a_rank_pattern_are_valid() -> None:
    tensors = lora_tensors(toy_base_manifest(), targets=ALL, rank_pattern={"down_proj": 8})
    config = config_bytes(target_modules=list(ALL), rank_pattern={"down_proj": 8})
    report = run(tensors, config=config)
    assert report.status == "valid", report.findings
    assert report.facts["ranks"] == [4, 8]
    assert report.facts["max_rank"] == 8
    down = stats_of(report, "model.layers.1.mlp.down_proj")
    assert (down.rank, down.scale) == (8, 1.0)


def test_a_header_in_another_order_than_the_data_is_valid() -> None:
    tensors = lora_tensors(toy_base_manifest(), targets=ALL)
    data = safetensors_bytes(tensors, data_order=sorted(tensors, reverse=True))
    report = run(data, config=config_bytes(target_modules=list(ALL)))
    assert report.status == "valid", report.findings
    reference = run(tensors, config=config_bytes(target_modules=list(ALL)))
    assert [s.to_json() for s in report.module_stats] == [
        s.to_json() for s in reference.module_stats
    ]


def test_an_all_zero_lora_b_is_valid_with_a_warning() -> None:
    report = run(lora_tensors(toy_base_manifest(), zero_b=True))
    assert report.status == "valid"
    assert "all_zero_adapter" in {f.code for f in report.warnings}
    assert all(s.zero and s.delta_norm == 0.0 for s in report.module_stats)


def test_a_partly_zero_adapter_gets_no_all_zero_warning() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}{Q0}.lora_B.weight"].zero_()
    report = run(tensors)
    assert "all_zero_adapter" not in report.codes()
    assert report.facts["zero_modules"] == 1


def test_adapter_keys_with_a_prefix_the_checkpoint_lacks_are_resolved() -> None:
    # A BertForSequenceClassification adapter says ``bert.encoder...`` while a BertModel
    # checkpoint says ``encoder...``; lora.base_weight_name strips the extra prefix.
    manifest = toy_base_manifest()
    tensors = {
        k.replace(f"{PEFT_PREFIX}model.", f"{PEFT_PREFIX}wrapper.model."): v
        for k, v in lora_tensors(manifest).items()
    }
    assert run(tensors).status == "valid"


def test_without_a_base_manifest_it_runs_the_checks_that_need_none() -> None:
    tensors = lora_tensors(toy_base_manifest())
    report = validate_adapter(
        config=config_bytes(),
        weights=[weight_file(safetensors_bytes(tensors))],
        base_manifest=None,
        base_id=None,
    )
    assert report.status == "valid", report.findings
    assert report.facts["base_checked"] is False
    assert report.facts["base_model_name_check"] == "no_declared_base"
    assert all(s.delta_norm is not None for s in report.module_stats)
    tensors.pop(f"{PEFT_PREFIX}{Q0}.lora_B.weight")
    broken = validate_adapter(
        config=config_bytes(),
        weights=[weight_file(safetensors_bytes(tensors))],
        base_manifest=None,
        base_id=None,
    )
    assert errors(broken) == ["missing_lora_half"]


def test_fan_in_fan_out_adapters_match_a_transposed_base() -> None:
    # GPT-2 Conv1D stores weights as [in, out]; the LoRA halves stay [r, in] and [out, r].
    manifest = {"transformer.h.0.attn.c_attn.weight": {"dtype": "F32", "shape": [16, 48]}}
    tensors = {
        f"{PEFT_PREFIX}transformer.h.0.attn.c_attn.lora_A.weight": torch.randn(4, 16),
        f"{PEFT_PREFIX}transformer.h.0.attn.c_attn.lora_B.weight": torch.randn(48, 4),
    }
    config = config_bytes(target_modules=["c_attn"], fan_in_fan_out=True)
    assert run(tensors, config=config, base=manifest).status == "valid"
    plain = run(tensors, config=config_bytes(target_modules=["c_attn"]), base=manifest)
    assert errors(plain) == ["shape_mismatch"]


def test_embedding_lora_uses_the_embedding_layout_and_is_flagged_for_serving() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_A"] = torch.randn(4, 100)
    tensors[f"{PEFT_PREFIX}model.embed_tokens.lora_embedding_B"] = torch.randn(16, 4)
    config = config_bytes(target_modules=["q_proj", "v_proj", "embed_tokens"])
    report = run(tensors, config=config)
    assert report.status == "valid", report.findings
    assert report.facts["lora_on_embedding"] is True
    assert "embedding_lora" in report.codes()


def test_modules_to_save_are_accepted_and_reported_as_a_serving_limit() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}lm_head.weight"] = torch.randn(100, 16)
    report = run(tensors, config=config_bytes(modules_to_save=["lm_head"]))
    assert report.status == "valid", report.findings
    assert report.facts["saved_tensor_count"] == 1
    assert "modules_to_save_present" in {f.code for f in report.warnings}


def test_a_new_task_head_in_modules_to_save_is_a_warning() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}score.weight"] = torch.randn(3, 16)
    report = run(tensors, config=config_bytes(modules_to_save=["score"]))
    assert report.status == "valid"
    assert "saved_module_not_in_base" in {f.code for f in report.warnings}


def test_lora_on_a_tied_lm_head_finds_the_input_embedding() -> None:
    manifest = toy_base_manifest()
    del manifest["lm_head.weight"]  # tied embeddings: the checkpoint stores no lm_head
    tensors = lora_tensors(toy_base_manifest(), targets=["q_proj", "v_proj", "lm_head"])
    report = run(
        tensors, base=manifest, config=config_bytes(target_modules=["q_proj", "v_proj", "lm_head"])
    )
    assert report.status == "valid", report.findings
    assert report.facts["lora_on_lm_head"] is True
    assert "lm_head_lora" in {f.code for f in report.warnings}


def test_a_lone_dora_magnitude_is_a_missing_half() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}model.layers.0.self_attn.k_proj.lora_magnitude_vector"] = torch.ones(16)
    report = run(tensors, config=config_bytes(use_dora=True))
    halves = [f for f in report.errors if f.code == "missing_lora_half"]
    assert len(halves) == 1
    assert "has lora_magnitude_vector but no lora_A or lora_B" in halves[0].message


def test_trained_biases_are_accepted_when_the_config_says_so() -> None:
    manifest = toy_base_manifest()
    manifest[f"{Q0}.bias"] = {"dtype": "BF16", "shape": [16]}
    tensors = lora_tensors(manifest)
    tensors[f"{PEFT_PREFIX}{Q0}.bias"] = torch.randn(16)
    assert run(tensors, base=manifest, config=config_bytes(bias="lora_only")).status == "valid"
    refused = run(tensors, base=manifest)
    assert errors(refused) == ["base_weight_smuggled"]


def test_dora_is_valid_with_a_merge_warning() -> None:
    tensors = lora_tensors(toy_base_manifest())
    for module in (Q0, "model.layers.0.self_attn.v_proj"):
        tensors[f"{PEFT_PREFIX}{module}.lora_magnitude_vector"] = torch.rand(16)
    for module in ("model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"):
        tensors[f"{PEFT_PREFIX}{module}.lora_magnitude_vector"] = torch.rand(16)
    report = run(tensors, config=config_bytes(use_dora=True))
    assert report.status == "valid", report.findings
    assert "dora_merge_unsupported" in {f.code for f in report.warnings}
    assert report.facts["use_dora"] is True


def test_a_regex_target_modules_like_peft_is_valid() -> None:
    config = config_bytes(target_modules=r".*\.self_attn\.(q_proj|v_proj)")
    assert run(lora_tensors(toy_base_manifest()), config=config).status == "valid"


def test_all_linear_accepts_linear_layers_but_not_the_output_head() -> None:
    config = config_bytes(target_modules="all-linear")
    manifest = toy_base_manifest()
    assert run(lora_tensors(manifest, targets=ALL), config=config).status == "valid"
    with_head = lora_tensors(manifest, targets=["q_proj", "lm_head"])
    assert errors(run(with_head, config=config)) == ["module_not_targeted"]


def test_layers_to_transform_limits_which_layers_may_carry_lora() -> None:
    manifest = toy_base_manifest()
    tensors = {k: v for k, v in lora_tensors(manifest).items() if ".layers.1." in k}
    config = config_bytes(layers_to_transform=[1])
    assert run(tensors, config=config).status == "valid"
    too_many = run(lora_tensors(manifest), config=config)
    assert set(errors(too_many)) == {"module_not_targeted"}


def test_a_shard_split_over_two_files_is_valid() -> None:
    tensors = lora_tensors(toy_base_manifest())
    names = sorted(tensors)
    first = {n: tensors[n] for n in names[::2]}
    second = {n: tensors[n] for n in names[1::2]}
    weights = [
        weight_file(safetensors_bytes(first), "adapter-00001.safetensors"),
        weight_file(safetensors_bytes(second), "adapter-00002.safetensors"),
    ]
    report = run(weights)
    assert report.status == "valid", report.findings
    assert report.facts["file_count"] == 2


# -- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("use_rslora", [False, True])
def test_the_gram_delta_norm_equals_the_explicit_product(
    dtype: torch.dtype, use_rslora: bool
) -> None:
    manifest = toy_base_manifest()
    tensors = lora_tensors(manifest, targets=ALL, dtype=dtype, rank_pattern={"gate_proj": 6})
    config = config_bytes(
        target_modules=list(ALL),
        rank_pattern={"gate_proj": 6},
        alpha_pattern={"up_proj": 3},
        use_rslora=use_rslora,
    )
    report = run(tensors, config=config)
    assert report.status == "valid", report.findings
    for stats in report.module_stats:
        a = tensors[f"{PEFT_PREFIX}{stats.module}.lora_A.weight"]
        b = tensors[f"{PEFT_PREFIX}{stats.module}.lora_B.weight"]
        alpha = 3.0 if stats.module.endswith("up_proj") else 8.0
        r = a.shape[0]
        scale = alpha / math.sqrt(r) if use_rslora else alpha / r
        assert isclose(stats.scale, scale)
        assert isclose(stats.delta_norm, explicit_delta_norm(a, b, scale))
        assert isclose(stats.a_norm, float(a.double().norm()))
        assert isclose(stats.b_max_abs, float(b.abs().max()))


def test_the_norm_survives_cancellation_between_a_and_b() -> None:
    # B·A = 0 exactly although neither half is zero: the Gram trace must cancel to ~0.
    manifest = {"m.weight": {"dtype": "F32", "shape": [2, 2]}}
    tensors = {
        f"{PEFT_PREFIX}m.lora_A.weight": torch.tensor([[1.0, 2.0], [1.0, 2.0]]),
        f"{PEFT_PREFIX}m.lora_B.weight": torch.tensor([[1.0, -1.0], [3.0, -3.0]]),
    }
    config = config_bytes(r=2, lora_alpha=2, target_modules=["m"])
    report = run(tensors, config=config, base=manifest)
    stats = report.module_stats[0]
    assert stats.delta_norm is not None
    assert stats.delta_norm < 1e-6
    assert stats.zero is False


def test_chunked_reads_give_the_same_numbers_as_whole_reads() -> None:
    tensors = lora_tensors(toy_base_manifest(), targets=ALL)
    config = config_bytes(target_modules=list(ALL))
    whole = run(tensors, config=config)
    tiny = run(tensors, config=config, limits=Limits(read_chunk_bytes=100))
    for x, y in zip(whole.module_stats, tiny.module_stats, strict=True):
        assert x.module == y.module
        assert isclose(y.delta_norm, x.delta_norm or 0.0, rel=1e-6)
        assert y.b_max_abs == x.b_max_abs


def test_values_that_overflow_f32_squares_still_get_a_finite_norm() -> None:
    manifest = {"m.weight": {"dtype": "F32", "shape": [3, 2]}}
    a = torch.tensor([[3.0e20, 0.0]])
    b = torch.tensor([[1.0e-20], [0.0], [2.0e-20]])
    tensors = {f"{PEFT_PREFIX}m.lora_A.weight": a, f"{PEFT_PREFIX}m.lora_B.weight": b}
    report = run(
        tensors, config=config_bytes(r=1, lora_alpha=1, target_modules=["m"]), base=manifest
    )
    assert report.status == "valid", report.findings
    assert isclose(report.module_stats[0].delta_norm, explicit_delta_norm(a, b, 1.0))


def test_an_update_that_overflows_an_f16_base_is_an_error() -> None:
    manifest = toy_base_manifest(dtype="F16")
    tensors = lora_tensors(manifest)
    tensors[f"{PEFT_PREFIX}{Q0}.lora_B.weight"] *= 1e7
    report = run(tensors, base=manifest)
    assert errors(report) == ["delta_overflows_base_dtype"]
    assert report.errors[0].module == Q0
    # The same adapter fits a BF16 base.
    assert run(tensors, base=toy_base_manifest(dtype="BF16")).status == "valid"


def test_the_cheap_overflow_bound_is_confirmed_exactly_before_failing() -> None:
    # ||A||·||B|| is huge but B's rows are orthogonal to A's columns' support, so every
    # entry of B·A stays small: the bound fires, the exact check clears it.
    manifest = {"m.weight": {"dtype": "F16", "shape": [2, 2]}}
    a = torch.tensor([[1000.0, 0.0], [0.0, 0.001]])
    b = torch.tensor([[0.001, 0.0], [0.0, 1000.0]])
    tensors = {f"{PEFT_PREFIX}m.lora_A.weight": a, f"{PEFT_PREFIX}m.lora_B.weight": b}
    config = config_bytes(r=2, lora_alpha=200, target_modules=["m"])
    report = run(tensors, config=config, base=manifest)
    stats = report.module_stats[0]
    assert (stats.a_norm or 0) * (stats.b_norm or 0) * 100 > 65504  # the bound fires
    assert report.status == "valid", report.findings


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nan_and_inf_anywhere_are_errors(value: float, dtype: torch.dtype) -> None:
    tensors = lora_tensors(toy_base_manifest(), dtype=dtype)
    tensors[f"{PEFT_PREFIX}{Q0}.lora_A.weight"][1, 3] = value
    report = run(tensors)
    assert errors(report) == ["non_finite_values"]
    assert report.errors[0].tensor == f"{PEFT_PREFIX}{Q0}.lora_A.weight"
    json.dumps(report.to_json(), allow_nan=False)


# -- facts, normalized config, JSON -----------------------------------------------------


def test_the_report_records_serving_facts() -> None:
    tensors = lora_tensors(toy_base_manifest(), r=32, dtype=torch.bfloat16)
    report = run(tensors, config=config_bytes(r=32, lora_alpha=16))
    facts = report.facts
    assert facts["max_rank"] == 32
    assert facts["vllm_default_max_lora_rank"] == 16
    assert facts["fits_vllm_default_rank"] is False
    assert "rank_above_vllm_default" in report.codes()
    assert facts["targeted_module_names"] == ["q_proj", "v_proj"]
    assert facts["target_modules"] == ["q_proj", "v_proj"]
    assert facts["dtypes"] == ["BF16"]
    assert facts["tensor_bytes"] == sum(t.numel() * 2 for t in tensors.values())
    assert facts["lora_on_lm_head"] is False


def test_the_normalized_config_names_the_hub_base_and_keeps_the_original() -> None:
    config = config_bytes(base_model_name_or_path="/home/me/models/toy-llama")
    report = run(lora_tensors(toy_base_manifest()), config=config, base_id=BASE_ID)
    assert report.normalized_config is not None
    assert report.normalized_config["base_model_name_or_path"] == BASE_ID
    assert report.facts["original_base_model_name_or_path"] == "/home/me/models/toy-llama"
    assert report.facts["base_model_name_check"] == "same_name"
    stored = json.loads(report.normalized_config_bytes() or b"")
    assert stored["target_modules"] == ["q_proj", "v_proj"]


def test_a_config_naming_another_base_is_a_warning() -> None:
    config = config_bytes(base_model_name_or_path="other/model")
    report = run(lora_tensors(toy_base_manifest()), config=config)
    assert report.status == "valid"
    assert report.facts["base_model_name_check"] == "mismatch"
    assert "base_model_name_mismatch" in {f.code for f in report.warnings}


def test_to_json_is_plain_json() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors.pop(f"{PEFT_PREFIX}{Q0}.lora_A.weight")
    data = run(tensors).to_json()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["status"] == "invalid"
    assert data["findings"][0] == {
        "code": "missing_lora_half",
        "severity": "error",
        "message": data["findings"][0]["message"],
        "module": Q0,
    }


def test_repeated_findings_are_capped_with_a_summary() -> None:
    tensors = {f"{PEFT_PREFIX}junk.{i}.weight": torch.zeros(1) for i in range(30)}
    tensors.update(lora_tensors(toy_base_manifest()))
    report = run(tensors, limits=Limits(max_findings_per_code=5))
    junk = [f for f in report.findings if f.code == "unexplained_tensor"]
    assert len(junk) == 6
    assert "25 more" in junk[-1].message


# -- the header-only fast path ----------------------------------------------------------


def test_the_header_check_reads_only_the_headers() -> None:
    data = safetensors_bytes(lora_tensors(toy_base_manifest()))
    reads: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset : offset + length]

    report = check_header_compat(
        config=config_bytes(),
        weights=[WeightFile("adapter_model.safetensors", len(data), read)],
        base_manifest=toy_base_manifest(),
        base_id=BASE_ID,
    )
    assert report.status == "valid"
    assert report.facts["numeric_scan"] is False
    assert len(reads) == 2


def test_the_header_check_does_not_see_nan() -> None:
    tensors = lora_tensors(toy_base_manifest())
    tensors[f"{PEFT_PREFIX}{Q0}.lora_A.weight"][0, 0] = float("nan")
    assert run(tensors, header_only=True).status == "valid"
    assert run(tensors).status == "invalid"


# -- the error contract -----------------------------------------------------------------


def test_a_reader_that_hits_the_end_of_the_file_becomes_a_finding() -> None:
    data = safetensors_bytes(lora_tensors(toy_base_manifest()))

    def read(offset: int, length: int) -> bytes:
        if offset > 1000:
            raise SafetensorsError("truncated", "The object is shorter than it was.")
        return data[offset : offset + length]

    report = validate_adapter(
        config=config_bytes(),
        weights=[WeightFile("a.safetensors", len(data), read)],
        base_manifest=toy_base_manifest(),
        base_id=BASE_ID,
    )
    assert errors(report) == ["truncated"]


def test_a_reader_that_returns_short_data_becomes_a_finding() -> None:
    data = safetensors_bytes(lora_tensors(toy_base_manifest()))

    def read(offset: int, length: int) -> bytes:
        return data[offset : offset + length][: max(8, length // 2)]

    report = run([WeightFile("a.safetensors", len(data), read)])
    assert report.status == "invalid"


def test_infrastructure_errors_from_the_reader_propagate_for_retry() -> None:
    data = safetensors_bytes(lora_tensors(toy_base_manifest()))

    def read(offset: int, length: int) -> bytes:
        if offset > 0:
            raise TimeoutError("S3 read timed out")
        return data[offset : offset + length]

    with pytest.raises(TimeoutError):
        run([WeightFile("a.safetensors", len(data), read)])


def test_a_malformed_base_manifest_is_reported_not_raised() -> None:
    bad: Mapping[str, Any] = {"x.weight": {"dtype": "F32", "shape": "[1, 2]"}}
    report = run(lora_tensors(toy_base_manifest()), base=bad)
    assert errors(report) == ["bad_base_manifest"]


# -- building blocks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "model.layers.0.self_attn.q_proj",
        "layers.0.self_attn.q_proj",  # adapter lacks the checkpoint's prefix
        "extra.model.layers.0.self_attn.q_proj",  # adapter carries a prefix the checkpoint lacks
        "self_attn.q_proj",  # ambiguous: matches every layer
        "model.layers.9.self_attn.q_proj",
        "lm_head",
    ],
)
def test_the_base_index_agrees_with_lora_base_weight_name(module: str) -> None:
    names = list(toy_base_manifest())
    index = BaseIndex({n: ("F32", (1,)) for n in names})
    assert index.resolve(f"{module}.weight") == base_weight_name(module, names)


@pytest.mark.parametrize(
    "pattern",
    [
        r".*\.(q_proj|v_proj)",
        r"^(?!.*vision).*\.(q|k|v|o)_proj$",
        r"model\.layers\.\d+\.self_attn\.q_proj",
        r"[a-z_]+\.layers\.[0-9]{1,3}\..*",
    ],
)
def test_ordinary_target_regexes_are_allowed(pattern: str) -> None:
    assert regex_problem(pattern, Limits()) is None


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        pytest.param("(a+)+$", "nests", id="nested-plus"),
        pytest.param("(a?){25}", "nests", id="optional-in-repeat"),
        pytest.param("(a|aa)*b", "alternation", id="repeated-alternation"),
        pytest.param(r"(a)\1", "backreference", id="backreference"),
        pytest.param(".*a.*b.*c", "ways", id="three-wildcards"),
        pytest.param("a?" * 25 + "a" * 25, "ways", id="many-optionals"),
        pytest.param("a" * 300, "characters", id="too-long"),
        pytest.param("(", "not a valid", id="invalid"),
        pytest.param("a{99999999999}", "not a valid", id="huge-repeat-count"),
    ],
)
def test_catastrophic_regexes_are_refused(pattern: str, why: str) -> None:
    problem = regex_problem(pattern, Limits())
    assert problem is not None
    assert why in problem


def test_pattern_keys_are_judged_inside_peft_s_wrapper() -> None:
    wrap = (r"(.*\.)?(", r")$")
    assert regex_problem(".*q_proj", Limits(), wrap=wrap) is None
    assert regex_problem(".*layers.*q_proj", Limits(), wrap=wrap) is not None
    # Compiles alone, but not where PEFT puts it.
    assert regex_problem("(?i)q_proj", Limits()) is None
    assert "not a valid" in (regex_problem("(?i)q_proj", Limits(), wrap=wrap) or "")


def test_total_matching_time_is_capped() -> None:
    config = config_bytes(target_modules=r".*\.self_attn\.(q_proj|v_proj)")
    tensors = lora_tensors(toy_base_manifest())
    report = run(tensors, config=config, limits=Limits(max_regex_seconds=1e-9))
    assert errors(report) == ["regex_too_slow"]


def test_the_scan_thread_setting_is_restored_afterwards() -> None:
    before = torch.get_num_threads()
    report = run(lora_tensors(toy_base_manifest()), limits=Limits(torch_threads=1))
    assert report.status == "valid"
    assert torch.get_num_threads() == before
