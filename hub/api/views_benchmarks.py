"""REST endpoints for benchmark results, leaderboards and version comparison."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.api.common import actor_of
from hub.api.serializers import JobSerializer, iso, version_ref
from hub.registry import benchmarks
from hub.registry.access import Actor, VisibleRepositories, repositories_visible_to, repository_for
from hub.registry.errors import BadRequest, NotFound
from hub.registry.lineage import Ref, resolve_ref
from hub.registry.models import BenchmarkResult, Repository, Version
from hub.registry.selectors import readable_version, version_for


def result_json(r: BenchmarkResult) -> dict[str, Any]:
    return {
        "version": version_ref(r.version),
        "eval_set": version_ref(r.eval_set),
        "base": version_ref(r.base),
        "metric": r.metric,
        "base_value": r.base_value,
        "adapter_value": r.adapter_value,
        "delta": r.delta,
        "device": r.device,
        "created_at": iso(r.created_at),
        "result": r.result,
    }


class BenchmarkRequestSerializer(serializers.Serializer[Any]):
    eval_sets = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, max_length=16
    )


class VersionBenchmarksView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        _, version = readable_version(actor, namespace, name, revision)
        results = list(benchmarks.benchmarks_for(version))
        visible = VisibleRepositories(actor)
        visible.check(r.eval_set.repository_id for r in results)
        return Response([result_json(r) for r in results if r.eval_set.repository_id in visible])


class BenchmarkRequestView(APIView):
    @extend_schema(
        request=BenchmarkRequestSerializer,
        responses={202: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        description=(
            "Benchmark a valid adapter version against its base on eval sets (its declared "
            "ones and its base's defaults when none are named). 200 when results exist."
        ),
    )
    def post(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        _, version = readable_version(actor, namespace, name, revision)
        data = BenchmarkRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        names = data.validated_data.get("eval_sets")
        sets = (
            [
                resolve_ref(actor, Ref.parse(n), kind=Repository.Kind.DATASET, what="eval set")
                for n in names
            ]
            if names
            else None
        )
        job = benchmarks.benchmark_request(
            actor=actor if actor.user else None, version=version, eval_sets=sets
        )
        if job is None:
            return Response(
                {
                    "job": None,
                    "results": [result_json(r) for r in benchmarks.benchmarks_for(version)],
                }
            )
        return Response({"job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)


class LeaderboardView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("eval_set", str, description="Dataset id, namespace/name."),
            OpenApiParameter("metric", str, enum=BenchmarkResult.Metric.values),
        ],
        responses=OpenApiTypes.OBJECT,
        description="Best adapters on a base model per eval set and metric, with delta over base.",
    )
    def get(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        base = repository_for(actor, namespace, name)
        if base.kind != Repository.Kind.BASE_MODEL:
            raise BadRequest("not_a_base_model", f"{base.full_name} is not a base model.")
        eval_set = None
        if request.query_params.get("eval_set"):
            ns, _, ds = request.query_params["eval_set"].partition("/")
            eval_set = repository_for(actor, ns, ds)
        metric = request.query_params.get("metric")
        if metric and metric not in BenchmarkResult.Metric.values:
            raise BadRequest(
                "invalid_metric", f"metric must be one of {BenchmarkResult.Metric.values}."
            )
        rows = benchmarks.leaderboard(
            visible=repositories_visible_to(actor),
            base_repository=base,
            eval_set=eval_set,
            metric=metric,
        )
        boards: dict[str, dict[str, Any]] = {}
        for r in rows:
            key = f"{r.eval_set.repository.full_name}@{r.eval_set.label}:{r.metric}"
            board = boards.setdefault(
                key,
                {
                    "eval_set": version_ref(r.eval_set),
                    "metric": r.metric,
                    "lower_is_better": r.metric in benchmarks.LOWER_IS_BETTER,
                    "base_value": r.base_value,
                    "entries": [],
                },
            )
            board["entries"].append(
                {"version": version_ref(r.version), "value": r.adapter_value, "delta": r.delta}
            )
        return Response({"base": base.full_name, "leaderboards": list(boards.values())})


def _version_from_param(actor: Actor, text: str | None, what: str) -> Version:
    if not text:
        raise BadRequest("missing_parameter", f"Give {what} as namespace/name@revision.")
    ref = Ref.parse(text)
    namespace, name = ref.repo.split("/")
    repo = repository_for(actor, namespace, name)
    return version_for(actor, repo, ref.revision or "main")


class CompareView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("a", str), OpenApiParameter("b", str)],
        responses=OpenApiTypes.OBJECT,
        description=(
            "Compare two adapter versions: config and module/rank changes, per-module delta "
            "norms side by side, and benchmark results on shared eval sets."
        ),
    )
    def get(self, request: Request) -> Response:
        actor = actor_of(request)
        a = _version_from_param(actor, request.query_params.get("a"), "a")
        b = _version_from_param(actor, request.query_params.get("b"), "b")
        return Response(compare_versions(a, b))


def _module_stats(version: Version) -> dict[str, dict[str, Any]]:
    """Per-module statistics from the validation report (rank, delta_norm, …)."""
    stats = (version.report or {}).get("module_stats") or []
    return {s["module"]: s for s in stats if isinstance(s, dict) and "module" in s}


def compare_versions(a: Version, b: Version) -> dict[str, Any]:
    if Version.Status.VALID not in (a.status, b.status) and not (a.report and b.report):
        raise NotFound("report_not_ready", "Neither version has a validation report yet.")
    stats_a, stats_b = _module_stats(a), _module_stats(b)
    modules = sorted(set(stats_a) | set(stats_b))
    config_a = ((a.report or {}).get("normalized_config")) or {}
    config_b = ((b.report or {}).get("normalized_config")) or {}
    config_diff = {
        key: {"a": config_a.get(key), "b": config_b.get(key)}
        for key in sorted(set(config_a) | set(config_b))
        if config_a.get(key) != config_b.get(key)
    }
    bench_a = {
        (r.eval_set_id, r.metric): r
        for r in a.benchmarks.select_related("eval_set__repository__namespace")
    }
    bench_b = {(r.eval_set_id, r.metric): r for r in b.benchmarks.all()}
    shared = [
        {
            "eval_set": version_ref(bench_a[k].eval_set),
            "metric": k[1],
            "a": bench_a[k].adapter_value,
            "b": bench_b[k].adapter_value,
            "difference": bench_b[k].adapter_value - bench_a[k].adapter_value,
        }
        for k in bench_a.keys() & bench_b.keys()
    ]
    return {
        "a": version_ref(a),
        "b": version_ref(b),
        "config_diff": config_diff,
        "modules": [
            {
                "module": m,
                "rank_a": stats_a.get(m, {}).get("rank"),
                "rank_b": stats_b.get(m, {}).get("rank"),
                "delta_norm_a": stats_a.get(m, {}).get("delta_norm"),
                "delta_norm_b": stats_b.get(m, {}).get("delta_norm"),
                "change": _change(stats_a.get(m), stats_b.get(m)),
            }
            for m in modules
        ],
        "benchmarks": shared,
    }


def _change(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return "rank changed" if a.get("rank") != b.get("rank") else "same rank"
