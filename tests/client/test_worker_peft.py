"""A real stack on a real model: MiniLM as the base, adapter B stacked on adapter A.

Pushed with a live worker (upload verification, base manifest, adapter validation), then
loaded with ``strata.load_peft`` and compared with PEFT applied by hand to local folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def minilm() -> Path:
    from workers.packaged_models import minilm_dir

    return minilm_dir()


def fresh_base() -> Any:
    return transformers.BertModel.from_pretrained(str(minilm()))


def make_adapter(target: Path, *, seed: int, modules: list[str]) -> Path:
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=modules, init_lora_weights=False)
    model = peft.get_peft_model(fresh_base(), config)
    model.save_pretrained(str(target))
    return target


def outputs(model: Any) -> Any:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm()))
    batch = tokenizer(["select * from users where id = 1"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_push_with_validation_and_load_peft_stack(hub: Hub, celery_worker: object) -> None:
    import strata

    from workers.packaged_models import BASE_MODEL_FILES

    client = hub.client()
    base_dir = hub.tmp / "minilm"
    base_dir.mkdir()
    for name in BASE_MODEL_FILES:
        shutil.copyfile(minilm() / name, base_dir / name)
    base = client.push(base_dir, "alice/minilm", kind="base_model", wait=True, timeout=120)
    assert base.status == "valid", base.version.get("report")

    dir_a = make_adapter(hub.tmp / "a", seed=1, modules=["query", "value"])
    dir_b = make_adapter(hub.tmp / "b", seed=2, modules=["query", "key"])
    a = client.push(dir_a, "alice/sql-a", base="alice/minilm", wait=True, timeout=120)
    assert a.status == "valid", a.version.get("report")
    # The CLI waits for validation too and prints the report's findings.
    pushed_b = hub.cli(
        "push",
        str(dir_b),
        "alice/sql-b",
        "--base",
        "alice/minilm",
        "--parent",
        "alice/sql-a@v1",
        "--wait",
        "--timeout",
        "120",
    )
    assert pushed_b.returncode == 0, pushed_b.stdout + pushed_b.stderr
    assert "Pushed alice/sql-b@v1 (valid)" in pushed_b.stdout
    assert "Validation report:" in pushed_b.stdout

    # By hand: merge A into the base, then load B on top.
    expected_model = peft.PeftModel.from_pretrained(fresh_base(), str(dir_a)).merge_and_unload()
    expected_model = peft.PeftModel.from_pretrained(expected_model, str(dir_b))
    expected = outputs(expected_model.eval())
    plain = outputs(fresh_base().eval())
    assert not torch.allclose(expected, plain, atol=1e-4)  # the adapters do something

    loaded = strata.load_peft(fresh_base(), "alice/sql-b@v1", client=client)
    assert isinstance(loaded, peft.PeftModel)
    torch.testing.assert_close(outputs(loaded.eval()), expected, atol=1e-5, rtol=1e-4)

    # With no base given, the stack's base comes from the hub as well.
    from_hub = strata.load_peft(None, "alice/sql-b@v1", client=client)
    torch.testing.assert_close(outputs(from_hub.eval()), expected, atol=1e-5, rtol=1e-4)

    # The hub merges the whole stack into full weights on request (pull --merged --yes).
    merged = hub.cli_json("pull", "alice/sql-b@v1", "--merged", "--yes", "--timeout", "180")
    assert merged["label"] == "v1-merged"
    merged_model = transformers.BertModel.from_pretrained(merged["path"])
    reference = expected_model.merge_and_unload()
    torch.testing.assert_close(
        outputs(merged_model.eval()), outputs(reference.eval()), atol=1e-4, rtol=1e-3
    )
    again = hub.cli_json("pull", "alice/sql-b@v1", "--merged")
    assert again["stats"]["bytes_downloaded"] == 0
