"""Writes: repositories, blobs, versions, aliases. Every door (REST, HF, web, CLI) calls these.

Object storage I/O happens before or after database transactions, never inside one:
blobs are stored and verified first, then a single transaction publishes the version,
so a version appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from hub.accounts.models import AuditEvent, Role, audit
from hub.registry import lineage
from hub.registry.access import Actor, check_role, namespace_for_write
from hub.registry.blob_gc import blob_record
from hub.registry.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from hub.registry.lineage import LineageSpec
from hub.registry.models import (
    Alias,
    Blob,
    Job,
    LineageEdge,
    Repository,
    Version,
    VersionFile,
)
from hub.registry.names import canonical_name, check_alias, check_file_path, check_name
from hub.registry.storage import BlobMissing, blob_key, get_blob_store

# --- Repositories ----------------------------------------------------------------------


def repository_create(
    *,
    actor: Actor,
    namespace: str,
    name: str,
    kind: str,
    visibility: str = Repository.Visibility.PUBLIC,
    description: str = "",
    license: str = "",
    tags: Sequence[str] = (),
) -> Repository:
    """Create ``namespace/name``. Names of deleted repositories are never reused."""
    ns = namespace_for_write(actor, namespace)
    check_name(name)
    if kind not in Repository.Kind.values:
        raise BadRequest(
            "invalid_kind", f"kind must be one of {', '.join(Repository.Kind.values)}."
        )
    if visibility not in Repository.Visibility.values:
        raise BadRequest("invalid_visibility", "visibility must be 'public' or 'private'.")
    try:
        with transaction.atomic():
            return Repository.objects.create(
                namespace=ns,
                name=name,
                name_key=canonical_name(name),
                kind=kind,
                visibility=visibility,
                description=description[:10_000],
                license=license[:64],
                tags=_clean_tags(tags),
                created_by=actor.user,
            )
    except IntegrityError as exc:
        existing = Repository.objects.filter(namespace=ns, name_key=canonical_name(name)).first()
        if existing is not None and existing.deleted_at is not None:
            raise Conflict(
                "name_tombstoned",
                f"{namespace}/{name} was deleted; deleted names are never reused.",
            ) from exc
        raise Conflict("repo_exists", f"{namespace}/{name} already exists.") from exc


def _clean_tags(tags: Sequence[str]) -> list[str]:
    cleaned = sorted({t.strip().lower() for t in tags if t and t.strip()})
    if len(cleaned) > 32 or any(len(t) > 50 for t in cleaned):
        raise BadRequest("invalid_tags", "At most 32 tags of at most 50 characters each.")
    return cleaned


def repository_update(
    *,
    actor: Actor,
    repository: Repository,
    description: str | None = None,
    license: str | None = None,
    tags: Sequence[str] | None = None,
    visibility: str | None = None,
    auto_merge: bool | None = None,
) -> Repository:
    """Edit metadata (write role); visibility changes need the admin role."""
    check_role(actor, repository, Role.WRITE)
    fields = ["updated_at"]
    if visibility is not None and visibility != repository.visibility:
        check_role(actor, repository, Role.ADMIN)
        if visibility not in Repository.Visibility.values:
            raise BadRequest("invalid_visibility", "visibility must be 'public' or 'private'.")
        previous = repository.visibility
        repository.visibility = visibility
        fields.append("visibility")
    if description is not None:
        repository.description = description[:10_000]
        fields.append("description")
    if license is not None:
        repository.license = license[:64]
        fields.append("license")
    if tags is not None:
        repository.tags = _clean_tags(tags)
        fields.append("tags")
    if auto_merge is not None:
        repository.auto_merge = auto_merge
        fields.append("auto_merge")
    repository.updated_at = timezone.now()
    with transaction.atomic():
        repository.save(update_fields=fields)
        if "visibility" in fields:
            audit(
                actor.user,
                AuditEvent.Action.VISIBILITY_CHANGED,
                repository.full_name,
                before=previous,
                after=visibility,
            )
    return repository


def repository_delete(*, actor: Actor, repository: Repository) -> None:
    """Tombstone a repository (admin role). Its name stays taken forever."""
    check_role(actor, repository, Role.ADMIN)
    with transaction.atomic():
        Repository.objects.filter(pk=repository.pk).update(deleted_at=timezone.now())
        audit(actor.user, AuditEvent.Action.REPOSITORY_DELETED, repository.full_name)


# --- Blobs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingFile:
    """A file received and hashed by the transport layer, sitting in a local temp file."""

    path: str
    size: int
    sha256: str
    fileobj: IO[bytes]


def hash_stream(fh: IO[bytes], *, limit: int) -> tuple[str, int]:
    """sha256 and size of a stream, refusing it as soon as it exceeds ``limit`` bytes."""
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(1024 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("file_too_large", f"Files are limited to {limit} bytes.")
        digest.update(chunk)
    return digest.hexdigest(), size


def check_sha256(claimed: str | None, actual: str, *, path: str) -> None:
    if claimed is not None and not hmac.compare_digest(claimed.lower(), actual):
        raise BadRequest(
            "sha256_mismatch",
            f"{path}: the bytes received hash to {actual}, not the declared {claimed}.",
        )


def blob_ingest(incoming: IncomingFile) -> Blob:
    """Store a file's bytes under their sha256, once. Existing blobs cost nothing."""
    existing = Blob.objects.filter(sha256=incoming.sha256).first()
    store = get_blob_store()
    key = blob_key(incoming.sha256)
    if existing is not None and store.head(key) is not None:
        return existing

    def store_bytes() -> None:
        incoming.fileobj.seek(0)
        store.put_file(key, incoming.fileobj, size=incoming.size, sha256=incoming.sha256)

    store_bytes()
    return blob_record(incoming.sha256, incoming.size, key, store_again=store_bytes)


