"""REST endpoints for versions: push, list, detail, files, download, lineage, aliases."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiTypes,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hub.accounts.models import Role
from hub.api.common import actor_of, json_field
from hub.api.serializers import (
    AliasSerializer,
    FileSerializer,
    VersionSerializer,
    VersionSummarySerializer,
    version_json,
    version_ref,
)
from hub.api.uploads import HashingUploadHandler
from hub.registry import services
from hub.registry.access import Actor, VisibleRepositories, repository_for
from hub.registry.downloads import download_record
from hub.registry.errors import BadRequest
from hub.registry.lineage import (
    lineage_graph,
    spec_from_metadata,
    stack_of,
    stored_metadata,
)
from hub.registry.lookups import version_files, version_relations
from hub.registry.models import Repository, Version
from hub.registry.names import check_file_path
from hub.registry.selectors import (
    readable_version,
    version_file,
    version_for,
    versions_for,
)
from hub.registry.serving import blob_response


class VersionListView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(responses=VersionSummarySerializer(many=True))
    def get(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name)
        versions = versions_for(actor, repo)[:500]
        return Response(VersionSummarySerializer(versions, many=True).data)

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT},
        responses={201: VersionSerializer, 200: VersionSerializer},
        description=(
            "Push a version in one request. Each file is a form part whose field name is its "
            "path in the version; an optional `metadata` part holds JSON: message, base_model, "
            "base_revision, stacked_on, finetuned_from, datasets, eval_sets, training_params, "
            "and files: {path: {sha256}} to have each file checked."
        ),
    )
    def post(self, request: Request, namespace: str, name: str) -> Response:
        actor = actor_of(request)
        # Check access before reading a byte of the body.
        repo = repository_for(actor, namespace, name, need=Role.WRITE)
        request._request.upload_handlers = [HashingUploadHandler(request._request)]
        form = request.data
        require_whole_body(request)
        meta = json_field(form.get("metadata"), what="metadata")
        declared = meta.get("files") or {}
        if not isinstance(declared, dict):
            raise BadRequest("invalid_metadata", "files must map paths to {sha256}.")
        incoming: list[services.IncomingFile] = []
        for path, parts in request.FILES.lists():
            # .items() kept only the last of repeated parts; a repeated path is an error.
            if len(parts) > 1:
                raise BadRequest("duplicate_path", f"{path} is sent more than once.")
            uploaded = parts[0]
            check_file_path(path)
            sha = uploaded.sha256
            entry = declared.get(path) or {}
            claimed = entry.get("sha256") if isinstance(entry, dict) else entry
            if claimed is not None and not isinstance(claimed, str):
                # A non-string here used to raise AttributeError (a 500).
                raise BadRequest("invalid_metadata", f"files[{path!r}] must be {{sha256: hex}}.")
            services.check_sha256(claimed, sha, path=path)
            incoming.append(services.IncomingFile(path, uploaded.size or 0, sha, uploaded.file))
        if not incoming:
            raise BadRequest("no_files", "Send the files as multipart parts named by their path.")
        published = publish_files(actor, repo, incoming, meta)
        code = status.HTTP_201_CREATED if published.created else status.HTTP_200_OK
        return Response(version_payload(actor, published.version, repo), status=code)


def require_whole_body(request: Request) -> None:
    """Refuse a request body that ended before its Content-Length (the client went away).

    Django's multipart parser drops a file whose closing boundary never came but keeps
    the parts before it, so a push cut off mid-upload used to publish the files that had
    arrived as a version. Django's ``LimitedStream`` counts the bytes actually received.
    """
    stream = getattr(request._request, "_stream", None)
    received, expected = getattr(stream, "_pos", None), getattr(stream, "limit", None)
    if isinstance(received, int) and isinstance(expected, int) and received < expected:
        raise BadRequest(
            "upload_incomplete",
            f"The request body ended after {received} of {expected} bytes; nothing was saved.",
        )


def publish_files(
    actor: Actor, repo: Repository, incoming: list[services.IncomingFile], meta: dict[str, Any]
) -> services.Published:
    """Store blobs (outside any transaction), then publish the version atomically."""
    services.check_json_limits(meta, what="metadata")
    spec = spec_from_metadata(meta)
    message = meta.get("message") or ""
    if not isinstance(message, str):
        raise BadRequest("invalid_metadata", "message must be a string.")
    metadata = stored_metadata(meta)
    # Every check first: a push refused for its files, metadata or references must not
    # leave blobs behind (they used to be stored before the lineage was resolved).
    services.version_check(
        actor=actor,
        repository=repo,
        paths=[f.path for f in incoming],
        spec=spec,
        message=message,
        metadata=metadata,
        size=sum(f.size for f in incoming),
    )
    blobs = [(f.path, services.blob_ingest(f)) for f in incoming]
    return services.version_publish(
        actor=actor,
        repository=repo,
        files=blobs,
        spec=spec,
        message=message,
        metadata=metadata,
    )


def version_payload(actor: Actor, version: Version, repository: Repository) -> dict[str, Any]:
    # Three statements in one round trip and no serializer: this is the hottest REST read
    # after downloads (see hub/registry/lookups.py and serializers.version_json).
    version.repository = repository
    relations = version_relations(version)
    visible = VisibleRepositories(actor)
    visible.check(e.parent.repository_id for e in relations.edges if e.parent)
    data = version_json(version, files=relations.files, edges=relations.edges, visible=visible)
    data["jobs"] = [
        {"id": str(job.id), "kind": job.kind, "state": job.state} for job in relations.jobs
    ]
    return data


class VersionDetailView(APIView):
    @extend_schema(responses=VersionSerializer)
    def get(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        repo, version = readable_version(actor, namespace, name, revision)
        return Response(version_payload(actor, version, repo))


class VersionFilesView(APIView):
    @extend_schema(responses=FileSerializer(many=True))
    def get(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        _, version = readable_version(actor, namespace, name, revision)
        return Response(FileSerializer(version_files(version), many=True).data)


class FileDownloadView(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 302: None, 206: None},
        description="Redirects to a presigned URL on S3; streams with Range support otherwise.",
    )
    def get(
        self, request: Request, namespace: str, name: str, revision: str, path: str
    ) -> HttpResponse | StreamingHttpResponse:
        actor = actor_of(request)
        repo, version = readable_version(actor, namespace, name, revision)
        vf = version_file(version, path)
        # A whole GET of a payload file counts; HEAD and ranged reads (resumes) do not.
        if (
            request.method == "GET"
            and not request.headers.get("Range")
            and services.is_payload_file(repo, path)
        ):
            download_record(version)
        return blob_response(
            request._request,
            vf.blob,
            filename=path.rsplit("/", 1)[-1],
            headers={"X-Strata-Commit": version.commit_id},
        )


class LineageView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("depth", int)],
        responses=OpenApiTypes.OBJECT,
        description="Ancestors and descendants (nodes and typed edges), and the resolved stack.",
    )
    def get(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        actor = actor_of(request)
        repo, version = readable_version(actor, namespace, name, revision)
        visible = VisibleRepositories(actor)
        try:
            depth = max(1, min(16, int(request.query_params.get("depth", 8))))
        except ValueError as exc:
            raise BadRequest("invalid_depth", "depth must be an integer.") from exc
        graph = lineage_graph(version, visible=visible, depth=depth)
        stack = []
        if repo.kind == Repository.Kind.ADAPTER:
            from hub.registry.lineage import adapter_base

            base = adapter_base(version)
            if base is not None and base.repository_id in visible:
                stack.append(version_ref(base))
            stack += [version_ref(v) for v in stack_of(version) if v.repository_id in visible]
        return Response(
            {
                "root": version_ref(version),
                "nodes": [version_ref(v) | {"id": v.pk} for v in graph.nodes.values()],
                "edges": [
                    {
                        "child": e.child_id,
                        "parent": e.parent_id,
                        "kind": e.kind,
                        "position": e.position,
                        "external_uri": e.external_uri or None,
                    }
                    for e in graph.edges
                ],
                "stack": stack,
            }
        )


class AliasListView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "AliasEntry",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "commit_id": serializers.CharField(),
            },
            many=True,
        )
    )
    def get(self, request: Request, namespace: str, name: str) -> Response:
        repo = repository_for(actor_of(request), namespace, name)
        return Response(
            [
                {"name": a.name, "version": a.version.label, "commit_id": a.version.commit_id}
                for a in repo.aliases.select_related("version").order_by("name")
            ]
        )


class AliasDetailView(APIView):
    @extend_schema(request=AliasSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, namespace: str, name: str, alias: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name, need=Role.WRITE)
        data = AliasSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = version_for(actor, repo, data.validated_data["version"])
        created = services.alias_set(actor=actor, repository=repo, name=alias, version=version)
        return Response({"name": created.name, "version": version.label})

    @extend_schema(responses={204: None})
    def delete(self, request: Request, namespace: str, name: str, alias: str) -> Response:
        actor = actor_of(request)
        repo = repository_for(actor, namespace, name, need=Role.WRITE)
        services.alias_delete(actor=actor, repository=repo, name=alias)
        return Response(status=status.HTTP_204_NO_CONTENT)
