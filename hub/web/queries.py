"""Reads the web pages need that the domain does not offer (yet).

Every function here scopes by an :class:`~hub.registry.access.Actor` exactly as the
domain does: repositories come from ``repositories_visible_to``, invalid versions are
shown only to people with the write role (``selectors.versions_visible_q``). Each is a
candidate to move into ``hub/registry/selectors.py``, as job visibility already has.

Every list costs a constant number of queries, whatever its length: the page's rows are
fetched, then one query per kind of related data for all of them together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.fields.json import KT
from django.db.models.functions import RowNumber

from hub.accounts.models import Membership, Namespace, Role
from hub.registry.access import Actor
from hub.registry.models import Alias, LineageEdge, Repository, Version
from hub.registry.selectors import versions_visible_q

#: Version columns list pages need (never the manifest, report or metadata blobs).
CARD_FIELDS = ("id", "repository_id", "number", "variant", "status", "total_size", "created_at")


# --- Cards: what a list shows about each repository -----------------------------------


@dataclass
class Card:
    repo: Repository
    #: The newest version the actor may see (pending ones included), or None.
    latest: Version | None = None
    #: What ``main`` points at (always a valid version), or None.
    main: Version | None = None
    #: The base model, only when the actor may see it.
    base: Repository | None = None
    #: LoRA rank from the newest validation report that has one (``facts.max_rank``).
    rank: int | None = None

    @property
    def status(self) -> str:
        return self.latest.status if self.latest else "empty"

    @property
    def size(self) -> int | None:
        version = self.latest or self.main
        return version.total_size if version else None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def latest_versions(actor: Actor, repository_ids: Sequence[int]) -> dict[int, Version]:
    """The newest primary version of each repository that the actor may see (one query)."""
    if not repository_ids:
        return {}
    rows = (
        Version.objects.filter(repository_id__in=repository_ids, variant="")
        .filter(versions_visible_q(actor))
        .annotate(
            row=Window(RowNumber(), partition_by=[F("repository_id")], order_by=F("number").desc()),
            max_rank=KT("report__facts__max_rank"),
        )
        .filter(row=1)
        .only(*CARD_FIELDS)
    )
    return {v.repository_id: v for v in rows}


def main_versions(repository_ids: Sequence[int]) -> dict[int, Version]:
    """The version ``main`` points at for each repository (one query)."""
    if not repository_ids:
        return {}
    rows = (
        Version.objects.filter(aliases__repository_id__in=repository_ids, aliases__name=Alias.MAIN)
        .annotate(max_rank=KT("report__facts__max_rank"))
        .only(*CARD_FIELDS)
    )
    return {v.repository_id: v for v in rows}


def repository_cards(
    actor: Actor, repos: Iterable[Repository], visible: QuerySet[Repository]
) -> list[Card]:
    """Cards for a page of repositories: three queries, whatever the page size.

    ``repos`` must have ``namespace`` and ``base_repository__namespace`` selected.
    """
    repos = list(repos)
    ids = [r.pk for r in repos]
    latest = latest_versions(actor, ids)
    main = main_versions(ids)
    base_ids = {r.base_repository_id for r in repos if r.base_repository_id}
    visible_bases = (
        set(visible.filter(pk__in=base_ids).values_list("pk", flat=True)) if base_ids else set()
    )
    cards = []
    for repo in repos:
        card = Card(repo=repo, latest=latest.get(repo.pk), main=main.get(repo.pk))
        if repo.base_repository_id in visible_bases:
            card.base = repo.base_repository
        for version in (card.latest, card.main):
            rank = _as_int(getattr(version, "max_rank", None)) if version else None
            if rank is not None:
                card.rank = rank
                break
        cards.append(card)
    return cards


def card_queryset(repos: QuerySet[Repository]) -> QuerySet[Repository]:
    """What a card needs joined in, without the selector's heavy ``main`` prefetch."""
    return repos.prefetch_related(None).select_related("namespace", "base_repository__namespace")


def adapter_counts(visible: QuerySet[Repository], base_ids: Sequence[int]) -> dict[int, int]:
    """How many adapters the actor can see on each base model (one grouped query)."""
    if not base_ids:
        return {}
    rows = (
        visible.filter(kind=Repository.Kind.ADAPTER, base_repository_id__in=base_ids)
        .order_by()
        .values("base_repository_id")
        .annotate(n=Count("pk"))
    )
    return {row["base_repository_id"]: row["n"] for row in rows}


# --- Search ---------------------------------------------------------------------------


def latest_status_subquery(actor: Actor) -> Subquery:
    """The status of the newest version of the outer repository that the actor may see."""
    return Subquery(
        Version.objects.filter(repository=OuterRef("pk"), variant="")
        .filter(versions_visible_q(actor))
        .order_by("-number")
        .values("status")[:1]
    )