# --- Versions --------------------------------------------------------------------------


def check_json_limits(value: Any, *, what: str) -> None:
    encoded = json.dumps(value)
    if len(encoded) > settings.MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            "metadata_too_large", f"{what} is limited to {settings.MAX_METADATA_BYTES} bytes."
        )

    # Level by level, stopping at the limit: a recursive walk of a few hundred levels
    # (which json.loads accepts) overflowed Python's stack and answered 500.
    limit = settings.MAX_METADATA_DEPTH
    level: list[Any] = [value]
    depth = 0
    while True:
        # PostgreSQL cannot store NUL (in keys or values): it used to fail at publish
        # time, after the blobs were stored, as a 503.
        if any(isinstance(v, str) and "\x00" in v for v in level):
            raise BadRequest("invalid_characters", f"{what} contains a NUL character.")
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return
        depth += 1
        if depth > limit:
            raise BadRequest("metadata_too_deep", f"{what} nests deeper than {limit} levels.")
        level = [c for v in containers for c in ([*v, *v.values()] if isinstance(v, dict) else v)]


def _check_file_set(kind: str, paths: Sequence[str]) -> None:
    if not paths:
        raise BadRequest("no_files", "A version needs at least one file.")
    if len(set(paths)) != len(paths):
        raise BadRequest("duplicate_path", "Each file path may appear only once in a version.")
    if len(paths) > 10_000:
        raise BadRequest("too_many_files", "A version may hold at most 10,000 files.")
    for path in paths:
        check_file_path(path)
    has_weights = any(p.endswith(".safetensors") for p in paths)
    if kind == Repository.Kind.ADAPTER and ("adapter_config.json" not in paths or not has_weights):
        raise BadRequest(
            "adapter_files_missing",
            "An adapter version needs adapter_config.json and at least one .safetensors file "
            "(what PEFT's save_pretrained writes).",
        )
    if kind == Repository.Kind.BASE_MODEL and (not has_weights or "config.json" not in paths):
        raise BadRequest(
            "base_files_missing",
            "A base model version needs config.json and its .safetensors weights.",
        )


@dataclass(frozen=True)
class ResolvedLineage:
    base: Version | None
    stacked_on: list[Version]
    finetuned_from: Version | None
    trained_on: list[tuple[Version | None, str]]
    evaluated_on: list[tuple[Version | None, str]]


