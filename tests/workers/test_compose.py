"""Compose: exact rank concatenation and SVD truncation of a stack or a weighted set."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.workers.lora_fixtures import (
    ATTENTION,
    HIDDEN,
    MLP,
    LocalFiles,
    make_llama,
    make_lora,
    memory_adapter,
    peft_merged,
    read_dir,
)
from workers.compose import ComposeError, ComposeResult, compose_adapters
from workers.lora import parse_adapter_config
from workers.merge import LoadedAdapter, MergeError, load_adapter, merge_stack

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="module")
def llama(work: Path) -> Path:
    return make_llama(work / "llama")


@pytest.fixture(scope="module")
def stack(work: Path, llama: Path) -> list[Path]:
    """Different ranks, rsLoRA and a rank_pattern; q_proj in both, MLP in one only."""
    return [
        make_lora(llama, work / "a1", seed=1, target_modules=ATTENTION),
        make_lora(
            llama,
            work / "a2",
            seed=2,
            target_modules=[*MLP, "q_proj"],
            r=2,
            lora_alpha=4,
            use_rslora=True,
            rank_pattern={"down_proj": 3},
        ),
    ]


def compose_dirs(adapters: Sequence[Path], out: Path, **kwargs: Any) -> ComposeResult:
    with LocalFiles() as files:
        return compose_adapters(adapters=files.adapters(adapters), out_dir=out, **kwargs)


def merged(base: Path, adapters: Sequence[Path], out: Path) -> dict[str, torch.Tensor]:
    with LocalFiles() as files:
        merge_stack(base=files.base(base), stack=files.adapters(adapters), out_dir=out)
    return read_dir(out)


def assert_close(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], rtol: float) -> None:
    assert set(ours) == set(ref) or set(ours) <= set(ref)
    for name, tensor in ours.items():
        scale = float(ref[name].abs().max()) or 1.0
        torch.testing.assert_close(tensor, ref[name], rtol=rtol, atol=rtol * scale, msg=name)


def deltas(adapters: Sequence[LoadedAdapter], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The summed fp64 delta of every module: sum_i w_i * s_i * B_i @ A_i."""
    out: dict[str, torch.Tensor] = {}
    for adapter, weight in zip(adapters, weights, strict=True):
        for module, f in adapter.modules.items():
            delta = weight * f.scale * (f.b.double() @ f.a.double())
            out[module] = out.get(module, 0) + delta
    return out


def test_exact_composition_merges_like_the_stack(
    llama: Path, stack: list[Path], tmp_path: Path
) -> None:
    result = compose_dirs(stack, tmp_path / "composed")
    layer = "model.layers.0"
    assert result.ranks[f"{layer}.self_attn.q_proj"] == 4 + 2
    assert result.ranks[f"{layer}.self_attn.k_proj"] == 4
    assert result.ranks[f"{layer}.mlp.down_proj"] == 3
    assert set(result.module_errors.values()) == {0.0}
    assert result.total_error == 0.0
    assert result.recipe == {
        "method": "exact",
        "rank": None,
        "dtype": "F32",
        "inputs": [{"name": "a1", "weight": 1.0}, {"name": "a2", "weight": 1.0}],
    }
    config = parse_adapter_config((tmp_path / "composed" / "adapter_config.json").read_bytes())
    for module, rank in result.ranks.items():
        assert config.rank_for(module) == rank
        assert config.scale_for(module) == 1.0
    for f in result.files:
        data = f.local_path.read_bytes()
        assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())

    from_stack = merged(llama, stack, tmp_path / "stack")
    from_composed = merged(llama, [tmp_path / "composed"], tmp_path / "merged")
    # One matmul over the concatenated rank instead of one per adapter: fp32 round-off only.
    assert_close(from_composed, from_stack, rtol=1e-6)
    # PEFT reads the composed config (rank_pattern/alpha_pattern) the same way.
    reference = peft_merged(llama, [tmp_path / "composed"], dtype=torch.float32)
    assert_close(from_composed, reference, rtol=1e-6)


def test_weighted_siblings_exact(llama: Path, stack: list[Path], tmp_path: Path) -> None:
    weights = [0.7, -0.3]
    result = compose_dirs(stack, tmp_path / "composed", weights=weights)
    assert [i["weight"] for i in result.recipe["inputs"]] == weights
    with LocalFiles() as files:
        loaded = [load_adapter(a) for a in files.adapters(stack)]
    base = read_dir(llama)
    expected = {
        f"{m}.weight": (base[f"{m}.weight"].double() + d).float()
        for m, d in deltas(loaded, weights).items()
    }
    ours = merged(llama, [tmp_path / "composed"], tmp_path / "merged")
    assert_close({k: ours[k] for k in expected}, expected, rtol=1e-6)


