"""Repositories, immutable versions, content-addressed blobs, lineage and jobs.

Rules about a single row live here as methods; anything that touches several rows or
storage lives in ``services.py`` (writes) and ``selectors.py`` (reads).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from hub.accounts.models import NAME_MAX_LENGTH, Namespace


class Repository(models.Model):
    class Kind(models.TextChoices):
        ADAPTER = "adapter", "adapter"
        BASE_MODEL = "base_model", "base model"
        DATASET = "dataset", "dataset"

    class Visibility(models.TextChoices):
        PUBLIC = "public", "public"
        PRIVATE = "private", "private"

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="repositories")
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    #: Case-folded, NFKC-normalised name, unique per namespace (anti-spoofing).
    name_key = models.CharField(max_length=NAME_MAX_LENGTH)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    visibility = models.CharField(
        max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    description = models.TextField(blank=True)
    license = models.CharField(max_length=64, blank=True)
    tags = models.JSONField(default=list, blank=True)
    #: For adapters, the base model repository of the newest version (for filtering).
    base_repository = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="adapters",
    )
    #: Merge every valid version automatically (also switchable per base model).
    auto_merge = models.BooleanField(default=False)
    downloads = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    #: Deleted repositories keep their row so the name is never reused.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "name"], name="repository_unique_name"),
            models.UniqueConstraint(
                fields=["namespace", "name_key"], name="repository_unique_name_key"
            ),
        ]
        indexes = [
            models.Index(fields=["kind", "visibility", "-updated_at"]),
            models.Index(fields=["-downloads"]),
            # The default listing order (sort=recent), walked with LIMIT: a search whose
            # text matches most repositories stops after a page instead of sorting them all.
            models.Index(fields=["-updated_at", "-id"], name="repository_recent"),
        ]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.namespace.name}/{self.name}"

    @property
    def is_private(self) -> bool:
        return self.visibility == self.Visibility.PRIVATE


class Blob(models.Model):
    """Bytes stored once, keyed by their sha256."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    storage_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} B)"