def lineage_check(actor: Actor, repository: Repository, spec: LineageSpec) -> ResolvedLineage:
    """Resolve and check what a push declares, as the pushing actor sees it."""
    kind = repository.kind
    if kind != Repository.Kind.ADAPTER and (spec.base or spec.stacked_on or spec.finetuned_from):
        raise BadRequest(
            "lineage_not_allowed",
            "Only adapters declare a base model, parents or a starting point.",
        )
    base = None
    if kind == Repository.Kind.ADAPTER:
        if spec.base is None:
            raise BadRequest(
                "base_required", "An adapter must declare its base model (namespace/name[@rev])."
            )
        # Without a revision, the base's current version is pinned now and recorded.
        base = lineage.resolve_ref(
            actor, spec.base, kind=Repository.Kind.BASE_MODEL, what="base model"
        )
    if len(spec.stacked_on) > 32:
        raise BadRequest("stack_too_deep", "A stack may have at most 32 parents.")
    parents = [
        lineage.resolve_ref(actor, ref, kind=Repository.Kind.ADAPTER, what="parent adapter")
        for ref in spec.stacked_on
    ]
    for ref, parent in zip(spec.stacked_on, parents, strict=True):
        parent_base = lineage.adapter_base(parent)
        if base is not None and (parent_base is None or parent_base.pk != base.pk):
            theirs = (
                f"{parent_base.repository.full_name}@{parent_base.label}"
                if parent_base
                else "nothing"
            )
            raise BadRequest(
                "stack_base_mismatch",
                f"Parent {ref} is an adapter of {theirs}, but this version declares "
                f"{base.repository.full_name}@{base.label}. "
                "Every adapter in a stack must share the same base revision.",
            )
    if len({p.pk for p in parents}) != len(parents):
        raise BadRequest("duplicate_parent", "A parent adapter appears twice in stacked_on.")
    finetuned = (
        lineage.resolve_ref(
            actor, spec.finetuned_from, kind=Repository.Kind.ADAPTER, what="starting adapter"
        )
        if spec.finetuned_from
        else None
    )

    def datasets(refs: Sequence[lineage.DatasetRef]) -> list[tuple[Version | None, str]]:
        if len(refs) > 64:
            raise BadRequest("too_many_datasets", "At most 64 datasets per kind.")
        out: list[tuple[Version | None, str]] = []
        for d in refs:
            if d.ref is not None:
                out.append(
                    (
                        lineage.resolve_ref(
                            actor, d.ref, kind=Repository.Kind.DATASET, what="dataset"
                        ),
                        "",
                    )
                )
            else:
                out.append((None, d.uri))
        return out

    return ResolvedLineage(
        base=base,
        stacked_on=parents,
        finetuned_from=finetuned,
        trained_on=datasets(spec.trained_on),
        evaluated_on=datasets(spec.evaluated_on),
    )


def _commit_id(
    repository: Repository,
    number: int,
    variant: str,
    files: Sequence[tuple[str, Blob]],
    parents: list[str],
) -> str:
    """40-hex id of a version: sha1 of its canonical manifest (HF clients need 40 hex)."""
    manifest = {
        "repository": repository.pk,
        "number": number,
        "variant": variant,
        "files": sorted((path, blob.sha256) for path, blob in files),
        "parents": parents,
    }
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha1(canonical, usedforsecurity=False).hexdigest()


def _same_content(
    version: Version, files: Sequence[tuple[str, Blob]], resolved: ResolvedLineage
) -> bool:
    # A file is unchanged if it equals what was pushed or the normalized form the hub
    # serves instead (a client may send either back).
    current = {
        path: {served, uploaded}
        for path, served, uploaded in version.files.values_list(
            "path", "blob_id", "uploaded_blob_id"
        )
    }
    pushed = {p: b.sha256 for p, b in files}
    if current.keys() != pushed.keys() or any(pushed[p] not in current[p] for p in pushed):
        return False
    # Every declared edge counts, external dataset URIs included: a push that names
    # another dataset is not a repeat (it used to be answered "unchanged" and dropped).
    edges = sorted(
        version.parent_edges.values_list("kind", "position", "parent_id", "external_uri")
    )
    wanted = sorted((k, pos, v.pk if v else None, uri) for k, pos, v, uri in _edges(resolved))
    return edges == wanted


def _edges(resolved: ResolvedLineage) -> list[tuple[str, int, Version | None, str]]:
    edges: list[tuple[str, int, Version | None, str]] = []
    if resolved.base is not None:
        edges.append((LineageEdge.Kind.ADAPTER_OF, 0, resolved.base, ""))
    edges += [(LineageEdge.Kind.STACKED_ON, i, v, "") for i, v in enumerate(resolved.stacked_on)]
    if resolved.finetuned_from is not None:
        edges.append((LineageEdge.Kind.FINETUNED_FROM, 0, resolved.finetuned_from, ""))
    edges += [
        (LineageEdge.Kind.TRAINED_ON, i, v, u) for i, (v, u) in enumerate(resolved.trained_on)
    ]
    edges += [
        (LineageEdge.Kind.EVALUATED_ON, i, v, u) for i, (v, u) in enumerate(resolved.evaluated_on)
    ]
    return edges


