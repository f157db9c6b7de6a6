"""Lineage read from a commit's model card and adapter config (no server needed)."""

from __future__ import annotations

import json

import pytest

from hub.hfcompat.cards import commit_metadata, front_matter
from hub.registry.access import Actor
from hub.registry.errors import BadRequest
from hub.registry.models import Repository

ADAPTER = Repository(kind=Repository.Kind.ADAPTER)


def meta(readme: str | None, config: dict[str, object] | None = None) -> dict[str, object]:
    return commit_metadata(
        Actor.anonymous(),
        ADAPTER,
        message="m",
        readme=readme,
        adapter_config=json.dumps(config).encode() if config is not None else None,
    )


def test_front_matter_is_the_leading_yaml_block() -> None:
    assert front_matter("---\nbase_model: a/b\n---\n# title\n---\n") == {"base_model": "a/b"}
    assert front_matter("# no front matter\n---\nx: 1\n---\n") == {}
    with pytest.raises(BadRequest):
        front_matter("---\nbase_model: [a\n---\n")


def test_the_model_card_wins_and_may_pin_a_revision() -> None:
    card = "---\nbase_model: alice/base\nbase_model_revision: v2\n---\n"
    assert meta(card, {"base_model_name_or_path": "alice/other"})["base_model"] == "alice/base@v2"
    assert meta("---\nbase_model: alice/base@v3\n---\n")["base_model"] == "alice/base@v3"
    strata = "---\nbase_model: a/b\nstrata:\n  stacked_on: [a/x@v1]\n  finetuned_from: a/y\n---\n"
    assert meta(strata) | {"message": "m"} == {
        "message": "m",
        "base_model": "a/b",
        "stacked_on": ["a/x@v1"],
        "finetuned_from": "a/y",
        "datasets": [],
        "eval_sets": [],
    }


def test_adapter_config_is_the_fallback_when_it_names_a_repository() -> None:
    local_card = "---\nbase_model: /home/me/llama\n---\n"
    config = {"base_model_name_or_path": "alice/base", "revision": "v1"}
    assert meta(local_card, config)["base_model"] == "alice/base@v1"
    with pytest.raises(BadRequest, match="base_model") as refused:
        meta(local_card, {"base_model_name_or_path": "/home/me/llama"})
    assert "/home/me/llama" in refused.value.message
    with pytest.raises(BadRequest, match="several base models"):
        meta("---\nbase_model: [a/b, c/d]\n---\n")