class Version(models.Model):
    """An immutable snapshot of a repository's files, numbered v1, v2, …

    ``variant`` distinguishes derived snapshots that share the number of the version
    they come from: ``merged`` is the pre-merged weights of adapter version N, served
    as revision ``vN-merged``.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        VALID = "valid", "valid"
        INVALID = "invalid", "invalid"

    class Variant(models.TextChoices):
        NONE = "", "none"
        MERGED = "merged", "merged"
        MERGED_F16 = "merged-f16", "merged (f16)"
        MERGED_BF16 = "merged-bf16", "merged (bf16)"
        MERGED_F32 = "merged-f32", "merged (f32)"

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    variant = models.CharField(max_length=16, choices=Variant.choices, default="", blank=True)
    #: 40 lowercase hex characters: the sha1 of the canonical manifest (see services).
    commit_id = models.CharField(max_length=40, unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    message = models.TextField(blank=True)
    #: Push metadata: training parameters, declared datasets, the original adapter config.
    metadata = models.JSONField(default=dict, blank=True)
    #: Base models: tensor name -> {"dtype", "shape"}, read from safetensors headers.
    manifest = models.JSONField(null=True, blank=True)
    #: The validation report (findings and serving facts).
    report = models.JSONField(null=True, blank=True)
    total_size = models.BigIntegerField(default=0)
    downloads = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "number", "variant"], name="version_unique_number"
            )
        ]
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"{self.repository_id}@{self.label}"

    @property
    def label(self) -> str:
        return f"v{self.number}-{self.variant}" if self.variant else f"v{self.number}"


class VersionFile(models.Model):
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)
    #: The bytes clients receive.
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="version_files")
    #: The bytes that were pushed, when the hub serves a normalized form instead (an
    #: adapter_config.json naming the hub's base); None when they are the same.
    uploaded_blob = models.ForeignKey(
        Blob, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="version_file_unique_path")
        ]
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class Alias(models.Model):
    """A mutable name for a version. ``main`` is kept by the hub; owners add others."""

    MAIN = "main"

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64)
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="aliases")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "name"], name="alias_unique_name")
        ]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return f"{self.name} -> {self.version.label}"


class LineageEdge(models.Model):
    """A typed edge from a version (child) to what it came from (parent).

    Datasets named by an external URI (not in the hub) keep the URI and no parent.
    """

    class Kind(models.TextChoices):
        ADAPTER_OF = "adapter_of", "adapter of"
        STACKED_ON = "stacked_on", "stacked on"
        FINETUNED_FROM = "finetuned_from", "fine-tuned from"
        COMPOSED_FROM = "composed_from", "composed from"
        MERGED_FROM = "merged_from", "merged from"
        TRAINED_ON = "trained_on", "trained on"
        EVALUATED_ON = "evaluated_on", "evaluated on"

    child = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="parent_edges")
    parent = models.ForeignKey(
        Version, null=True, blank=True, on_delete=models.PROTECT, related_name="child_edges"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    #: Order within a kind: stacked_on parents are applied in this order.
    position = models.PositiveIntegerField(default=0)
    external_uri = models.CharField(max_length=500, blank=True)
    #: Mixing weight for composed_from edges.
    weight = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["child", "kind", "position"], name="lineage_unique_position"
            ),
            models.CheckConstraint(
                condition=models.Q(parent__isnull=False) | ~models.Q(external_uri=""),
                name="lineage_has_target",
            ),
        ]
        ordering = ["kind", "position"]

    def __str__(self) -> str:
        target = self.parent_id if self.parent_id else self.external_uri
        return f"{self.child_id} {self.kind}[{self.position}] {target}"


class Job(models.Model):
    """One unit of worker work. The row is the truth; Celery only carries its id."""

    class Kind(models.TextChoices):
        MANIFEST = "manifest", "read manifest"
        VALIDATE = "validate", "validate"
        BENCHMARK = "benchmark", "benchmark"
        MERGE = "merge", "merge"
        COMPOSE = "compose", "compose"
        FINALIZE_UPLOAD = "finalize_upload", "finalize upload"

    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    queue = models.CharField(max_length=16, default="cpu")
    version = models.ForeignKey(
        Version, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    params = models.JSONField(default=dict, blank=True)
    #: Identical requests share one job: unique among jobs that are not failed/cancelled.
    # NULL, not "", means "no key": the partial unique index must ignore such jobs.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    #: The id of the request that created the job; worker log lines carry it too.
    request_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=3)
    worker_host = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    #: When the broker accepted the message; None means it must be (re)sent.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dedupe_key"],
                condition=models.Q(state__in=["queued", "running", "succeeded"]),
                name="job_unique_live_dedupe_key",
            )
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL_STATES


class UploadSession(models.Model):
    """A direct-to-storage push in progress: files go to staging keys, then are verified.

    Staging keys are server-made (``uploads/<session>/<n>``); bytes reach their sha256
    key only after the server has checked their size and hash.
    """

    class State(models.TextChoices):
        OPEN = "open", "open"
        VERIFYING = "verifying", "verifying"
        COMMITTED = "committed", "committed"
        FAILED = "failed", "failed"
        EXPIRED = "expired", "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="uploads")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    #: The push metadata given at commit time, kept until the version is published.
    commit_metadata = models.JSONField(null=True, blank=True)
    version = models.ForeignKey(
        Version, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"upload {self.id} ({self.state})"


class UploadFile(models.Model):
    session = models.ForeignKey(UploadSession, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    #: Blank when the hub already had the blob and nothing needed uploading.
    staging_key = models.CharField(max_length=200, blank=True)
    multipart_upload_id = models.CharField(max_length=200, blank=True)
    part_size = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "path"], name="upload_file_unique_path")
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def needs_upload(self) -> bool:
        return bool(self.staging_key)


class BenchmarkResult(models.Model):
    """One adapter version measured against its base on one eval set. Immutable.

    ``inputs_key`` names exactly what was measured (base revision, stack, eval set
    version, benchmark code version), so running again on the same inputs reuses it.
    """

    class Metric(models.TextChoices):
        PERPLEXITY = "perplexity", "Perplexity"
        EMBEDDING_DRIFT = "embedding_drift", "Embedding similarity to base"
        SPEARMAN = "spearman", "Spearman correlation"

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="benchmarks")
    eval_set = models.ForeignKey(
        Version, on_delete=models.PROTECT, related_name="benchmarks_run_on"
    )
    base = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="+")
    inputs_key = models.CharField(max_length=64, unique=True)
    metric = models.CharField(max_length=20, choices=Metric.choices)
    base_value = models.FloatField()
    adapter_value = models.FloatField()
    #: adapter - base, in the metric's own units.
    delta = models.FloatField()
    #: Higher is better, whatever the metric: used to rank leaderboards and search.
    score = models.FloatField()
    device = models.CharField(max_length=200)
    result = models.JSONField()
    job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["base", "eval_set", "metric", "-score"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.version_id} on {self.eval_set_id}: {self.metric} {self.adapter_value:.4g}"
