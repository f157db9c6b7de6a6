"""Request and response shapes for the REST API (also the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

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


class FileSerializer(serializers.ModelSerializer[VersionFile]):
    sha256 = serializers.CharField(source="blob.sha256")
    size = serializers.IntegerField(source="blob.size")
    uploaded_sha256 = serializers.CharField(
        source="uploaded_blob_id",
        allow_null=True,
        help_text="The pushed bytes' sha256 when the hub serves a normalized form (an "
        "adapter_config.json naming the hub's base); null when they are what is served.",
    )

    class Meta:
        model = VersionFile
        fields = ["path", "size", "sha256", "uploaded_sha256"]


class EdgeSerializer(serializers.ModelSerializer[LineageEdge]):
    parent = serializers.SerializerMethodField()  # type: ignore[assignment]

    class Meta:
        model = LineageEdge
        fields = ["kind", "position", "parent", "external_uri", "weight"]

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


class VersionSerializer(serializers.ModelSerializer[Version]):
    repo = serializers.CharField(source="repository.full_name")
    label = serializers.CharField()  # type: ignore[assignment]
    files = FileSerializer(many=True, read_only=True)
    lineage = serializers.SerializerMethodField()

    class Meta:
        model = Version
        fields = [
            "repo",
            "number",
            "label",
            "variant",
            "commit_id",
            "status",
            "message",
            "metadata",
            "report",
            "total_size",
            "downloads",
            "created_at",
            "files",
            "lineage",
        ]

    def get_lineage(self, version: Version) -> list[dict[str, Any]]:
        visible: set[int] | None = self.context.get("visible_repository_ids")
        edges = [
            e
            for e in version.parent_edges.all()
            if e.parent is None or visible is None or e.parent.repository_id in visible
        ]
        return [EdgeSerializer(e).data for e in edges]


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