def id_list(ids: list[int]) -> Any:
    """An ``__in`` right-hand side for many ids: one array parameter on PostgreSQL."""
    if settings.USES_POSTGRES:
        from django.db.models.expressions import RawSQL

        return RawSQL("SELECT unnest(%s::bigint[])", (ids,))
    return ids


def filter_status(actor: Actor, repos: QuerySet[Repository], status: str) -> QuerySet[Repository]:
    """Repositories whose newest visible version has this status."""
    return repos.annotate(latest_status=latest_status_subquery(actor)).filter(latest_status=status)


def filter_rank(
    repos: QuerySet[Repository], low: int | None, high: int | None
) -> QuerySet[Repository]:
    """Repositories whose ``main`` version's report says ``facts.max_rank`` is in range.

    Only validated versions have a report, so this finds validated adapters only.
    """
    if low is None and high is None:
        return repos
    condition: dict[str, Any] = {"aliases__name": Alias.MAIN}
    if low is not None:
        condition["aliases__version__report__facts__max_rank__gte"] = low
    if high is not None:
        condition["aliases__version__report__facts__max_rank__lte"] = high
    return repos.filter(**condition)


@dataclass
class FacetValue:
    value: str
    label: str
    count: int


def facet_kind(repos: QuerySet[Repository]) -> list[FacetValue]:
    rows = repos.order_by().values("kind").annotate(n=Count("pk")).order_by("-n")
    labels = dict(Repository.Kind.choices)
    return [FacetValue(r["kind"], str(labels.get(r["kind"], r["kind"])), r["n"]) for r in rows]


def facet_base(
    repos: QuerySet[Repository], visible: QuerySet[Repository], limit: int = 12
) -> list[FacetValue]:
    """Base models of the matching adapters, only those the actor may see."""
    rows = (
        repos.filter(base_repository__in=visible.values("pk"))
        .order_by()
        .values("base_repository__namespace__name", "base_repository__name")
        .annotate(n=Count("pk"))
        .order_by("-n", "base_repository__name")[:limit]
    )
    out = []
    for r in rows:
        name = f"{r['base_repository__namespace__name']}/{r['base_repository__name']}"
        out.append(FacetValue(name, name, r["n"]))
    return out


def facet_license(repos: QuerySet[Repository], limit: int = 12) -> list[FacetValue]:
    rows = (
        repos.exclude(license="")
        .order_by()
        .values("license")
        .annotate(n=Count("pk"))
        .order_by("-n", "license")[:limit]
    )
    return [FacetValue(r["license"], r["license"], r["n"]) for r in rows]


def facet_owner(repos: QuerySet[Repository], limit: int = 12) -> list[FacetValue]:
    rows = (
        repos.order_by()
        .values("namespace__name")
        .annotate(n=Count("pk"))
        .order_by("-n", "namespace__name")[:limit]
    )
    return [FacetValue(r["namespace__name"], r["namespace__name"], r["n"]) for r in rows]


