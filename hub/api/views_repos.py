"""REST endpoints for repositories: create, search, read, update, delete."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.accounts.services import user_namespace
from hub.api.common import actor_of
from hub.api.serializers import (
    RepositoryCreateSerializer,
    RepositorySerializer,
    RepositoryUpdateSerializer,
)
from hub.registry import services
from hub.registry.access import repositories_visible_to, repository_for
from hub.registry.errors import BadRequest, NotAuthenticated
from hub.registry.selectors import repositories_search

SORTS = {
    "downloads": ("-downloads", "-id"),
    "recent": ("-updated_at", "-id"),
    "name": ("name", "id"),
    # Best benchmark score on ?eval_set= (and ?metric=); see benchmarks.with_best_score.
    "score": ("-best_score", "-id"),
}


class RepositoryCursor(CursorPagination):
    page_size = 20
    max_page_size = 100
    page_size_query_param = "limit"

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        sort = request.query_params.get("sort", "recent")
        if sort not in SORTS:
            raise BadRequest("invalid_sort", f"sort must be one of {', '.join(SORTS)}.")
        return SORTS[sort]


class RepositoryListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str),
            OpenApiParameter("base", str, description="Base model id, namespace/name."),
            OpenApiParameter("owner", str),
            OpenApiParameter("tag", str),
            OpenApiParameter("license", str),
            OpenApiParameter("status", str, description="Status of the main version."),
            OpenApiParameter("q", str, description="Text search over name and description."),
            OpenApiParameter("sort", str, enum=list(SORTS)),
            OpenApiParameter(
                "eval_set", str, description="With sort=score: the dataset id, namespace/name."
            ),
            OpenApiParameter("metric", str, description="With sort=score: the metric."),
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        # Named: a page is one object, so the generator would call this "retrieve" too.
        operation_id="repos_list",
        # A cursor page, not a bare list (it used to be documented as one).
        responses=inline_serializer(
            "RepositoryPage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": RepositorySerializer(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        repos = repositories_search(
            repositories_visible_to(actor_of(request)),
            kind=params.get("kind"),
            base=params.get("base"),
            owner=params.get("owner"),
            tag=params.get("tag"),
            license=params.get("license"),
            status=params.get("status"),
            query=params.get("q"),
        )
        if params.get("sort") == "score":
            repos = self._by_score(request, repos)
        paginator = RepositoryCursor()
        page = paginator.paginate_queryset(repos, request, view=self)
        return paginator.get_paginated_response(RepositorySerializer(page, many=True).data)

    def _by_score(self, request: Request, repos: Any) -> Any:
        from hub.registry.benchmarks import with_best_score
        from hub.registry.models import BenchmarkResult

        eval_set = request.query_params.get("eval_set")
        if not eval_set or "/" not in eval_set:
            raise BadRequest(
                "eval_set_required", "sort=score needs eval_set=namespace/name (a dataset)."
            )
        namespace, _, name = eval_set.partition("/")
        dataset = repository_for(actor_of(request), namespace, name)
        metric = request.query_params.get("metric")
        if metric and metric not in BenchmarkResult.Metric.values:
            raise BadRequest(
                "invalid_metric", f"metric must be one of {BenchmarkResult.Metric.values}."
            )
        return with_best_score(repos, eval_set=dataset, metric=metric)

    @extend_schema(request=RepositoryCreateSerializer, responses={201: RepositorySerializer})
    def post(self, request: Request) -> Response:
        actor = actor_of(request)
        if actor.user is None:
            raise NotAuthenticated("auth_required", "Sign in or send a token to do this.")
        data = RepositoryCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        namespace = fields.pop("namespace", None) or user_namespace(actor.user).name
        repo = services.repository_create(actor=actor, namespace=namespace, **fields)
        return Response(RepositorySerializer(repo).data, status=status.HTTP_201_CREATED)


class RepositoryDetailView(APIView):
    @extend_schema(responses=RepositorySerializer)
    def get(self, request: Request, namespace: str, name: str) -> Response:
        repo = repository_for(actor_of(request), namespace, name)
        repo = repositories_search(repositories_visible_to(actor_of(request))).get(pk=repo.pk)
        return Response(RepositorySerializer(repo).data)

    @extend_schema(request=RepositoryUpdateSerializer, responses=RepositorySerializer)
    def patch(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name)
        data = RepositoryUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        repo = services.repository_update(actor=actor, repository=repo, **data.validated_data)
        return Response(RepositorySerializer(repo).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name)
        services.repository_delete(actor=actor, repository=repo)
        return Response(status=status.HTTP_204_NO_CONTENT)
