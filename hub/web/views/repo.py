"""Repository and version pages: model card, versions, files, lineage, report, usage."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hub.accounts.models import Role
from hub.registry.access import Actor, repositories_visible_to, repository_for, role_in
from hub.registry.lineage import adapter_base, stack_of
from hub.registry.lookups import version_files
from hub.registry.models import Alias, Job, LineageEdge, Repository, Version, VersionFile
from hub.registry.selectors import version_for, versions_for
from hub.web import lineage_svg, queries, rendering, reports, usage
from hub.web.views.common import actor_of, domain_errors

MAX_VERSIONS = 50
MAX_ADAPTERS_SHOWN = 12
MANIFEST_SAMPLE = 40


def can_write(actor: Actor, repo: Repository) -> bool:
    role = role_in(actor, repo.namespace)
    return actor.write_scope and role is not None and Role.rank(role) >= Role.rank(Role.WRITE)


def current_version(
    actor: Actor, repo: Repository, revision: str | None, versions: list[Version]
) -> Version | None:
    """The version a page shows: the one asked for, else ``main``, else the newest."""
    if revision:
        return version_for(actor, repo, revision)
    main = Alias.objects.filter(repository=repo, name=Alias.MAIN).values("version_id").first()
    if main is not None:
        return version_for(actor, repo, "main")
    primary = [v for v in versions if not v.variant]
    return version_for(actor, repo, primary[0].label) if primary else None


def weights_file(files: list[VersionFile]) -> str | None:
    names = [f.path for f in files]
    for preferred in ("adapter_model.safetensors", "model.safetensors"):
        if preferred in names:
            return preferred
    for name in names:
        if name.endswith((".safetensors", ".jsonl", ".parquet")):
            return name
    return names[0] if names else None


@domain_errors
def repository(
    request: HttpRequest, namespace: str, name: str, revision: str | None = None
) -> HttpResponse:
    actor = actor_of(request)
    repo = repository_for(actor, namespace, name)
    visible = repositories_visible_to(actor)
    versions = list(
        versions_for(actor, repo)
        .select_related("created_by")
        .defer("manifest", "report", "metadata")[:MAX_VERSIONS]
    )
    version = current_version(actor, repo, revision, versions)
    aliases: dict[int, list[str]] = {}
    for alias in repo.aliases.order_by("name").values("name", "version_id"):
        aliases.setdefault(alias["version_id"], []).append(alias["name"])
    merged = {v.number: v for v in versions if v.variant == Version.Variant.MERGED}
    context: dict[str, Any] = {
        "repo": repo,
        "version": version,
        "versions": [v for v in versions if not v.variant],
        "merged_by_number": merged,
        "aliases": aliases,
        "more_versions": len(versions) >= MAX_VERSIONS,
        "can_write": can_write(actor, repo),
        "is_main": version is not None and "main" in aliases.get(version.pk, []),
        "explicit_revision": revision,
    }
    if version is not None:
        context.update(
            version_context(actor, repo, version, visible, merged, is_main=context["is_main"])
        )
    if repo.kind == Repository.Kind.BASE_MODEL:
        context.update(base_model_context(actor, repo, visible))
        if version is not None:
            context["manifest_rows"], context["manifest_total"] = manifest_sample(version)
    return render(request, "web/repository.html", context)


def version_context(
    actor: Actor,
    repo: Repository,
    version: Version,
    visible: QuerySet[Repository],
    merged: dict[int, Version],
    *,
    is_main: bool,
) -> dict[str, Any]:
    files = list(version_files(version))
    readme = next((f for f in files if f.path == "README.md"), None)
    card = rendering.model_card(readme.blob) if readme else None
    report = version.report or {}
    findings = reports.findings_of(report)
    facts = reports.facts_of(report)
    module_rows, module_total = reports.module_stats(report)
    # A base model's graph would be every adapter on it; its page lists those instead.
    depth = 1 if repo.kind == Repository.Kind.BASE_MODEL else 3
    walk = queries.lineage_walk(actor, version, visible, depth=depth, max_nodes=24)
    drawing = lineage_svg.draw(walk) if len(walk.nodes) > 1 or walk.edges else None

    base = stack = None
    base_facts: dict[str, Any] = {}
    if repo.kind == Repository.Kind.ADAPTER:
        found = adapter_base(version)
        base = walk.nodes.get(found.pk) if found is not None else None
        if base is not None:
            base_facts = reports.facts_of(
                Version.objects.filter(pk=base.pk).values_list("report", flat=True).first()
            )
        # The walk already dropped what the actor may not see (private, invalid).
        stack = [v for v in stack_of(version)[:-1] if v.pk in walk.nodes]
    merged_version = merged.get(version.number) if not version.variant else None
    merged_files = list(version_files(merged_version)) if merged_version else []
    rank = facts.get("max_rank") if isinstance(facts.get("max_rank"), int) else None
    snippets = usage.snippets(
        usage.UsageContext(
            repo=repo,
            version=version,
            is_main=is_main,
            weights=weights_file(files),
            base=base,
            base_architecture=(
                base_facts.get("architecture")
                if base is not None
                else facts.get("architecture")
                if repo.kind == Repository.Kind.BASE_MODEL
                else None
            ),
            rank=rank,
            stacked_on=tuple(f"{v.repository.full_name}@{v.label}" for v in stack or []),
        )
    )
    # The actor can see this version (it was found through version_for), so its jobs too.
    jobs = list(
        Job.objects.filter(version=version)
        .defer("log_tail", "result", "params")
        .order_by("-created_at")[:5]
    )
    datasets = [
        e
        for e in walk.edges
        if e.child_id == version.pk
        and e.kind in (LineageEdge.Kind.TRAINED_ON, LineageEdge.Kind.EVALUATED_ON)
    ]
    return {
        "files": files,
        "total_size": sum(f.blob.size for f in files),
        "card": card,
        "findings": findings,
        "severity": reports.severity_counts(findings),
        "fact_rows": reports.fact_rows(repo.kind, facts),
        "compat": reports.compatibility(facts, findings)
        if repo.kind == Repository.Kind.ADAPTER
        else [],
        "module_rows": module_rows,
        "module_total": module_total,
        "has_report": bool(report),
        "lineage": drawing,
        "lineage_truncated": walk.truncated,
        "base": base,
        "stack": stack or [],
        "datasets": datasets,
        "merged_version": merged_version,
        "merged_files": merged_files,
        "snippets": snippets,
        "jobs": jobs,
        "training_params": (version.metadata or {}).get("training_params") or {},
        "benchmarks": benchmark_charts(version, visible),
    }


def base_model_context(
    actor: Actor, repo: Repository, visible: QuerySet[Repository]
) -> dict[str, Any]:
    adapters = queries.card_queryset(
        visible.filter(kind=Repository.Kind.ADAPTER, base_repository=repo)
    )
    shown = list(adapters.order_by("-downloads", "-updated_at", "-pk")[:MAX_ADAPTERS_SHOWN])
    return {
        "adapter_cards": queries.repository_cards(actor, shown, visible),
        "adapter_count": adapters.count(),
    }


def manifest_sample(version: Version) -> tuple[list[tuple[str, str, str]], int]:
    manifest = version.manifest if isinstance(version.manifest, dict) else {}
    rows = []
    for tensor, entry in list(manifest.items())[:MANIFEST_SAMPLE]:
        entry = entry if isinstance(entry, dict) else {}
        shape = entry.get("shape") or []
        rows.append(
            (
                tensor,
                str(entry.get("dtype") or ""),
                " \u00d7 ".join(str(d) for d in shape) if isinstance(shape, list) else "",
            )
        )
    return rows, len(manifest)


@domain_errors
def lineage(request: HttpRequest, namespace: str, name: str, revision: str) -> HttpResponse:
    actor = actor_of(request)
    repo = repository_for(actor, namespace, name)
    version = version_for(actor, repo, revision)
    visible = repositories_visible_to(actor)
    walk = queries.lineage_walk(actor, version, visible, depth=8, max_nodes=80)
    drawing = lineage_svg.draw(walk)
    stack: list[Version] = []
    base = None
    if repo.kind == Repository.Kind.ADAPTER:
        found = adapter_base(version)
        base = walk.nodes.get(found.pk) if found is not None else None
        stack = [v for v in stack_of(version) if v.pk in walk.nodes]
    return render(
        request,
        "web/lineage.html",
        {
            "repo": repo,
            "version": version,
            "lineage": drawing,
            "truncated": walk.truncated,
            "base": base,
            "stack": stack,
        },
    )


def benchmark_charts(version: Version, visible: QuerySet[Repository]) -> list[dict[str, Any]]:
    """One bar chart per eval set and metric: the base, this version, and its best siblings."""
    from hub.registry.benchmarks import LOWER_IS_BETTER, benchmarks_for, leaderboard

    charts = []
    for result in benchmarks_for(version):
        if not visible.filter(pk=result.eval_set.repository_id).exists():
            continue
        siblings = [
            r
            for r in leaderboard(
                visible=visible,
                base_repository=result.base.repository,
                eval_set=result.eval_set.repository,
                metric=result.metric,
                limit=6,
            )
            if r.version_id != version.pk and r.eval_set_id == result.eval_set_id
        ][:4]
        entries: list[tuple[str, float, str]] = [
            (f"base ({result.base.repository.full_name})", result.base_value, "base"),
            (f"{version.repository.full_name} {version.label}", result.adapter_value, "this"),
        ]
        entries += [
            (f"{r.version.repository.full_name} {r.version.label}", r.adapter_value, "sibling")
            for r in siblings
        ]
        top = max(abs(value) for _, value, _ in entries) or 1.0
        rows = [
            {
                "label": label,
                "value": value,
                "kind": kind,
                "width": round(100 * abs(value) / top, 1),
            }
            for label, value, kind in entries
        ]
        charts.append(
            {
                "eval_set": result.eval_set,
                "metric": result.get_metric_display(),
                "lower_is_better": result.metric in LOWER_IS_BETTER,
                "delta": result.delta,
                "device": result.device,
                "rows": rows,
                "speed": (result.result or {}).get("speed"),
            }
        )
    return charts