def facet_tag(repos: QuerySet[Repository], limit: int = 16) -> list[FacetValue]:
    """The most common tags among the matches (tags are a JSON list on each repository)."""
    if repos.query.is_empty():
        return []
    if settings.USES_POSTGRES:
        from django.db import connection

        inner, params = repos.order_by().values("tags").query.sql_with_params()
        sql = (
            "SELECT t.tag, COUNT(*) AS n FROM ("  # noqa: S608 - inner SQL is Django's, params bound
            f"{inner}) AS m, jsonb_array_elements_text(m.tags) AS t(tag) "
            "GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, limit])
            return [FacetValue(tag, tag, n) for tag, n in cursor.fetchall()]
    counts: Counter[str] = Counter()
    for tags in repos.order_by().values_list("tags", flat=True).iterator(chunk_size=2000):
        counts.update(t for t in tags or [] if isinstance(t, str))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [FacetValue(tag, tag, n) for tag, n in ranked]


# --- Lineage --------------------------------------------------------------------------


@dataclass
class LineageWalk:
    """Ancestors and descendants of a version, as the actor may see them."""

    root: Version
    nodes: dict[int, Version] = field(default_factory=dict)
    #: Edges between visible nodes, and edges to external dataset URIs (parent None).
    edges: list[LineageEdge] = field(default_factory=list)
    ancestors: set[int] = field(default_factory=set)
    descendants: set[int] = field(default_factory=set)
    #: True when the walk stopped at ``max_nodes`` before reaching every node.
    truncated: bool = False


def lineage_walk(
    actor: Actor,
    version: Version,
    visible: QuerySet[Repository],
    *,
    depth: int = 6,
    max_nodes: int = 60,
) -> LineageWalk:
    """Breadth first, one level at a time: about two queries per level, not per node.

    Like ``lineage.lineage_graph`` (which queries once per node), hidden repositories
    and invalid versions the actor may not see are dropped with their edges, so a
    private parent never shows. ``max_nodes`` bounds a popular adapter's descendants.
    """
    walk = LineageWalk(root=version, nodes={version.pk: version})
    status_ok = versions_visible_q(actor)
    for direction in ("up", "down"):
        frontier = [version.pk]
        seen = {version.pk}
        for _ in range(depth):
            if not frontier or walk.truncated:
                break
            if direction == "up":
                edges = list(
                    LineageEdge.objects.filter(child_id__in=frontier)
                    .select_related("parent__repository__namespace")
                    .defer(*_HEAVY("parent"))
                    .order_by("child_id", "kind", "position")
                )
            else:
                # A base model may have thousands of children: pick the first few by
                # id alone, then join only those.
                order = ("parent_id", "kind", "position", "child_id")
                first = LineageEdge.objects.filter(parent_id__in=frontier).order_by(*order)
                edges = list(
                    LineageEdge.objects.filter(
                        pk__in=list(first.values_list("pk", flat=True)[: max_nodes + 1])
                    )
                    .select_related("child__repository__namespace")
                    .defer(*_HEAVY("child"))
                    .order_by(*order)
                )
            others = [e.parent if direction == "up" else e.child for e in edges]
            repo_ids = {o.repository_id for o in others if o is not None}
            version_ids = {o.pk for o in others if o is not None}
            allowed_repos = set(visible.filter(pk__in=repo_ids).values_list("pk", flat=True))
            allowed_versions = set(
                Version.objects.filter(pk__in=version_ids)
                .filter(status_ok)
                .values_list("pk", flat=True)
            )
            frontier = []
            for edge, other in zip(edges, others, strict=True):
                if other is None:
                    if direction == "up":
                        walk.edges.append(edge)  # an external dataset URI
                    continue
                if other.repository_id not in allowed_repos or other.pk not in allowed_versions:
                    continue
                if other.pk not in walk.nodes and len(walk.nodes) >= max_nodes:
                    walk.truncated = True
                    continue
                walk.edges.append(edge)
                walk.nodes.setdefault(other.pk, other)
                (walk.ancestors if direction == "up" else walk.descendants).add(other.pk)
                if other.pk not in seen:
                    seen.add(other.pk)
                    frontier.append(other.pk)
    return walk


def _HEAVY(prefix: str) -> list[str]:
    return [f"{prefix}__manifest", f"{prefix}__report", f"{prefix}__metadata"]


# --- Namespaces -----------------------------------------------------------------------


def namespaces_writable_by(actor: Actor) -> list[Namespace]:
    """Where the actor may create repositories: their own namespace and orgs (write+)."""
    if actor.user is None:
        return []
    if actor.is_site_admin:
        return list(Namespace.objects.order_by("kind", "name")[:500])
    return list(
        Namespace.objects.filter(
            Q(user=actor.user)
            | Q(memberships__user=actor.user, memberships__role__in=[Role.WRITE, Role.ADMIN])
        )
        .distinct()
        .order_by("-kind", "name")  # "user" before "org"
    )


def members_of(namespace: Namespace) -> list[Membership]:
    return list(namespace.memberships.select_related("user").order_by("user__username"))


def is_org_admin(actor: Actor, namespace: Namespace) -> bool:
    if actor.user is None or namespace.kind != Namespace.Kind.ORG:
        return False
    if actor.is_site_admin:
        return True
    return Membership.objects.filter(namespace=namespace, user=actor.user, role=Role.ADMIN).exists()


# --- Autocomplete ---------------------------------------------------------------------


def complete_repositories(
    visible: QuerySet[Repository], *, kind: str, text: str, limit: int = 10
) -> list[dict[str, Any]]:
    """Visible repositories of a kind whose ``namespace/name`` contains ``text``."""
    repos = visible.filter(kind=kind)
    text = text.strip()
    if text:
        ns, slash, name = text.partition("/")
        if slash:
            repos = repos.filter(namespace__name__iexact=ns, name__istartswith=name)
        else:
            repos = repos.filter(Q(name__icontains=text) | Q(namespace__name__istartswith=text))
    rows = list(repos.select_related("namespace").order_by("-downloads", "name")[:limit])
    mains = main_versions([r.pk for r in rows])
    return [
        {
            "id": r.full_name,
            "description": r.description[:120],
            "main": mains[r.pk].label if r.pk in mains else None,
        }
        for r in rows
    ]
