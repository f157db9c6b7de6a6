"""peft and transformers, unchanged, pulling from and pushing to the hub."""

from __future__ import annotations

import pytest

from hub.registry.lineage import adapter_base
from hub.registry.models import Job, LineageEdge, Repository, Version
from tests.hfcompat.conftest import (
    Hub,
    Models,
    adapter_files,
    folder_files,
    make_repo,
    publish,
    publish_llama,
    publish_merged,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PULL_LLAMA = """
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ids = torch.tensor([[1, 5, 9, 17, 33, 2, 64, 80]])

def logits(model):
    with torch.no_grad():
        return model(input_ids=ids).logits

def base():
    return AutoModelForCausalLM.from_pretrained(ARGS["base"])

expected = logits(PeftModel.from_pretrained(base(), ARGS["adapter"]))
out = {"changes_outputs": not torch.allclose(logits(base()), expected)}
for rev in ("v1", ARGS["commit"], "main"):
    pulled = PeftModel.from_pretrained(base(), "alice/llama-lora", revision=rev)
    out[rev] = torch.equal(logits(pulled), expected)
emit(out)
"""


def test_peft_loads_a_tiny_llama_adapter_from_the_hub(hub: Hub, models: Models) -> None:
    version = publish_llama(hub, models)
    out = hub.run(
        PULL_LLAMA,
        args={
            "base": str(models.llama_base),
            "adapter": str(models.llama_adapter),
            "commit": version.commit_id,
        },
    )
    assert out == {"changes_outputs": True, "v1": True, version.commit_id: True, "main": True}


PULL_MINILM = """
import torch
from peft import PeftModel
from transformers import AutoModel

ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102]])

def hidden(model):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state

local = PeftModel.from_pretrained(AutoModel.from_pretrained(ARGS["base"]), ARGS["adapter"])
expected = hidden(local)
pulled = PeftModel.from_pretrained(
    AutoModel.from_pretrained(ARGS["base"]), "alice/minilm-lora", revision="v1"
)
emit({"equal": torch.equal(hidden(pulled), expected)})
"""


def test_peft_loads_a_minilm_adapter_from_the_hub(hub: Hub, models: Models) -> None:
    base = make_repo(hub.owner, "minilm", Repository.Kind.BASE_MODEL)
    publish(base, folder_files(models.minilm_base, ["config.json", "model.safetensors"]))
    repo = make_repo(hub.owner, "minilm-lora", Repository.Kind.ADAPTER)
    publish(
        repo,
        adapter_files(models.minilm_adapter, "alice/minilm"),
        meta={"base_model": "alice/minilm"},
    )
    args = {"base": str(models.minilm_base), "adapter": str(models.minilm_adapter)}
    assert hub.run(PULL_MINILM, args=args) == {"equal": True}


PUSH = """
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])

def logits(model):
    with torch.no_grad():
        return model(input_ids=ids).logits

# The base comes from the hub too, so PEFT records it as "alice/tiny-llama".
torch.manual_seed(3)
lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
model = get_peft_model(AutoModelForCausalLM.from_pretrained("alice/tiny-llama"), lora)
expected = logits(model)
first = model.push_to_hub("alice/pushed-lora", commit_message="LoRA from PEFT")
again = model.push_to_hub("alice/pushed-lora")
pulled = PeftModel.from_pretrained(
    AutoModelForCausalLM.from_pretrained("alice/tiny-llama"), "alice/pushed-lora",
    revision=first.oid,
)
emit({
    "commit": first.oid,
    "url": first.commit_url,
    "again": again.oid,
    "equal": torch.equal(logits(pulled), expected),
})
"""


def test_peft_push_to_hub_then_pull_back(hub: Hub, models: Models) -> None:
    base = make_repo(hub.owner, "tiny-llama", Repository.Kind.BASE_MODEL)
    base_version = publish(base, folder_files(models.llama_base))
    out = hub.run(PUSH)
    assert out["equal"] is True
    assert out["url"] == f"{hub.endpoint}/alice/pushed-lora/commit/{out['commit']}"
    # Pushing the same adapter again changes nothing, so no new version appears.
    assert out["again"] == out["commit"]

    version = Version.objects.get(commit_id=out["commit"])
    assert version.repository.full_name == "alice/pushed-lora"
    assert version.repository.kind == Repository.Kind.ADAPTER
    assert (version.label, version.message) == ("v1", "LoRA from PEFT")
    assert sorted(version.files.values_list("path", flat=True)) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    # Lineage came from adapter_config.json (transformers rewrites the model card).
    base_of = adapter_base(version)
    assert base_of is not None
    assert base_of.pk == base_version.pk
    assert version.parent_edges.get().kind == LineageEdge.Kind.ADAPTER_OF
    # Checked like any other push.
    assert Job.objects.filter(version=version, kind=Job.Kind.VALIDATE).exists()


LOAD_MERGED = """
import torch
from transformers import AutoModelForCausalLM

ids = torch.tensor([[1, 5, 9, 17, 33, 2, 64, 80]])

def logits(model):
    with torch.no_grad():
        return model(input_ids=ids).logits

pulled = AutoModelForCausalLM.from_pretrained("alice/llama-lora", revision="v1-merged")
local = AutoModelForCausalLM.from_pretrained(ARGS["merged"])
emit({"equal": torch.equal(logits(pulled), logits(local))})
"""


def test_transformers_loads_a_merged_revision(hub: Hub, models: Models) -> None:
    version = publish_llama(hub, models)
    publish_merged(version, folder_files(models.llama_merged))
    assert hub.run(LOAD_MERGED, args={"merged": str(models.llama_merged)}) == {"equal": True}