def check_quota(repository: Repository, extra_bytes: int) -> None:
    """Refuse a push that would take the namespace past NAMESPACE_QUOTA_BYTES."""
    quota = settings.NAMESPACE_QUOTA_BYTES
    if not quota:
        return
    used = (
        Version.objects.filter(
            repository__namespace_id=repository.namespace_id, variant=""
        ).aggregate(total=Sum("total_size"))["total"]
        or 0
    )
    if used + extra_bytes > quota:
        raise PayloadTooLarge(
            "quota_exceeded",
            f"{repository.namespace.name} holds {used} bytes of versions; this push of "
            f"{extra_bytes} bytes would pass its quota of {quota} bytes.",
        )


def version_check(
    *,
    actor: Actor,
    repository: Repository,
    paths: Sequence[str],
    spec: LineageSpec | None = None,
    message: str = "",
    metadata: dict[str, Any] | None = None,
    size: int | None = None,
) -> ResolvedLineage:
    """Every check :func:`version_publish` makes, without writing anything.

    Doors call it before storing any bytes, so a push refused for its file set, its
    metadata, its references or (given its ``size``) the namespace quota leaves no blob
    behind (``version_publish`` checks again, the quota under the repository lock).
    """
    check_role(actor, repository, Role.WRITE)
    if size is not None:
        # A push over quota used to store its blobs first and be refused at publish.
        check_quota(repository, size)
    _check_file_set(repository.kind, paths)
    check_json_limits(metadata or {}, what="Version metadata")
    if len(message) > 5000:
        raise BadRequest("message_too_long", "Version messages are limited to 5,000 characters.")
    if "\x00" in message:
        raise BadRequest("invalid_characters", "The version message contains a NUL character.")
    return lineage_check(actor, repository, spec or LineageSpec())


@dataclass(frozen=True)
class Published:
    version: Version
    #: False when the push repeated the newest version exactly and nothing was created.
    created: bool


def version_publish(
    *,
    actor: Actor,
    repository: Repository,
    files: Sequence[tuple[str, Blob]],
    spec: LineageSpec | None = None,
    message: str = "",
    metadata: dict[str, Any] | None = None,
) -> Published:
    """Publish a version from blobs that are already stored and verified.

    Numbers are assigned under a row lock on the repository, so concurrent pushes never
    share one; repeating the newest version exactly returns it instead of a copy.
    """
    metadata = metadata or {}
    resolved = version_check(
        actor=actor,
        repository=repository,
        paths=[path for path, _ in files],
        spec=spec,
        message=message,
        metadata=metadata,
    )
    if resolved.base is not None:
        metadata = {**metadata, "base_revision": resolved.base.label}
    # Storage I/O (a few KB) before the transaction, never inside it.
    served = _served_blobs(repository, files, resolved.base)

    with transaction.atomic():
        locked = Repository.objects.select_for_update().get(pk=repository.pk)
        if locked.deleted_at is not None:
            raise NotFound("repo_not_found", f"Repository {repository.full_name} was not found.")
        newest = Version.objects.filter(repository=locked, variant="").order_by("-number").first()
        # Only an exact repeat (files, lineage, training params) returns the newest version.
        if (
            newest is not None
            and newest.metadata.get("training_params") == metadata.get("training_params")
            and _same_content(newest, files, resolved)
        ):
            return Published(version=newest, created=False)
        # Under the repository lock, so concurrent pushes cannot both squeeze under it.
        check_quota(locked, sum(served.get(path, blob).size for path, blob in files))
        number = (
            Version.objects.filter(repository=locked).aggregate(n=Max("number"))["n"] or 0
        ) + 1
        edges = _edges(resolved)
        version = Version.objects.create(
            repository=locked,
            number=number,
            commit_id=_commit_id(
                locked, number, "", files, [v.commit_id for _, _, v, _ in edges if v is not None]
            ),
            message=message,
            metadata=metadata,
            total_size=sum(served.get(path, blob).size for path, blob in files),
            created_by=actor.user,
            # Datasets carry no weights to check: they are usable once published.
            status=Version.Status.VALID
            if locked.kind == Repository.Kind.DATASET
            else Version.Status.PENDING,
        )
        VersionFile.objects.bulk_create(
            VersionFile(
                version=version,
                path=path,
                blob=served.get(path, blob),
                uploaded_blob=blob if path in served else None,
            )
            for path, blob in files
        )
        LineageEdge.objects.bulk_create(
            LineageEdge(child=version, kind=k, position=pos, parent=v, external_uri=uri)
            for k, pos, v, uri in edges
        )
        repo_fields: dict[str, Any] = {"updated_at": timezone.now()}
        if resolved.base is not None:
            repo_fields["base_repository"] = resolved.base.repository
        Repository.objects.filter(pk=locked.pk).update(**repo_fields)
        if version.status == Version.Status.VALID:
            main_alias_refresh(locked)
        _request_checks(version)
    return Published(version=version, created=True)


