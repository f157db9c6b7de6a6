"""Benchmarks: every valid adapter measured against its base on eval sets, and leaderboards.

Eval sets are dataset versions. A base model's default eval sets are the datasets its
version declares with ``evaluated_on``; an adapter version may declare more.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from hub.registry.access import Actor
from hub.registry.derived import check_job_limit
from hub.registry.errors import BadRequest
from hub.registry.jobs import job_request
from hub.registry.lineage import adapter_base, stack_of
from hub.registry.models import BenchmarkResult, Job, LineageEdge, Repository, Version

#: Metrics where a lower value is better; the stored ``score`` is negated for them.
LOWER_IS_BETTER = {BenchmarkResult.Metric.PERPLEXITY}


def eval_sets_for(version: Version) -> list[Version]:
    """The adapter's own eval sets, then its base's defaults, without repeats."""
    base = adapter_base(version)
    owners = [version] + ([base] if base is not None else [])
    found: dict[int, Version] = {}
    for owner in owners:
        edges = (
            LineageEdge.objects.filter(
                child=owner, kind=LineageEdge.Kind.EVALUATED_ON, parent__isnull=False
            )
            .select_related("parent__repository__namespace")
            .order_by("position")
        )
        for edge in edges:
            assert edge.parent is not None
            found.setdefault(edge.parent.pk, edge.parent)
    return list(found.values())


def inputs_key(
    *, base: Version, stack: list[Version], eval_set: Version, code: str, metric: str
) -> str:
    """sha256 of exactly what a benchmark measures; equal keys mean a reusable result."""
    canonical = json.dumps(
        {
            "base": base.commit_id,
            "stack": [v.commit_id for v in stack],
            "eval_set": eval_set.commit_id,
            "code": code,
            "metric": metric,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def benchmark_request(
    *, actor: Actor | None, version: Version, eval_sets: list[Version] | None = None
) -> Job | None:
    """Queue a benchmark of a valid adapter version; None when there is nothing to run."""
    if version.repository.kind != Repository.Kind.ADAPTER or version.variant:
        raise BadRequest("not_an_adapter", "Only adapter versions are benchmarked.")
    if version.status != Version.Status.VALID:
        raise BadRequest("version_not_valid", f"{version.label} has not passed validation.")
    sets = eval_sets if eval_sets is not None else eval_sets_for(version)
    if not sets:
        if eval_sets is not None:
            raise BadRequest("no_eval_sets", "Name at least one eval set (a dataset version).")
        return None
    for s in sets:
        if s.repository.kind != Repository.Kind.DATASET:
            raise BadRequest("not_a_dataset", f"{s.repository.full_name} is not a dataset.")
    done = set(
        BenchmarkResult.objects.filter(version=version, eval_set__in=sets).values_list(
            "eval_set_id", flat=True
        )
    )
    todo = [s for s in sets if s.pk not in done]
    if not todo:
        return None
    user = actor.user if actor is not None else None
    with transaction.atomic():
        if user is not None:
            check_job_limit(user)
        job, _ = job_request(
            kind=Job.Kind.BENCHMARK,
            version=version,
            params={"eval_sets": [s.pk for s in todo]},
            dedupe_key=f"benchmark:{version.pk}:{','.join(str(s.pk) for s in todo)}",
            requested_by=user,
        )
    return job


def benchmark_record(
    *,
    version: Version,
    eval_set: Version,
    code: str,
    metric: str,
    base_value: float,
    adapter_value: float,
    device: str,
    result: dict[str, Any],
    job: Job | None,
) -> BenchmarkResult:
    """Store one immutable result; the same inputs return the stored one."""
    base = adapter_base(version)
    assert base is not None
    key = inputs_key(
        base=base, stack=stack_of(version), eval_set=eval_set, code=code, metric=metric
    )
    existing = BenchmarkResult.objects.filter(inputs_key=key).first()
    if existing is not None:
        return existing
    delta = adapter_value - base_value
    score = -adapter_value if metric in LOWER_IS_BETTER else adapter_value
    try:
        with transaction.atomic():
            return BenchmarkResult.objects.create(
                version=version,
                eval_set=eval_set,
                base=base,
                inputs_key=key,
                metric=metric,
                base_value=base_value,
                adapter_value=adapter_value,
                delta=delta,
                score=score,
                device=device,
                result=result,
                job=job,
            )
    except IntegrityError:
        return BenchmarkResult.objects.get(inputs_key=key)


def benchmarks_for(version: Version) -> QuerySet[BenchmarkResult]:
    return version.benchmarks.select_related(
        "eval_set__repository__namespace", "base__repository__namespace"
    ).order_by("eval_set_id", "metric")


def leaderboard(
    *,
    visible: QuerySet[Repository],
    base_repository: Repository,
    eval_set: Repository | None = None,
    metric: str | None = None,
    limit: int = 50,
) -> QuerySet[BenchmarkResult]:
    """Best adapter versions on a base model, per eval set and metric, best first."""
    results = BenchmarkResult.objects.filter(
        base__repository=base_repository,
        version__repository__in=visible,
        eval_set__repository__in=visible,
        version__status=Version.Status.VALID,
    )
    if eval_set is not None:
        results = results.filter(eval_set__repository=eval_set)
    if metric:
        results = results.filter(metric=metric)
    return results.select_related(
        "version__repository__namespace", "eval_set__repository__namespace", "base"
    ).order_by("eval_set_id", "metric", "-score")[:limit]


def with_best_score(
    repos: QuerySet[Repository], *, eval_set: Repository, metric: str | None = None
) -> QuerySet[Repository]:
    """Repositories annotated with their best valid version's score on ``eval_set``.

    Only benchmarked repositories remain. Without ``metric``, the metric most results on
    that eval set use is taken, since scores of different metrics do not compare.
    """
    from django.db.models import Count, OuterRef, Subquery

    if metric is None:
        common = (
            BenchmarkResult.objects.filter(eval_set__repository=eval_set)
            .values("metric")
            .annotate(n=Count("id"))
            .order_by("-n", "metric")
            .first()
        )
        metric = common["metric"] if common else BenchmarkResult.Metric.PERPLEXITY
    best = (
        BenchmarkResult.objects.filter(
            version__repository=OuterRef("pk"),
            version__status=Version.Status.VALID,
            eval_set__repository=eval_set,
            metric=metric,
        )
        .order_by("-score")
        .values("score")[:1]
    )
    return repos.annotate(best_score=Subquery(best)).filter(best_score__isnull=False)
