"""Lineage references: parsing what a push declares, resolving it, walking the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.registry.access import Actor, VisibleRepositories, repository_for
from hub.registry.errors import BadRequest, NotFound
from hub.registry.models import LineageEdge, Repository, Version


@dataclass(frozen=True)
class Ref:
    """``namespace/name`` with an optional revision (``@v3``, ``@main``, ``@<commit>``)."""

    repo: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        text = text.strip()
        repo, _, revision = text.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise BadRequest(
                "invalid_reference",
                f"{text!r} is not a reference of the form namespace/name[@rev].",
            )
        return cls(repo=repo, revision=revision or None)

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


@dataclass(frozen=True)
class DatasetRef:
    """A hub dataset version, or an external dataset named by URI."""

    ref: Ref | None = None
    uri: str = ""

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        if "://" in text:
            if len(text) > 500:
                raise BadRequest("invalid_reference", "Dataset URIs are limited to 500 characters.")
            return cls(uri=text)
        return cls(ref=Ref.parse(text))


@dataclass(frozen=True)
class LineageSpec:
    """What a push declares about where a version came from."""

    base: Ref | None = None
    stacked_on: list[Ref] = field(default_factory=list)
    finetuned_from: Ref | None = None
    trained_on: list[DatasetRef] = field(default_factory=list)
    evaluated_on: list[DatasetRef] = field(default_factory=list)


def spec_from_metadata(meta: dict[str, Any]) -> LineageSpec:
    """The lineage a push declares, from its JSON metadata."""

    def refs(key: str) -> list[str]:
        value = meta.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest("invalid_metadata", f"{key} must be a list of strings.")
        return value

    base = meta.get("base_model")
    if base is not None and not isinstance(base, str):
        raise BadRequest("invalid_metadata", "base_model must be a string namespace/name[@rev].")
    if base and meta.get("base_revision") and "@" not in base:
        base = f"{base}@{meta['base_revision']}"
    finetuned = meta.get("finetuned_from")
    if finetuned is not None and not isinstance(finetuned, str):
        raise BadRequest("invalid_metadata", "finetuned_from must be a string.")
    return LineageSpec(
        base=Ref.parse(base) if base else None,
        stacked_on=[Ref.parse(r) for r in refs("stacked_on")],
        finetuned_from=Ref.parse(finetuned) if finetuned else None,
        trained_on=[DatasetRef.parse(d) for d in refs("datasets")],
        evaluated_on=[DatasetRef.parse(d) for d in refs("eval_sets")],
    )


def stored_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The free-form part of the push metadata that is stored on the version."""
    params = meta.get("training_params") or {}
    if not isinstance(params, dict):
        raise BadRequest("invalid_metadata", "training_params must be a JSON object.")
    return {"training_params": params} if params else {}


def resolve_ref(actor: Actor, ref: Ref, *, kind: str, what: str) -> Version:
    """The version a reference names, as the actor sees it; without a revision, ``main``."""
    from hub.registry.selectors import version_resolve

    namespace, name = ref.repo.split("/")
    try:
        repository = repository_for(actor, namespace, name)
    except NotFound as exc:
        raise BadRequest(
            "reference_not_found", f"The {what} {ref.repo} does not exist or is not visible to you."
        ) from exc
    if repository.kind != kind:
        raise BadRequest(
            "reference_wrong_kind",
            f"The {what} {ref.repo} is a {repository.get_kind_display()}, not a "
            f"{Repository.Kind(kind).label}.",
        )
    try:
        version = version_resolve(repository, ref.revision or "main")
    except NotFound as exc:
        raise BadRequest(
            "reference_not_found",
            f"The {what} {ref.repo} has no revision {ref.revision or 'main'!r}"
            + ("" if ref.revision else " (no valid version yet)")
            + ".",
        ) from exc
    if version.status == Version.Status.INVALID:
        raise BadRequest(
            "reference_invalid", f"The {what} {ref} failed validation and cannot be built on."
        )
    return version


def adapter_base(version: Version) -> Version | None:
    edge = (
        version.parent_edges.filter(kind=LineageEdge.Kind.ADAPTER_OF)
        .select_related("parent")
        .first()
    )
    return edge.parent if edge else None


def stack_of(version: Version) -> list[Version]:
    """The adapters to apply, in order: the ``stacked_on`` parents, then the version itself."""
    parents = [
        e.parent
        for e in version.parent_edges.filter(kind=LineageEdge.Kind.STACKED_ON)
        .select_related("parent__repository__namespace")
        .order_by("position")
        if e.parent is not None
    ]
    return [*parents, version]


@dataclass
class Graph:
    nodes: dict[int, Version] = field(default_factory=dict)
    edges: list[LineageEdge] = field(default_factory=list)


def lineage_graph(version: Version, *, visible: VisibleRepositories, depth: int = 8) -> Graph:
    """Ancestors and descendants of a version, breadth first, limited to visible repos.

    ``visible`` says which repositories the caller may read; hidden nodes and their
    edges are dropped, so a private parent never appears to outsiders.
    """
    graph = Graph(nodes={version.pk: version})
    for direction in ("up", "down"):
        # Level by level, one query per level whatever its width.
        frontier, seen = [version.pk], {version.pk}
        for _ in range(depth):
            if not frontier:
                break
            if direction == "up":
                edges = LineageEdge.objects.filter(child_id__in=frontier).select_related(
                    "parent__repository__namespace"
                )
            else:
                edges = LineageEdge.objects.filter(parent_id__in=frontier).select_related(
                    "child__repository__namespace"
                )
            others = [(edge, edge.parent if direction == "up" else edge.child) for edge in edges]
            visible.check(other.repository_id for _, other in others if other is not None)
            frontier = []
            for edge, other in others:
                if other is None:
                    graph.edges.append(edge)  # an external dataset URI
                    continue
                if other.repository_id not in visible:
                    continue
                graph.edges.append(edge)
                graph.nodes.setdefault(other.pk, other)
                if other.pk not in seen:
                    seen.add(other.pk)
                    frontier.append(other.pk)
    return graph
