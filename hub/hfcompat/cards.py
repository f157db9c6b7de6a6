"""Lineage of a Hub commit, read from the files it leaves in the repository.

Hub clients have no field for Strata's lineage, so it comes from what they already write:

* ``README.md`` front matter (the model card):
  ``base_model: ns/name`` or ``ns/name@v1`` (or ``base_model_revision: v1``),
  ``datasets: [...]`` and a ``strata:`` mapping with ``stacked_on``, ``finetuned_from``,
  ``eval_sets`` and ``training_params``;
* otherwise ``adapter_config.json``'s ``base_model_name_or_path`` (and ``revision``), when
  it names a repository (``ns/name``): that is what PEFT records when the base model was
  loaded from this hub.

The result is the same metadata dictionary the REST push takes, so the usual rules apply
(``hub.registry.lineage.spec_from_metadata``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from hub.registry.access import Actor, repository_for
from hub.registry.errors import BadRequest, NotFound
from hub.registry.models import Repository

#: ``namespace/name`` with an optional ``@revision``: a reference to a repository here.
_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9._-]+)?$")
#: Where a Hub dataset id that is not a dataset of this hub is recorded as coming from.
HF_DATASETS_URL = "https://huggingface.co/datasets/"


def is_ref(value: object) -> bool:
    return isinstance(value, str) and bool(_REF_RE.match(value.strip()))


class _CardLoader(yaml.SafeLoader):
    """Safe YAML without aliases: ``*a`` repeated in nested lists is a "billion laughs"
    card whose few hundred bytes expand, once turned into JSON metadata, into gigabytes.
    Model cards have no use for anchors."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a model card", event.start_mark
            )
        return super().compose_node(parent, index)


def front_matter(text: str) -> dict[str, Any]:
    """The YAML mapping between the leading ``---`` lines of a model card, or ``{}``."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return {}
    try:
        data = yaml.load("\n".join(lines[1:end]), Loader=_CardLoader)  # noqa: S506 - safe
    except yaml.YAMLError as exc:
        raise BadRequest(
            "invalid_model_card", f"README.md front matter is not valid YAML: {exc}"
        ) from exc
    except RecursionError as exc:  # PyYAML composes nested nodes recursively
        raise BadRequest("invalid_model_card", "README.md front matter nests too deeply.") from exc
    return data if isinstance(data, dict) else {}


def _string_list(value: object, *, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest("invalid_model_card", f"README.md: {what} must be a string or a list.")


def _dataset(actor: Actor, entry: str) -> str:
    """A hub dataset reference when this hub has it (visible to the pusher), else a URI.

    The model card's ``datasets`` key holds Hub dataset ids, so ids that are not datasets
    here are recorded as the huggingface.co datasets they name.
    """
    entry = entry.strip()
    if "://" in entry or "@" in entry:
        return entry  # a URI, or an explicit pin that must resolve here
    if is_ref(entry):
        namespace, name = entry.split("/")
        try:
            repository = repository_for(actor, namespace, name)
        except NotFound:
            repository = None
        if repository is not None and repository.kind == Repository.Kind.DATASET:
            return entry
    return HF_DATASETS_URL + entry


def _base(card: dict[str, Any], adapter_config: dict[str, Any] | None) -> tuple[str | None, str]:
    """The declared base reference, and a note on what was seen when none qualifies."""
    seen: list[str] = []
    bases = _string_list(card.get("base_model"), what="base_model")
    if len(bases) > 1:
        raise BadRequest(
            "invalid_model_card",
            "README.md names several base models; a Strata adapter has exactly one.",
        )
    if bases:
        base = bases[0].strip()
        revision = card.get("base_model_revision")
        if is_ref(base):
            if revision and "@" not in base:
                base = f"{base}@{revision}"
            return base, ""
        seen.append(f"README.md base_model {base!r}")
    if adapter_config is not None:
        named = adapter_config.get("base_model_name_or_path")
        if isinstance(named, str) and is_ref(named):
            revision = adapter_config.get("revision")
            if isinstance(revision, str) and revision and "@" not in named:
                named = f"{named}@{revision}"
            return named.strip(), ""
        if named:
            seen.append(f"adapter_config.json base_model_name_or_path {named!r}")
    return None, "; ".join(seen)


def commit_metadata(
    actor: Actor,
    repository: Repository,
    *,
    message: str,
    readme: str | None,
    adapter_config: bytes | None,
) -> dict[str, Any]:
    """Push metadata (REST shape) for a commit leaving these files in ``repository``."""
    card = front_matter(readme) if readme else {}
    strata = card.get("strata") or {}
    if not isinstance(strata, dict):
        raise BadRequest("invalid_model_card", "README.md: strata must be a mapping.")
    meta: dict[str, Any] = {"message": message}
    if repository.kind == Repository.Kind.DATASET:
        return meta
    meta["datasets"] = [
        _dataset(actor, d) for d in _string_list(card.get("datasets"), what="datasets")
    ]
    meta["eval_sets"] = _string_list(strata.get("eval_sets"), what="strata.eval_sets")
    if strata.get("training_params") is not None:
        meta["training_params"] = strata["training_params"]
    if repository.kind != Repository.Kind.ADAPTER:
        return meta

    config: dict[str, Any] | None = None
    if adapter_config is not None:
        try:
            parsed = json.loads(adapter_config)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(
                "invalid_adapter_config", f"adapter_config.json is not valid JSON: {exc}"
            ) from exc
        config = parsed if isinstance(parsed, dict) else None
    base, seen = _base(card, config)
    if base is None:
        raise BadRequest(
            "base_required",
            "An adapter must name its base model on this hub. Add `base_model: namespace/name` "
            "(optionally `@v1`) to the front matter of README.md, or load the base model from "
            "this hub so that adapter_config.json's base_model_name_or_path names it."
            + (f" Seen: {seen}, which is not a repository id of this hub." if seen else ""),
        )
    meta["base_model"] = base
    meta["stacked_on"] = _string_list(strata.get("stacked_on"), what="strata.stacked_on")
    finetuned = strata.get("finetuned_from")
    if finetuned is not None:
        meta["finetuned_from"] = finetuned
    return meta
