"""REST endpoints for repositories: create, search, read, update, delete."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
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
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        responses=RepositorySerializer(many=True),
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
        paginator = RepositoryCursor()
        page = paginator.paginate_queryset(repos, request, view=self)
        return paginator.get_paginated_response(RepositorySerializer(page, many=True).data)

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
