"""A real base (all-MiniLM-L6-v2, a BertModel) and real PEFT adapters made on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.workers.adapters import explicit_delta_norm, isclose, minilm_dir, safetensors_bytes
from workers.findings import Report
from workers.lora import PEFT_PREFIX
from workers.safetensors_io import file_reader, iter_tensors, read_header
from workers.validate import WeightFile, validate_adapter

pytestmark = pytest.mark.slow

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
QUERY0 = "encoder.layer.0.attention.self.query"


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    with path.open("rb") as fh:
        read = file_reader(fh)
        header = read_header(read, path.stat().st_size)
        return {name: t.clone() for name, t in iter_tensors(read, header)}


@pytest.fixture(scope="module")
def base_manifest() -> dict[str, dict[str, Any]]:
    path = minilm_dir() / "model.safetensors"
    with path.open("rb") as fh:
        return read_header(file_reader(fh), path.stat().st_size).manifest()


def make_peft_adapter(out: Path, auto: str = "AutoModel", **lora: Any) -> Path:
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = getattr(transformers, auto).from_pretrained(minilm_dir())
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora)
    get_peft_model(model, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_peft_adapter(
        tmp_path_factory.mktemp("minilm-lora"), target_modules=["query", "value"]
    )


def validate(
    tensors: dict[str, torch.Tensor] | Path,
    config: dict[str, Any] | bytes,
    manifest: dict[str, dict[str, Any]],
) -> Report:
    data = tensors.read_bytes() if isinstance(tensors, Path) else safetensors_bytes(tensors)
    reader = memoryview(data)
    return validate_adapter(
        config=config if isinstance(config, bytes) else json.dumps(config).encode(),
        weights=[
            WeightFile(
                "adapter_model.safetensors",
                len(data),
                lambda offset, length: bytes(reader[offset : offset + length]),
            )
        ],
        base_manifest=manifest,
        base_id=BASE_ID,
    )


def load(adapter_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = read_safetensors(adapter_dir / "adapter_model.safetensors")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    return tensors, config


def test_the_checkpoint_names_lack_the_bert_prefix(base_manifest: dict[str, Any]) -> None:
    assert f"{QUERY0}.weight" in base_manifest
    assert not any(name.startswith("bert.") for name in base_manifest)


def test_a_peft_lora_on_minilm_attention_is_valid(
    adapter_dir: Path, base_manifest: dict[str, Any]
) -> None:
    tensors, config = load(adapter_dir)
    report = validate(adapter_dir / "adapter_model.safetensors", config, base_manifest)
    assert report.status == "valid", report.findings
    assert report.errors == []
    facts = report.facts
    assert facts["lora_module_count"] == 12
    assert facts["targeted_module_names"] == ["query", "value"]
    assert facts["max_rank"] == 4
    assert facts["dtypes"] == ["F32"]
    # PEFT wrote the local path it loaded the base from; the hub stores its own id.
    assert facts["original_base_model_name_or_path"] == str(minilm_dir())
    assert report.normalized_config is not None
    assert report.normalized_config["base_model_name_or_path"] == BASE_ID
    for stats in report.module_stats:
        a = tensors[f"{PEFT_PREFIX}{stats.module}.lora_A.weight"]
        b = tensors[f"{PEFT_PREFIX}{stats.module}.lora_B.weight"]
        assert isclose(stats.delta_norm, explicit_delta_norm(a, b, 2.0))
        assert stats.zero is False


def test_the_delta_norm_matches_peft_s_own_delta_weight(adapter_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModel

    model = PeftModel.from_pretrained(AutoModel.from_pretrained(minilm_dir()), adapter_dir)
    layer: Any = model.get_submodule(f"base_model.model.{QUERY0}")
    expected = float(layer.get_delta_weight("default").double().norm())
    _, config = load(adapter_dir)
    manifest_path = minilm_dir() / "model.safetensors"
    with manifest_path.open("rb") as fh:
        manifest = read_header(file_reader(fh), manifest_path.stat().st_size).manifest()
    report = validate(adapter_dir / "adapter_model.safetensors", config, manifest)
    stats = next(s for s in report.module_stats if s.module == QUERY0)
    assert isclose(stats.delta_norm, expected, rel=1e-5)


def test_adapter_keys_with_a_bert_prefix_still_find_the_weights(
    adapter_dir: Path, base_manifest: dict[str, Any]
) -> None:
    # As if trained on BertForSequenceClassification: keys say ``bert.encoder...``.
    tensors, config = load(adapter_dir)
    prefixed = {k.replace(PEFT_PREFIX, f"{PEFT_PREFIX}bert."): v for k, v in tensors.items()}
    assert validate(prefixed, config, base_manifest).status == "valid"


def test_a_sequence_classification_adapter_saves_its_new_head(
    tmp_path: Path, base_manifest: dict[str, Any]
) -> None:
    out = make_peft_adapter(
        tmp_path,
        auto="AutoModelForSequenceClassification",
        target_modules=["query", "value"],
        task_type="SEQ_CLS",
    )
    _, config = load(out)
    report = validate(out / "adapter_model.safetensors", config, base_manifest)
    assert report.status == "valid", report.findings
    warnings = {f.code for f in report.warnings}
    assert {"modules_to_save_present", "saved_module_not_in_base"} <= warnings


def broken(kind: str, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    a, b = f"{PEFT_PREFIX}{QUERY0}.lora_A.weight", f"{PEFT_PREFIX}{QUERY0}.lora_B.weight"
    if kind == "wrong-rank":
        config["r"] = 8
    elif kind == "wrong-shape":
        tensors[a] = torch.randn(4, 383)
    elif kind == "missing-half":
        del tensors[b]
    elif kind == "target-not-in-base":
        config["target_modules"] = ["q_proj", "v_proj"]
    elif kind == "layer-not-in-base":
        tensors[a.replace("layer.0.", "layer.6.")] = tensors[a]
        tensors[b.replace("layer.0.", "layer.6.")] = tensors[b]
    elif kind == "nan":
        tensors[b][3, 1] = float("nan")
    elif kind == "smuggled-weight":
        tensors[f"{PEFT_PREFIX}{QUERY0}.weight"] = torch.randn(384, 384)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("wrong-rank", "rank_mismatch"),
        ("wrong-shape", "shape_mismatch"),
        ("missing-half", "missing_lora_half"),
        ("target-not-in-base", "target_not_in_base"),
        ("layer-not-in-base", "layer_not_in_base"),
        ("nan", "non_finite_values"),
        ("smuggled-weight", "base_weight_smuggled"),
    ],
)
def test_a_broken_minilm_adapter_gets_the_right_code(
    adapter_dir: Path, base_manifest: dict[str, Any], kind: str, code: str
) -> None:
    tensors, config = load(adapter_dir)
    broken(kind, tensors, config)
    report = validate(tensors, config, base_manifest)
    assert report.status == "invalid"
    assert code in {f.code for f in report.errors}, report.findings