def _request_checks(version: Version) -> None:
    from hub.registry.jobs import job_request

    kind = version.repository.kind
    if kind == Repository.Kind.BASE_MODEL:
        job_request(kind=Job.Kind.MANIFEST, version=version, dedupe_key=f"manifest:{version.pk}")
    elif kind == Repository.Kind.ADAPTER:
        job_request(kind=Job.Kind.VALIDATE, version=version, dedupe_key=f"validate:{version.pk}")


def version_set_status(
    *,
    version: Version,
    status: str,
    report: dict[str, Any] | None = None,
    manifest: dict[str, Any] | None = None,
) -> None:
    """Record a check's outcome and move ``main`` if the version became valid."""
    with transaction.atomic():
        fields: dict[str, Any] = {"status": status}
        if report is not None:
            fields["report"] = report
        if manifest is not None:
            fields["manifest"] = manifest
        Version.objects.filter(pk=version.pk).update(**fields)
        main_alias_refresh(version.repository)


def main_alias_refresh(repository: Repository) -> None:
    """Point ``main`` at the newest valid version (never an invalid or derived one)."""
    newest = (
        Version.objects.filter(repository=repository, variant="", status=Version.Status.VALID)
        .order_by("-number")
        .first()
    )
    if newest is None:
        Alias.objects.filter(repository=repository, name=Alias.MAIN).delete()
        return
    Alias.objects.update_or_create(
        repository=repository,
        name=Alias.MAIN,
        defaults={"version": newest, "updated_at": timezone.now()},
    )


def alias_set(*, actor: Actor, repository: Repository, name: str, version: Version) -> Alias:
    """Create or move an alias (write role). ``main`` is the hub's own."""
    check_role(actor, repository, Role.WRITE)
    check_alias(name)
    if name == Alias.MAIN:
        raise BadRequest("alias_reserved", "'main' always follows the newest valid version.")
    if version.repository_id != repository.pk:
        raise BadRequest("alias_other_repo", "An alias must point at a version of its repository.")
    if version.status == Version.Status.INVALID:
        raise BadRequest("alias_invalid_version", f"{version.label} failed validation.")
    alias, _ = Alias.objects.update_or_create(
        repository=repository,
        name=name,
        defaults={"version": version, "updated_at": timezone.now()},
    )
    return alias


def alias_delete(*, actor: Actor, repository: Repository, name: str) -> None:
    check_role(actor, repository, Role.WRITE)
    if name == Alias.MAIN:
        raise BadRequest("alias_reserved", "'main' always follows the newest valid version.")
    deleted, _ = Alias.objects.filter(repository=repository, name=name).delete()
    if not deleted:
        raise NotFound("alias_not_found", f"{repository.full_name} has no alias {name!r}.")


def _served_blobs(
    repository: Repository, files: Sequence[tuple[str, Blob]], base: Version | None
) -> dict[str, Blob]:
    """Files the hub serves in a normalized form: path -> the blob to serve.

    Uploaded adapter configs often name a local path (``/kaggle/input/...``) or nothing
    as ``base_model_name_or_path``, which sends vLLM's resolver and PEFT after the wrong
    base. The hub serves a copy naming its own base id from the moment the version
    appears (so listed hashes never change); the pushed bytes stay recorded.
    """
    if repository.kind != Repository.Kind.ADAPTER or base is None:
        return {}
    pushed = dict(files).get("adapter_config.json")
    if pushed is None or pushed.size > 256 * 1024:
        return {}
    try:
        config = json.loads(get_blob_store().read_range(pushed.storage_key, 0, pushed.size))
    except (ValueError, RecursionError, BlobMissing):
        return {}  # validation reports a broken or missing config; serve it as pushed
    base_id = base.repository.full_name
    if not isinstance(config, dict) or config.get("base_model_name_or_path") == base_id:
        return {}
    data = (
        json.dumps({**config, "base_model_name_or_path": base_id}, indent=2, sort_keys=True) + "\n"
    ).encode()
    sha = hashlib.sha256(data).hexdigest()
    blob = blob_ingest(IncomingFile("adapter_config.json", len(data), sha, io.BytesIO(data)))
    return {"adapter_config.json": blob}


def is_payload_file(repository: Repository, path: str) -> bool:
    """Whether fetching ``path`` counts as a download: weights, or a dataset's data files
    (configs, tokenizers and cards ride along with every download and would count twice)."""
    if repository.kind == Repository.Kind.DATASET:
        return path.endswith((".jsonl", ".txt", ".parquet"))
    return path.endswith(".safetensors")
