"""Request and response shapes for the REST API (also the OpenAPI schema)."""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from hub.registry.models import Job, LineageEdge, Repository, Version, VersionFile


def iso(dt: Any) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


class RepositoryCreateSerializer(serializers.Serializer[Any]):
    namespace = serializers.CharField(max_length=96, required=False)
    name = serializers.CharField(max_length=96)
    kind = serializers.ChoiceField(choices=Repository.Kind.values)
    visibility = serializers.ChoiceField(
        choices=Repository.Visibility.values, default=Repository.Visibility.PUBLIC
    )
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    license = serializers.CharField(max_length=64, required=False, allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=32
    )


class RepositoryUpdateSerializer(serializers.Serializer[Any]):
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    license = serializers.CharField(max_length=64, required=False, allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, max_length=32
    )
    visibility = serializers.ChoiceField(choices=Repository.Visibility.values, required=False)
    auto_merge = serializers.BooleanField(required=False)


class RepositorySerializer(serializers.ModelSerializer[Repository]):
    id = serializers.CharField(source="full_name")
    namespace = serializers.CharField(source="namespace.name")
    base_model = serializers.SerializerMethodField()
    main = serializers.SerializerMethodField()

    class Meta:
        model = Repository
        fields = [
            "id",
            "namespace",
            "name",
            "kind",
            "visibility",
            "description",
            "license",
            "tags",
            "base_model",
            "auto_merge",
            "downloads",
            "main",
            "created_at",
            "updated_at",
        ]

    def get_base_model(self, repo: Repository) -> str | None:
        base = repo.base_repository
        return base.full_name if base is not None else None

    def get_main(self, repo: Repository) -> dict[str, Any] | None:
        # Filled by selectors.repositories_search's prefetch, so lists cost no extra queries.
        aliases = getattr(repo, "main_aliases", None)
        if not aliases:
            return None
        version = aliases[0].version
        return {"label": version.label, "commit_id": version.commit_id, "status": version.status}


# The serializers of hot reads declare their fields instead of deriving them from the
# model: ModelSerializer introspects the model on every instantiation (~1.5 ms a version).


class FileSerializer(serializers.Serializer[Any]):
    path = serializers.CharField()
    size = serializers.IntegerField(source="blob.size")
    sha256 = serializers.CharField(source="blob.sha256")
    uploaded_sha256 = serializers.CharField(
        source="uploaded_blob_id",
        allow_null=True,
        help_text="The pushed bytes' sha256 when the hub serves a normalized form (an "
        "adapter_config.json naming the hub's base); null when they are what is served.",
    )


class EdgeSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=LineageEdge.Kind.choices)
    position = serializers.IntegerField()
    parent = serializers.SerializerMethodField()  # type: ignore[assignment]
    external_uri = serializers.CharField()
    weight = serializers.FloatField(allow_null=True)

    def get_parent(self, edge: LineageEdge) -> dict[str, Any] | None:
        if edge.parent is None:
            return None
        return version_ref(edge.parent)


def version_ref(version: Version) -> dict[str, Any]:
    return {
        "repo": version.repository.full_name,
        "kind": version.repository.kind,
        "label": version.label,
        "commit_id": version.commit_id,
        "status": version.status,
    }


class VersionSerializer(serializers.Serializer[Version]):
    """A version with its files and lineage: the schema of :func:`version_json`, and the
    reference it is tested against (``jobs`` is added by the views)."""

    repo = serializers.CharField(source="repository.full_name")
    number = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]
    variant = serializers.ChoiceField(choices=Version.Variant.choices, allow_blank=True)
    commit_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Version.Status.choices)
    message = serializers.CharField(allow_blank=True)
    metadata = serializers.JSONField()
    report = serializers.JSONField(allow_null=True)
    total_size = serializers.IntegerField()
    downloads = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    files = serializers.SerializerMethodField()
    lineage = serializers.SerializerMethodField()

    @extend_schema_field(FileSerializer(many=True))
    def get_files(self, version: Version) -> Any:
        return FileSerializer(version.files.select_related("blob").order_by("path"), many=True).data

    @extend_schema_field(EdgeSerializer(many=True))
    def get_lineage(self, version: Version) -> Any:
        visible: Container[int] = self.context["visible_repository_ids"]
        edges = version.parent_edges.select_related("parent__repository__namespace")
        shown = [e for e in edges if e.parent is None or e.parent.repository_id in visible]
        return EdgeSerializer(shown, many=True).data


_DATETIME = serializers.DateTimeField()


def version_json(
    version: Version,
    *,
    files: Iterable[VersionFile],
    edges: Iterable[LineageEdge],
    visible: Container[int],
) -> dict[str, Any]:
    """What :class:`VersionSerializer` renders, built directly.

    Version detail is the hottest REST read, and DRF's field machinery (a deep copy of
    every declared field per serializer) cost ~0.3 ms of its ~2 ms.
    tests/api/test_version_json.py holds the two equal, field for field.
    """
    return {
        "repo": version.repository.full_name,
        "number": version.number,
        "label": version.label,
        "variant": version.variant,
        "commit_id": version.commit_id,
        "status": version.status,
        "message": version.message,
        "metadata": version.metadata,
        "report": version.report,
        "total_size": version.total_size,
        "downloads": version.downloads,
        "created_at": _DATETIME.to_representation(version.created_at),
        "files": [
            {
                "path": f.path,
                "size": f.blob.size,
                "sha256": f.blob.sha256,
                "uploaded_sha256": f.uploaded_blob_id,
            }
            for f in files
        ],
        "lineage": [
            {
                "kind": e.kind,
                "position": e.position,
                "parent": None if e.parent is None else version_ref(e.parent),
                "external_uri": e.external_uri,
                "weight": e.weight,
            }
            for e in edges
            if e.parent is None or e.parent.repository_id in visible
        ],
    }


class VersionSummarySerializer(serializers.ModelSerializer[Version]):
    label = serializers.CharField()  # type: ignore[assignment]

    class Meta:
        model = Version
        fields = [
            "number",
            "label",
            "variant",
            "commit_id",
            "status",
            "message",
            "total_size",
            "downloads",
            "created_at",
        ]


class AliasSerializer(serializers.Serializer[Any]):
    version = serializers.CharField(help_text="A version label, commit id or another alias.")


class TokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=["read", "write"], default="read")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class JobSerializer(serializers.ModelSerializer[Job]):
    version = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "state",
            "queue",
            "version",
            "params",
            "attempts",
            "max_attempts",
            "worker_host",
            "device",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "log_tail",
            "result",
            "error_code",
            "error_message",
        ]

    def get_version(self, job: Job) -> dict[str, Any] | None:
        return version_ref(job.version) if job.version is not None else None