def test_svd_at_full_rank_is_lossless(llama: Path, stack: list[Path], tmp_path: Path) -> None:
    result = compose_dirs(stack, tmp_path / "composed", method="svd", rank=64)
    assert result.total_error == 0.0
    assert max(result.module_errors.values()) == 0.0
    # Ranks shrink to each module's true rank (q_proj: 6, attention: 4, MLP: 2 or 3).
    assert result.ranks["model.layers.0.self_attn.q_proj"] == 6
    from_stack = merged(llama, stack, tmp_path / "stack")
    from_composed = merged(llama, [tmp_path / "composed"], tmp_path / "merged")
    assert_close(from_composed, from_stack, rtol=1e-5)


def test_svd_error_is_the_discarded_energy(stack: list[Path], tmp_path: Path) -> None:
    weights, rank = [1.0, 0.5], 2
    result = compose_dirs(stack, tmp_path / "composed", method="svd", rank=rank, weights=weights)
    config = parse_adapter_config((tmp_path / "composed" / "adapter_config.json").read_bytes())
    assert config.r == rank
    with LocalFiles() as files:
        inputs = [load_adapter(a) for a in files.adapters(stack)]
        (composed,) = [load_adapter(a) for a in files.adapters([tmp_path / "composed"])]

    discarded = total = 0.0
    for module, delta in deltas(inputs, weights).items():
        s = torch.linalg.svdvals(delta)
        kept = min(rank, int((s > 1e-12 * s[0]).sum()))
        energy = s.square()
        expected = math.sqrt(float(energy[kept:].sum() / energy.sum()))
        assert result.module_errors[module] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert result.ranks[module] == min(rank, s.numel())
        f = composed.modules[module]
        approx = f.scale * (f.b.double() @ f.a.double())
        actual = float(torch.linalg.norm(delta - approx) / torch.linalg.norm(delta))
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6)
        discarded += float(energy[kept:].sum())
        total += float(energy.sum())
    assert result.total_error == pytest.approx(math.sqrt(discarded / total), rel=1e-9)
    assert 0 < result.total_error < 1


P = "base_model.model.layers.0.q_proj"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"weights": [1.0]}, "bad_weights"),
        ({"weights": [1.0, math.nan]}, "bad_weights"),
        ({"method": "ties"}, "bad_method"),
        ({"method": "svd"}, "bad_rank"),
        ({"method": "svd", "rank": 0}, "bad_rank"),
        ({"rank": 4}, "bad_rank"),
    ],
)
def test_bad_requests(kwargs: dict[str, Any], code: str, tmp_path: Path) -> None:
    with pytest.raises(ComposeError) as info:
        compose_adapters(adapters=[memory_adapter(), memory_adapter()], out_dir=tmp_path, **kwargs)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("second", "code"),
    [
        (
            memory_adapter(
                {"modules_to_save": ["up_proj"]},
                tensors={
                    f"{P}.lora_A.weight": torch.ones(2, HIDDEN),
                    f"{P}.lora_B.weight": torch.ones(HIDDEN, 2),
                    "base_model.model.layers.0.up_proj.weight": torch.ones(12, HIDDEN),
                },
            ),
            "saved_modules_unsupported",
        ),
        (
            memory_adapter(
                tensors={
                    f"{P}.lora_A.weight": torch.ones(2, HIDDEN + 1),
                    f"{P}.lora_B.weight": torch.ones(HIDDEN, 2),
                }
            ),
            "incompatible_adapters",
        ),
        (
            memory_adapter(
                {"lora_bias": True},
                tensors={
                    f"{P}.lora_A.weight": torch.ones(2, HIDDEN),
                    f"{P}.lora_B.weight": torch.ones(HIDDEN, 2),
                    f"{P}.lora_B.bias": torch.ones(HIDDEN),
                },
            ),
            "lora_bias_unsupported",
        ),
        (memory_adapter({"use_dora": True}), "dora_unsupported"),
    ],
)
def test_refusals(second: Any, code: str, tmp_path: Path) -> None:
    with pytest.raises(MergeError) as info:
        compose_adapters(adapters=[memory_adapter(), second], out_dir=tmp_path)
    assert info.value.code == code
    assert not any(tmp_path.iterdir())
