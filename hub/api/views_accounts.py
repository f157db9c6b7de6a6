"""REST endpoints for the caller's identity, tokens, organizations and jobs."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.accounts import services as accounts
from hub.accounts.models import Membership, Namespace
from hub.api.common import actor_of
from hub.api.serializers import JobSerializer, TokenCreateSerializer, iso
from hub.registry.access import Actor
from hub.registry.errors import NotAuthenticated, NotFound
from hub.registry.selectors import jobs_of_user, jobs_visible_to


def require_user(actor: Actor) -> User:
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Sign in or send a token to do this.")
    return actor.user


#: The OpenAPI shape of :func:`token_json` (the lists below used to be documented as objects).
TOKEN_SCHEMA: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(),
    "name": serializers.CharField(),
    "prefix": serializers.CharField(),
    "scope": serializers.CharField(),
    "created_at": serializers.DateTimeField(),
    "last_used_at": serializers.DateTimeField(allow_null=True),
    "expires_at": serializers.DateTimeField(allow_null=True),
    "revoked_at": serializers.DateTimeField(allow_null=True),
}


def token_json(token: Any) -> dict[str, Any]:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "scope": token.scope,
        "created_at": iso(token.created_at),
        "last_used_at": iso(token.last_used_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
    }


class WhoAmIView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        user = require_user(actor_of(request))
        orgs = Membership.objects.filter(user=user).select_related("namespace")
        return Response(
            {
                "username": user.username,
                "namespace": accounts.user_namespace(user).name,
                "orgs": [{"name": m.namespace.name, "role": m.role} for m in orgs],
                "token_scope": getattr(request.auth, "scope", None),
            }
        )


class TokenListView(APIView):
    @extend_schema(responses=inline_serializer("Token", TOKEN_SCHEMA, many=True))
    def get(self, request: Request) -> Response:
        user = require_user(actor_of(request))
        return Response([token_json(t) for t in user.api_tokens.order_by("-created_at")])

    @extend_schema(request=TokenCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        actor = actor_of(request)
        user = require_user(actor)
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["scope"] == "write" and not actor.write_scope:
            from hub.registry.errors import PermissionDenied

            raise PermissionDenied("token_scope", "A read-only token cannot mint write tokens.")
        issued = accounts.token_create(user=user, **data.validated_data)
        # The secret appears in this answer only; it is not stored.
        return Response(
            token_json(issued.token) | {"token": issued.secret}, status=status.HTTP_201_CREATED
        )


class TokenDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        user = require_user(actor_of(request))
        accounts.token_revoke(user=user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrgCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=96)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class MemberSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=["read", "write", "admin"])


def _org(name: str) -> Namespace:
    org = Namespace.objects.filter(name=name, kind=Namespace.Kind.ORG).first()
    if org is None:
        raise NotFound("namespace_not_found", f"Organization {name} was not found.")
    return org


class OrgListView(APIView):
    @extend_schema(request=OrgCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        user = require_user(actor_of(request))
        data = OrgCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        org = accounts.organization_create(actor=user, **data.validated_data)
        return Response({"name": org.name}, status=status.HTTP_201_CREATED)


class OrgMembersView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "OrgMember",
            {"username": serializers.CharField(), "role": serializers.CharField()},
            many=True,
        )
    )
    def get(self, request: Request, org: str) -> Response:
        namespace = _org(org)
        return Response(
            [
                {"username": m.user.username, "role": m.role}
                for m in namespace.memberships.select_related("user").order_by("user__username")
            ]
        )


class OrgMemberDetailView(APIView):
    @extend_schema(request=MemberSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, org: str, username: str) -> Response:
        actor = actor_of(request)
        user = require_user(actor)
        data = MemberSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = User.objects.filter(username=username).first()
        if member is None:
            raise NotFound("user_not_found", f"User {username} was not found.")
        m = accounts.membership_set(
            actor=user, org=_org(org), user=member, role=data.validated_data["role"]
        )
        return Response({"username": member.username, "role": m.role})

    @extend_schema(responses={204: None})
    def delete(self, request: Request, org: str, username: str) -> Response:
        user = require_user(actor_of(request))
        member = User.objects.filter(username=username).first()
        if member is None:
            raise NotFound("user_not_found", f"User {username} was not found.")
        accounts.membership_remove(actor=user, org=_org(org), user=member)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobListView(APIView):
    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request: Request) -> Response:
        actor = actor_of(request)
        require_user(actor)
        return Response(JobSerializer(jobs_of_user(actor)[:100], many=True).data)


class JobDetailView(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        job = jobs_visible_to(actor_of(request)).filter(pk=job_id).first()
        if job is None:
            raise NotFound("job_not_found", "No such job.")
        return Response(JobSerializer(job).data)
