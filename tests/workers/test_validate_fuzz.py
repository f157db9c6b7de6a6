"""Property-based fuzzing: whatever the bytes, the validator returns a report and never raises."""

from __future__ import annotations

import json
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.workers.adapters import (
    config_bytes,
    lora_tensors,
    raw_file,
    run,
    safetensors_bytes,
    toy_base_manifest,
)
from workers.findings import Report
from workers.lora import PEFT_PREFIX
from workers.safetensors_io import DTYPE_SIZES
from workers.validate import Limits

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = Limits(max_tensors=64, max_header_bytes=64 * 1024)
GOOD = safetensors_bytes(lora_tensors(toy_base_manifest()))


def check(report: Report) -> None:
    """The contract: a status, errors exactly when invalid, and plain JSON."""
    assert report.status in ("valid", "invalid")
    assert (report.status == "invalid") == bool(report.errors)
    assert all(f.code and f.code.islower() and f.message for f in report.findings)
    json.dumps(report.to_json(), allow_nan=False)


names = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight",
            f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_B.weight",
            f"{PEFT_PREFIX}model.layers.1.mlp.down_proj.lora_A.weight",
            f"{PEFT_PREFIX}lm_head.weight",
            "lora_unet_x.lora_down.weight",
            "__metadata__",
        ]
    ),
)
dims = st.one_of(st.integers(-2, 20), st.just(2**40), st.booleans(), st.floats(0, 4))
entries = st.fixed_dictionaries(
    {
        "dtype": st.one_of(st.sampled_from(sorted(DTYPE_SIZES)), st.text(max_size=5)),
        "shape": st.one_of(st.lists(dims, max_size=3), st.integers(), st.none()),
        "data_offsets": st.one_of(
            st.lists(st.integers(-4, 200), min_size=0, max_size=3), st.text(max_size=3)
        ),
    },
    optional={"extra": st.integers(), "dtype2": st.none()},
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_validator(data: bytes) -> None:
    check(run(data, limits=LIMITS))


@FUZZ
@given(
    st.dictionaries(names, st.one_of(entries, json_values), max_size=6),
    st.binary(max_size=200),
)
def test_random_headers_never_crash_the_validator(header: dict[str, Any], data: bytes) -> None:
    report = run(raw_file(json.dumps(header), data), limits=LIMITS)
    check(report)


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, len(GOOD) + 8),
)
def test_corrupted_valid_files_never_crash_the_validator(
    flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(GOOD)
    for position, value in flips:
        data[position] = value
    check(run(bytes(data[:cut]) + b"\0" * max(0, cut - len(data)), limits=LIMITS))


CONFIG_KEYS = [
    "peft_type",
    "r",
    "lora_alpha",
    "target_modules",
    "rank_pattern",
    "alpha_pattern",
    "modules_to_save",
    "bias",
    "use_dora",
    "use_rslora",
    "fan_in_fan_out",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "init_lora_weights",
    "base_model_name_or_path",
    "lora_bias",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), json_values, max_size=4))
def test_random_config_values_never_crash_the_validator(overrides: dict[str, Any]) -> None:
    config = json.loads(config_bytes())
    config.update(overrides)
    check(run(GOOD, config=json.dumps(config).encode(), limits=LIMITS))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet="ab.*+?|()[]{}^$\\0123456789_qvpro", max_size=30),
    st.sampled_from(["target_modules", "rank_pattern", "exclude_modules", "layers_pattern"]),
)
def test_random_regexes_never_crash_or_hang_the_validator(pattern: str, field: str) -> None:
    config = json.loads(config_bytes())
    config[field] = {pattern: 4} if field == "rank_pattern" else pattern
    check(run(GOOD, config=json.dumps(config).encode(), limits=LIMITS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    st.lists(
        st.sampled_from([0.0, 1e-30, -3.0, 7e4, 3e38, float("nan"), float("inf")]), max_size=3
    ),
)
def test_extreme_values_end_as_a_report(dtype: torch.dtype, values: list[float]) -> None:
    tensors = lora_tensors(toy_base_manifest(), dtype=torch.float32)
    for i, value in enumerate(values):
        name = sorted(tensors)[i]
        tensors[name][0, 0] = value
    cast = {k: v.to(dtype) for k, v in tensors.items()}
    check(run(cast, base=toy_base_manifest(dtype="F16")))


MODULES = [
    "model.layers.0.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
    "model.layers.0.mlp.down_proj",
    "model.layers.5.self_attn.q_proj",
    "model.embed_tokens",
    "lm_head",
    "model.norm",
    "x",
]
SUFFIXES = [
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora_embedding_A",
    ".lora_embedding_B",
    ".lora_magnitude_vector",
    ".weight",
    ".bias",
    ".alpha",
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.int8, torch.bool]
tensor_names = st.builds(
    lambda prefix, module, suffix: prefix + module + suffix,
    st.sampled_from([PEFT_PREFIX, PEFT_PREFIX, "", "lora_te_"]),
    st.sampled_from(MODULES),
    st.sampled_from(SUFFIXES),
)
tensor_specs = st.tuples(
    st.sampled_from(DTYPES),
    st.lists(st.sampled_from([0, 1, 4, 16, 40, 100]), max_size=3),
)


@FUZZ
@given(
    st.dictionaries(tensor_names, tensor_specs, min_size=1, max_size=8),
    st.sampled_from([None, "F16", "BF16"]),
    st.dictionaries(st.sampled_from(CONFIG_KEYS[:10]), json_values, max_size=2),
)
def test_well_formed_files_with_random_tensors_never_crash_the_validator(
    specs: dict[str, tuple[torch.dtype, list[int]]],
    base_dtype: str | None,
    overrides: dict[str, Any],
) -> None:
    # Valid containers, so the fuzzing reaches the structural and numeric checks.
    tensors = {name: torch.ones(shape).to(dtype) for name, (dtype, shape) in specs.items()}
    config = json.loads(config_bytes(target_modules=["q_proj", "v_proj", "down_proj", "x"]))
    config.update(overrides)
    base = toy_base_manifest(dtype=base_dtype) if base_dtype else None
    report = run(tensors, config=json.dumps(config).encode(), base=base, limits=LIMITS)
    check(report)
