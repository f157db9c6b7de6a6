"""REST endpoints for direct-to-storage pushes (presigned and multipart uploads)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.accounts.models import Role
from hub.api.common import actor_of
from hub.api.serializers import iso
from hub.api.views_versions import version_payload
from hub.registry import uploads
from hub.registry.access import Actor, repositories_visible_to, repository_for
from hub.registry.errors import NotFound
from hub.registry.models import UploadSession
from hub.registry.storage import UploadedPart


class DeclaredFileSerializer(serializers.Serializer[Any]):
    path = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=0)
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$")


class UploadStartSerializer(serializers.Serializer[Any]):
    files = DeclaredFileSerializer(many=True)


class PartSerializer(serializers.Serializer[Any]):
    part_number = serializers.IntegerField(min_value=1, max_value=uploads.MAX_PARTS)
    etag = serializers.CharField(max_length=200)


class UploadCommitSerializer(serializers.Serializer[Any]):
    parts = serializers.DictField(child=PartSerializer(many=True), required=False)
    metadata = serializers.DictField(required=False)


def session_json(session: Any) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "repo": session.repository.full_name,
        "state": session.state,
        "expires_at": iso(session.expires_at),
        "version": session.version.label if session.version else None,
        "error": {"code": session.error_code, "message": session.error_message}
        if session.error_code
        else None,
    }


class UploadStartView(APIView):
    @extend_schema(
        request=UploadStartSerializer,
        responses={201: OpenApiTypes.OBJECT},
        description=(
            "Declare files by path, size and sha256. Each answer says `exists` (nothing to "
            "send), or gives a presigned `put` (URL and headers) or `multipart` part URLs."
        ),
    )
    def post(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name, need=Role.WRITE)
        data = UploadStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        declared = [uploads.DeclaredFile(**f) for f in data.validated_data["files"]]
        session, instructions = uploads.upload_start(actor=actor, repository=repo, files=declared)
        return Response(
            session_json(session) | {"files": instructions}, status=status.HTTP_201_CREATED
        )


def session_for(actor: Actor, session_id: str) -> UploadSession:
    """The caller's upload session while they can still read its repository: a member
    removed from an organization since they opened it learns nothing more about a
    private repository through it (its state, the version it published)."""
    session = uploads.upload_session_for(actor, session_id)
    if not repositories_visible_to(actor).filter(pk=session.repository_id).exists():
        raise NotFound("upload_not_found", "No such upload session.")
    return session


class UploadDetailView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, session_id: str) -> Response:
        return Response(session_json(session_for(actor_of(request), session_id)))


class UploadCommitView(APIView):
    @extend_schema(
        request=UploadCommitSerializer,
        responses={201: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT},
        description=(
            "Complete the upload. Answers 201 with the published version, or 202 with a "
            "`finalize_upload` job when large files must be hashed first."
        ),
    )
    def post(self, request: Request, session_id: str) -> Response:
        actor = actor_of(request)
        session = session_for(actor, session_id)
        data = UploadCommitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parts = {
            path: [UploadedPart(p["part_number"], p["etag"]) for p in given]
            for path, given in (data.validated_data.get("parts") or {}).items()
        }
        outcome = uploads.upload_commit(
            actor=actor,
            session=session,
            parts=parts,
            metadata=data.validated_data.get("metadata") or {},
        )
        if outcome.version is not None:
            return Response(
                version_payload(actor, outcome.version, session.repository),
                status=status.HTTP_201_CREATED,
            )
        assert outcome.job is not None
        return Response(
            session_json(outcome.session)
            | {"job": {"id": str(outcome.job.pk), "kind": outcome.job.kind}},
            status=status.HTTP_202_ACCEPTED,
        )
