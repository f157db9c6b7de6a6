"""A corpus of broken uploads: each must end ``invalid`` with exactly the expected error codes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pytest
import torch

from tests.workers.adapters import (
    BASE_ID,
    config_bytes,
    lora_tensors,
    raw_file,
    raw_header,
    run,
    safetensors_bytes,
    toy_base_manifest,
    weight_file,
)
from workers.findings import Report
from workers.lora import PEFT_PREFIX
from workers.safetensors_io import SafetensorsError
from workers.validate import Limits, WeightFile

Tensors = dict[str, torch.Tensor]
Q0 = "model.layers.0.self_attn.q_proj"
A0 = f"{PEFT_PREFIX}{Q0}.lora_A.weight"
B0 = f"{PEFT_PREFIX}{Q0}.lora_B.weight"
ENTRY = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}


def good() -> Tensors:
    return lora_tensors(toy_base_manifest())


def edited(edit: Callable[[Tensors], object], **run_kwargs: object) -> Callable[[], Report]:
    """A valid adapter changed by ``edit`` (which mutates the dict in place)."""

    def build() -> Report:
        tensors = good()
        edit(tensors)
        return run(tensors, **run_kwargs)  # type: ignore[arg-type]

    return build


def with_config(**fields: object) -> Callable[[], Report]:
    return lambda: run(good(), config=config_bytes(**fields))  # type: ignore[arg-type]


def raw_config(data: bytes) -> Callable[[], Report]:
    return lambda: run(good(), config=data)


def file_bytes(data: bytes, **run_kwargs: object) -> Callable[[], Report]:
    return lambda: run(data, **run_kwargs)  # type: ignore[arg-type]


def set_(name: str, value: torch.Tensor) -> Callable[[Tensors], None]:
    return lambda t: t.__setitem__(name, value)


def drop(name: str) -> Callable[[Tensors], None]:
    return lambda t: t.__delitem__(name)


def rename(old: str, new: str) -> Callable[[Tensors], None]:
    return lambda t: t.__setitem__(new, t.pop(old))


def poke(name: str, value: float) -> Callable[[Tensors], None]:
    def edit(t: Tensors) -> None:
        t[name][0, 1] = value

    return edit


def extra_module(
    module: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]
) -> Callable[[Tensors], None]:
    def edit(t: Tensors) -> None:
        t[f"{PEFT_PREFIX}{module}.lora_A.weight"] = torch.randn(a_shape)
        t[f"{PEFT_PREFIX}{module}.lora_B.weight"] = torch.randn(b_shape)

    return edit


def two_files_sharing_a_name() -> Report:
    tensors = good()
    return run(
        [
            weight_file(safetensors_bytes(tensors), "a.safetensors"),
            weight_file(safetensors_bytes({A0: tensors[A0]}), "b.safetensors"),
        ]
    )


def truncated_while_scanning() -> Report:
    data = safetensors_bytes(good())

    def read(offset: int, length: int) -> bytes:
        if offset > 1024:
            raise SafetensorsError("truncated", "The stored object is shorter than declared.")
        return data[offset : offset + length]

    return run([WeightFile("adapter_model.safetensors", len(data), read)])


def saved_lm_head(value: torch.Tensor, base_dtype: str = "BF16") -> Callable[[], Report]:
    def build() -> Report:
        tensors = good()
        tensors[f"{PEFT_PREFIX}lm_head.weight"] = value
        return run(
            tensors,
            config=config_bytes(modules_to_save=["lm_head"]),
            base=toy_base_manifest(dtype=base_dtype),
        )

    return build


def f16_overflow() -> Report:
    tensors = good()
    tensors[B0] = tensors[B0] * 1e7
    return run(tensors, base=toy_base_manifest(dtype="F16"))


def nested(depth: int) -> bytes:
    value: object = "x"
    for _ in range(depth):
        value = {"k": value}
    return config_bytes(extra=value)


DUPLICATE = f'{{"a": {json.dumps(ENTRY)}, "a": {json.dumps(ENTRY)}}}'
LONG = "model." + "x" * 300 + ".q_proj"

CORPUS = [
    # -- container ----------------------------------------------------------------------
    pytest.param(file_bytes(raw_file(DUPLICATE, bytes(4))), {"duplicate_tensor_key"}, id="dup-key"),
    pytest.param(
        file_bytes(raw_header({"a": {**ENTRY, "align": 8}}, 4)),
        {"unknown_tensor_field"},
        id="unknown-entry-field",
    ),
    pytest.param(file_bytes(raw_header({"": ENTRY}, 4)), {"bad_tensor_name"}, id="empty-name"),
    pytest.param(file_bytes(raw_header({"a\0b": ENTRY}, 4)), {"bad_tensor_name"}, id="nul-name"),
    pytest.param(
        file_bytes(raw_header({"../../etc/passwd": ENTRY}, 4)), {"bad_tensor_name"}, id="path-name"
    ),
    pytest.param(
        file_bytes(raw_header({"a" * 600: ENTRY}, 4)), {"bad_tensor_name"}, id="long-name"
    ),
    pytest.param(file_bytes(raw_header({}, 0)), {"no_tensors"}, id="no-tensors"),
    pytest.param(
        file_bytes(
            raw_header(
                {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(9)},
                0,
            ),
            limits=Limits(max_tensors=8),
        ),
        {"too_many_tensors"},
        id="too-many-tensors",
    ),
    pytest.param(
        lambda: run(good(), limits=Limits(max_header_bytes=64)),
        {"header_too_large"},
        id="header-over-limit",
    ),
    pytest.param(lambda: run(safetensors_bytes(good())[:-4]), {"bad_offsets"}, id="truncated-data"),
    pytest.param(file_bytes(b"\x10\x00"), {"truncated"}, id="shorter-than-prefix"),
    pytest.param(
        file_bytes(raw_file("not json at all")), {"header_not_json"}, id="header-not-json"
    ),
    pytest.param(
        file_bytes(raw_header({"a": {**ENTRY, "dtype": "Q4_K"}}, 4)),
        {"unknown_dtype"},
        id="unknown-dtype",
    ),
    pytest.param(two_files_sharing_a_name, {"duplicate_tensor_key"}, id="dup-key-across-files"),
    pytest.param(
        lambda: run([weight_file(b"\x80\x02}q\x00.", "adapter_model.bin")]),
        {"pickle_weights_refused"},
        id="pickle-file",
    ),
    pytest.param(
        lambda: run([weight_file(_torch_save(), "adapter_model.safetensors")]),
        {"pickle_weights_refused"},
        id="pickle-named-safetensors",
    ),
    pytest.param(lambda: run([]), {"no_weight_files"}, id="no-files"),
    pytest.param(
        lambda: run([weight_file(b"x")] * 3, limits=Limits(max_files=2)),
        {"too_many_files"},
        id="too-many-files",
    ),
    pytest.param(
        lambda: run(good(), limits=Limits(max_total_bytes=1000)),
        {"adapter_too_large"},
        id="too-large",
    ),
    pytest.param(truncated_while_scanning, {"truncated"}, id="truncated-during-scan"),
    # -- adapter_config.json ------------------------------------------------------------
    pytest.param(raw_config(b"{not json"), {"config_not_json"}, id="config-not-json"),
    pytest.param(raw_config(b"[]"), {"config_not_json"}, id="config-array"),
    pytest.param(raw_config(b" " * 300_000 + b"{}"), {"config_too_large"}, id="config-too-large"),
    pytest.param(raw_config(nested(20)), {"config_too_deep"}, id="config-too-deep"),
    pytest.param(raw_config(b"[" * 900 + b"]" * 900), {"config_not_json"}, id="config-json-bomb"),
    pytest.param(with_config(peft_type="IA3"), {"unsupported_peft_type"}, id="peft-type-ia3"),
    pytest.param(with_config(r=0), {"bad_rank"}, id="rank-zero"),
    pytest.param(with_config(r="4"), {"bad_rank"}, id="rank-string"),
    pytest.param(with_config(lora_alpha=10**400), {"bad_alpha"}, id="alpha-huge-int"),
    pytest.param(with_config(lora_alpha=float("nan")), {"config_not_json"}, id="alpha-nan"),
    pytest.param(raw_config(b'{"peft_type": "LORA", "r": 1e400}'), {"config_not_json"}, id="1e400"),
    pytest.param(with_config(lora_alpha=True), {"bad_alpha"}, id="alpha-bool"),
    pytest.param(with_config(target_modules=7), {"bad_target_modules"}, id="targets-int"),
    pytest.param(with_config(target_modules=[]), {"missing_target_modules"}, id="targets-empty"),
    pytest.param(with_config(target_modules="(a+)+$"), {"unsafe_regex"}, id="targets-redos"),
    pytest.param(with_config(target_modules="a" * 400), {"unsafe_regex"}, id="targets-too-long"),
    pytest.param(with_config(target_modules="(q_proj"), {"unsafe_regex"}, id="targets-bad-regex"),
    pytest.param(
        with_config(rank_pattern={"q_proj": 0}), {"bad_rank_pattern"}, id="rank-pattern-0"
    ),
    pytest.param(
        with_config(rank_pattern={"q_(": 4}), {"bad_rank_pattern"}, id="rank-pattern-regex"
    ),
    pytest.param(
        with_config(rank_pattern={"(?i)q_proj": 4}), {"bad_rank_pattern"}, id="rank-pattern-flags"
    ),
    pytest.param(
        with_config(rank_pattern={"(.*a)+q_proj": 4}), {"unsafe_regex"}, id="rank-pattern-redos"
    ),
    pytest.param(
        with_config(alpha_pattern={"q_proj": True}), {"bad_alpha_pattern"}, id="alpha-pattern-bool"
    ),
    pytest.param(
        with_config(modules_to_save="lm_head"), {"bad_modules_to_save"}, id="saved-not-list"
    ),
    pytest.param(with_config(bias="some"), {"bad_bias"}, id="bias-unknown"),
    pytest.param(
        with_config(r=10_000, rank_pattern={"q_proj": 4, "v_proj": 4}),
        {"rank_too_large"},
        id="rank-absurd",
    ),
    pytest.param(
        with_config(layer_replication=[[0, 2]]), {"unsupported_config_option"}, id="layer-repl"
    ),
    pytest.param(with_config(lora_bias=True), {"unsupported_config_option"}, id="lora-bias"),
    pytest.param(with_config(init_lora_weights="pissa"), {"base_mutating_init"}, id="pissa"),
    pytest.param(with_config(exclude_modules=3), {"bad_config_value"}, id="exclude-int"),
    pytest.param(
        with_config(layers_to_transform="0"), {"bad_config_value"}, id="layers-to-transform-str"
    ),
    # -- tensors against the base -------------------------------------------------------
    pytest.param(
        lambda: run(
            {**good(), **_qkv()}, config=config_bytes(target_modules=["q_proj", "v_proj", "qkv"])
        ),
        {"module_not_in_base"},
        id="module-not-in-base",
    ),
    pytest.param(
        edited(extra_module("model.layers.7.self_attn.q_proj", (4, 16), (16, 4))),
        {"layer_not_in_base"},
        id="layer-index-not-in-base",
    ),
    pytest.param(
        lambda: run(_bert_named(), config=config_bytes(target_modules=["query", "value"])),
        {"target_not_in_base", "module_not_in_base"},
        id="target-not-in-base",
    ),
    pytest.param(
        lambda: run(good(), config=config_bytes(r=8)), {"rank_mismatch"}, id="rank-vs-config"
    ),
    pytest.param(
        with_config(rank_pattern={"model.layers.0.self_attn.q_proj": 2}),
        {"rank_mismatch"},
        id="rank-vs-rank-pattern",
    ),
    pytest.param(
        edited(set_(B0, torch.randn(16, 3))), {"lora_rank_mismatch"}, id="a-b-rank-disagree"
    ),
    pytest.param(edited(set_(A0, torch.randn(4, 15))), {"shape_mismatch"}, id="wrong-in-features"),
    pytest.param(edited(set_(B0, torch.randn(17, 4))), {"shape_mismatch"}, id="wrong-out-features"),
    pytest.param(
        edited(
            extra_module("model.layers.0.mlp.down_proj", (4, 16), (40, 4)),
            config=config_bytes(target_modules=["q_proj", "v_proj", "down_proj"]),
        ),
        {"shape_mismatch"},
        id="transposed-mlp",
    ),
    pytest.param(edited(drop(B0)), {"missing_lora_half"}, id="missing-lora-b"),
    pytest.param(edited(drop(A0)), {"missing_lora_half"}, id="missing-lora-a"),
    pytest.param(
        edited(set_(f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.scale", torch.ones(1))),
        {"unexplained_tensor"},
        id="unexplained-tensor",
    ),
    pytest.param(
        edited(set_(f"{PEFT_PREFIX}model.layers.0.mlp.up_proj.weight", torch.randn(40, 16))),
        {"base_weight_smuggled"},
        id="smuggled-base-weight",
    ),
    pytest.param(
        edited(set_(f"{PEFT_PREFIX}model.embed_tokens.weight", torch.randn(120, 16))),
        {"base_weight_resized"},
        id="resized-embedding",
    ),
    pytest.param(
        edited(extra_module("model.layers.0.self_attn.k_proj", (4, 16), (16, 4))),
        {"module_not_targeted"},
        id="module-not-targeted",
    ),
    pytest.param(
        edited(set_(A0, torch.ones(4, 16, dtype=torch.int32))), {"non_float_dtype"}, id="int-dtype"
    ),
    pytest.param(
        edited(set_(B0, torch.ones(16, 4, dtype=torch.bool))), {"non_float_dtype"}, id="bool-dtype"
    ),
    pytest.param(edited(set_(A0, torch.randn(64))), {"bad_lora_shape"}, id="one-dim-lora-a"),
    pytest.param(
        edited(rename(A0, A0.removeprefix(PEFT_PREFIX))),
        {"missing_peft_prefix", "missing_lora_half"},
        id="missing-peft-prefix",
    ),
    pytest.param(
        file_bytes(
            safetensors_bytes(
                {
                    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.ones(
                        4, 8
                    ),
                    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.ones(8, 4),
                    "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
                }
            )
        ),
        {"kohya_format"},
        id="kohya",
    ),
    pytest.param(
        file_bytes(
            safetensors_bytes(
                {
                    "unet.mid_block.attentions.0.to_q.lora.down.weight": torch.ones(4, 8),
                    "unet.mid_block.attentions.0.to_q.lora.up.weight": torch.ones(8, 4),
                }
            )
        ),
        {"diffusers_format"},
        id="diffusers-legacy",
    ),
    pytest.param(
        file_bytes(
            safetensors_bytes(
                {
                    "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(4, 8),
                    "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(8, 4),
                }
            )
        ),
        {"diffusers_format"},
        id="diffusers-peft-style",
    ),
    pytest.param(
        edited(set_(f"{PEFT_PREFIX}{Q0}.lora_magnitude_vector", torch.ones(16))),
        {"unexplained_tensor"},
        id="dora-magnitude-without-dora",
    ),
    pytest.param(with_config(use_dora=True), {"missing_dora_magnitude"}, id="dora-no-magnitude"),
    pytest.param(
        edited(extra_module(LONG, (4, 16), (16, 4))),
        {"module_name_too_long"},
        id="module-name-too-long",
    ),
    pytest.param(saved_lm_head(torch.randn(100, 8)), {"shape_mismatch"}, id="saved-wrong-shape"),
    # -- numbers ------------------------------------------------------------------------
    pytest.param(edited(poke(B0, float("nan"))), {"non_finite_values"}, id="nan-in-b"),
    pytest.param(
        edited(set_(A0, torch.full((4, 16), float("inf"), dtype=torch.bfloat16))),
        {"non_finite_values"},
        id="inf-in-bf16-a",
    ),
    pytest.param(
        saved_lm_head(torch.full((100, 16), float("nan"))), {"non_finite_values"}, id="nan-in-saved"
    ),
    pytest.param(f16_overflow, {"delta_overflows_base_dtype"}, id="delta-overflows-f16"),
    pytest.param(
        saved_lm_head(torch.full((100, 16), 1e6), base_dtype="F16"),
        {"weight_overflows_base_dtype"},
        id="saved-overflows-f16",
    ),
]


def _torch_save() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)  # the writer only; nothing here unpickles
    return buffer.getvalue()


def _qkv() -> Tensors:
    return {
        f"{PEFT_PREFIX}model.layers.0.self_attn.qkv.lora_A.weight": torch.randn(4, 16),
        f"{PEFT_PREFIX}model.layers.0.self_attn.qkv.lora_B.weight": torch.randn(48, 4),
    }


def _bert_named() -> Tensors:
    return {
        f"{PEFT_PREFIX}encoder.layer.0.attention.self.query.lora_A.weight": torch.randn(4, 16),
        f"{PEFT_PREFIX}encoder.layer.0.attention.self.query.lora_B.weight": torch.randn(16, 4),
    }


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize(("build", "codes"), CORPUS)
def test_a_bad_upload_is_invalid_with_the_exact_codes(
    build: Callable[[], Report], codes: set[str]
) -> None:
    report = build()
    assert report.status == "invalid"
    assert {f.code for f in report.errors} == codes, [(f.code, f.message) for f in report.findings]
    for finding in report.errors:
        assert finding.message.endswith((".", "?", ")")), finding.message
    json.dumps(report.to_json(), allow_nan=False)
    assert report.facts.get("declared_base_id") in (None, BASE_ID)
