from django.contrib import admin

from hub.registry.models import (
    Alias,
    BenchmarkResult,
    Blob,
    Job,
    LineageEdge,
    Repository,
    UploadFile,
    UploadSession,
    Version,
    VersionFile,
)


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "visibility", "downloads", "updated_at", "deleted_at")
    list_filter = ("kind", "visibility")
    search_fields = ("name", "namespace__name", "description")
    raw_id_fields = ("namespace", "base_repository", "created_by")


class VersionFileInline(admin.TabularInline):
    model = VersionFile
    extra = 0
    raw_id_fields = ("blob",)


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = ("repository", "label", "status", "commit_id", "total_size", "created_at")
    list_filter = ("status", "variant")
    search_fields = ("commit_id", "repository__name")
    raw_id_fields = ("repository", "created_by")
    inlines = [VersionFileInline]


@admin.register(Blob)
class BlobAdmin(admin.ModelAdmin):
    list_display = ("sha256", "size", "storage_key", "created_at")
    search_fields = ("sha256",)


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    list_display = ("repository", "name", "version", "updated_at")
    raw_id_fields = ("repository", "version")


@admin.register(LineageEdge)
class LineageEdgeAdmin(admin.ModelAdmin):
    list_display = ("child", "kind", "position", "parent", "external_uri")
    list_filter = ("kind",)
    raw_id_fields = ("child", "parent")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "state", "version", "attempts", "created_at", "finished_at")
    list_filter = ("kind", "state", "queue")
    search_fields = ("id", "celery_task_id", "dedupe_key")
    raw_id_fields = ("version", "requested_by")


class UploadFileInline(admin.TabularInline):
    model = UploadFile
    extra = 0


@admin.register(UploadSession)
class UploadSessionAdmin(admin.ModelAdmin):
    list_display = ("id", "repository", "created_by", "state", "created_at", "expires_at")
    list_filter = ("state",)
    raw_id_fields = ("repository", "created_by", "version")
    inlines = [UploadFileInline]


@admin.register(BenchmarkResult)
class BenchmarkResultAdmin(admin.ModelAdmin):
    list_display = ("version", "eval_set", "metric", "base_value", "adapter_value", "delta")
    list_filter = ("metric",)
    raw_id_fields = ("version", "eval_set", "base", "job")
