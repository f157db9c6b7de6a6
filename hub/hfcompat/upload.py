"""Write routes: create a repository, check a model card, preupload, commit, tag.

A commit lands on ``main`` only and becomes a new Strata version: its operations apply
on top of the newest version's files (what the author pushed last), lineage comes from
the model card (``cards.py``), and the version is checked like any other push.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from hub.accounts.models import Role
from hub.accounts.services import user_namespace
from hub.hfcompat import cards
from hub.hfcompat.common import (
    API_TYPES,
    actor_of,
    find_repo,
    head_version,
    hub_url,
    json_ok,
    read_json,
    repo_path,
)
from hub.hfcompat.errors import HubError, error_response, hub_view
from hub.hfcompat.lfs import staged_upload
from hub.registry import services, uploads
from hub.registry.access import Actor
from hub.registry.errors import BadRequest, Conflict, NotAuthenticated
from hub.registry.lineage import spec_from_metadata, stored_metadata
from hub.registry.models import Alias, Blob, Repository, UploadFile, UploadSession, Version
from hub.registry.names import check_file_path
from hub.registry.selectors import version_for
from hub.registry.storage import get_blob_store

#: Files up to this size travel base64-inline in the commit ("regular"); larger ones go
#: through the LFS batch API. Inline needs no client setting at all (xet stays out of
#: it); the cost is memory: a commit line is held while it is decoded (about 3x the file).
REGULAR_MAX_BYTES = 50 * 1024 * 1024
#: The longest commit line accepted: a base64 file of REGULAR_MAX_BYTES plus JSON.
MAX_LINE_BYTES = (REGULAR_MAX_BYTES + 2) // 3 * 4 + 64 * 1024
#: Model card and adapter config are read for lineage up to this size.
CARD_MAX_BYTES = 1024 * 1024


# --- Repositories and model cards -----------------------------------------------------------


@hub_view("POST")
def create_repo(request: HttpRequest) -> HttpResponse:
    """``POST /api/repos/create``. Model repos start as adapters; the first commit settles
    the kind (see :func:`settle_kind`). The 409 answer carries ``url`` too."""
    actor = actor_of(request)
    if actor.user is None:
        raise NotAuthenticated("auth_required", "Send a Strata token (HF_TOKEN) to create repos.")
    body = read_json(request, limit=64 * 1024)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise HubError(400, "BadRequest", "Send {name, organization?, type?, visibility?}.")
    repo_type = body.get("type") or "model"
    if repo_type not in ("model", "dataset"):
        raise HubError(400, "BadRequest", "Strata hosts models and datasets, not Spaces.")
    organization = body.get("organization")
    namespace = organization if isinstance(organization, str) and organization else None
    namespace = namespace or user_namespace(actor.user).name
    visibility = body.get("visibility")
    if visibility is None:
        visibility = "private" if body.get("private") is True else "public"
    name = body["name"]
    kind = Repository.Kind.DATASET if repo_type == "dataset" else Repository.Kind.ADAPTER
    url = hub_url(f"{'datasets/' if repo_type == 'dataset' else ''}{namespace}/{name}")
    try:
        services.repository_create(
            actor=actor, namespace=namespace, name=name, kind=kind, visibility=str(visibility)
        )
    except Conflict as exc:
        if exc.code != "repo_exists":
            # A deleted name is never reused; a 409 would read as "exists" to exist_ok.
            raise HubError(400, exc.code, exc.message) from exc
        # exist_ok=True reads the url from this answer.
        return error_response(409, "RepoExists", exc.message, body={"url": url})
    return json_ok({"url": url, "name": f"{namespace}/{name}"})


@hub_view("POST")
def validate_yaml(request: HttpRequest) -> JsonResponse:
    """``POST /api/validate-yaml``: the model card's front matter must be YAML."""
    body = read_json(request)
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, str):
        try:
            cards.front_matter(content)
        except BadRequest as exc:
            response = JsonResponse(
                {"errors": [{"message": exc.message}], "warnings": []}, status=400
            )
            response["X-Error-Code"] = "InvalidModelCard"
            response["X-Error-Message"] = "README.md front matter is not valid YAML."
            return response
    return json_ok({"errors": [], "warnings": []})


# --- Preupload and commit -------------------------------------------------------------------


def _check_branch(request: HttpRequest, revision: str) -> None:
    if request.GET.get("create_pr") in ("1", "true", "True"):
        raise HubError(400, "BadRequest", "Strata has no pull requests; commit to main.")
    if revision != Alias.MAIN:
        raise HubError(
            400,
            "BadRequest",
            "Strata takes commits on main only: each commit becomes a new version "
            "(v1, v2, ...); use create_tag to name one.",
        )


@hub_view("POST")
def preupload(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> JsonResponse:
    """Per file: "regular" (inline) up to REGULAR_MAX_BYTES, "lfs" above. ``oid`` is the
    current file's sha256 for "lfs" (so unchanged files are skipped), null for "regular"
    (Strata keeps no git sha1; an unchanged push is recognised at commit time instead)."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name, need=Role.WRITE)
    _check_branch(request, revision)
    body = read_json(request)
    declared = body.get("files") if isinstance(body, dict) else None
    if not isinstance(declared, list):
        raise HubError(400, "BadRequest", "Send {files: [{path, size, sample}]}.")
    head = head_version(repository)
    current = {f.path: f.blob.sha256 for f in head.files.select_related("blob")} if head else {}
    answers = []
    for item in declared:
        path = item.get("path") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(path, str) or not isinstance(size, int) or size < 0:
            raise HubError(400, "BadRequest", "Each file needs a path and a size.")
        # Refuse what a commit would refuse before any byte is uploaded.
        check_file_path(path)
        mode = "lfs" if size > REGULAR_MAX_BYTES else "regular"
        answers.append(
            {
                "path": path,
                "uploadMode": mode,
                "shouldIgnore": False,
                "oid": current.get(path) if mode == "lfs" else None,
            }
        )
    return json_ok({"files": answers, "commitOid": head.commit_id if head else None})


def _lines(request: HttpRequest) -> Iterator[dict[str, Any]]:
    """The NDJSON body, one object per line, read from the stream (never ``request.body``,
    which holds everything in memory and is capped by DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    while True:
        line = request.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise HubError(
                413,
                "PayloadTooLarge",
                f"A commit line is limited to {MAX_LINE_BYTES} bytes; files above "
                f"{REGULAR_MAX_BYTES} bytes go through LFS (preupload says so).",
            )
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise HubError(400, "BadRequest", f"A commit line is not JSON: {exc}") from exc
        del line  # the decoded copy is enough; big lines are tens of megabytes
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise HubError(400, "BadRequest", "Each commit line is {key, value: {...}}.")
        yield item


#: Where a file of the commit comes from: a stored blob, a file received inline, or an
#: object staged through LFS (hashed when the version is finalized).
Source = Blob | services.IncomingFile | UploadFile


def _inline_file(path: str, value: dict[str, Any], temps: list[IO[bytes]]) -> services.IncomingFile:
    if value.get("encoding", "base64") != "base64":
        raise HubError(400, "BadRequest", f"{path}: only base64 content is supported.")
    content = value.pop("content", "")
    if not isinstance(content, str):
        raise HubError(400, "BadRequest", f"{path}: content must be a base64 string.")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HubError(400, "BadRequest", f"{path}: content is not valid base64.") from exc
    del content
    if len(data) > settings.MAX_FILE_BYTES:
        raise HubError(413, "PayloadTooLarge", f"{path} exceeds {settings.MAX_FILE_BYTES} B.")
    temp = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
    temps.append(temp)
    temp.write(data)
    return services.IncomingFile(path, len(data), hashlib.sha256(data).hexdigest(), temp)


def _lfs_file(
    actor: Actor, repository: Repository, path: str, value: dict[str, Any]
) -> Blob | UploadFile:
    oid = value.get("oid")
    if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or len(oid) != 64:
        raise HubError(400, "BadRequest", f"{path}: lfsFile needs a sha256 oid.")
    size = value.get("size")
    source: Blob | UploadFile | None = None
    if uploads.blobs_known_to(actor, [oid]):
        source = Blob.objects.get(sha256=oid)
    else:
        source = staged_upload(actor, repository, oid)
    if source is None:
        raise HubError(
            400,
            "BadRequest",
            f"{path}: no uploaded object with sha256 {oid}; upload it through the LFS batch "
            "API first (clients 1.x and later need HF_HUB_DISABLE_XET=1).",
        )
    if size is not None and size != source.size:
        raise HubError(
            400, "BadRequest", f"{path}: object {oid} has {source.size} bytes, not {size}."
        )
    return source


def _apply(
    actor: Actor,
    repository: Repository,
    files: dict[str, Source],
    lines: Iterator[dict[str, Any]],
    temps: list[IO[bytes]],
) -> None:
    """Apply the commit's operations, in order, to ``files`` (path -> source)."""
    for item in lines:
        key, value = item["key"], item["value"]
        path = value.get("path")
        if not isinstance(path, str) or not path:
            raise HubError(400, "BadRequest", f"A {key} operation needs a path.")
        path = path.lstrip("/")
        if key == "file":
            check_file_path(path)
            files[path] = _inline_file(path, value, temps)
        elif key == "lfsFile":
            check_file_path(path)
            files[path] = _lfs_file(actor, repository, path, value)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, "EntryNotFound", f"{path} is not in the repository.")
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise HubError(404, "EntryNotFound", f"{prefix} is not a folder of the repository.")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, "BadRequest", f"Unknown commit operation {key!r}.")


def settle_kind(repository: Repository, paths: list[str]) -> None:
    """A model repository's first version decides its kind: ``adapter_config.json`` makes
    an adapter, ``config.json`` plus safetensors weights a base model. The Hub's
    ``create_repo`` has no field for it, and with no version yet nothing depends on it."""
    if repository.kind == Repository.Kind.DATASET:
        return
    if "adapter_config.json" in paths:
        kind = Repository.Kind.ADAPTER
    elif "config.json" in paths and any(p.endswith(".safetensors") for p in paths):
        kind = Repository.Kind.BASE_MODEL
    else:
        return
    if kind != repository.kind and not repository.versions.exists():
        Repository.objects.filter(pk=repository.pk).update(kind=kind)
        repository.kind = kind


def _read(source: Source | None) -> bytes | None:
    """Small files (model card, adapter config) for lineage; None if absent or too big."""
    if source is None or source.size > CARD_MAX_BYTES:
        return None
    if isinstance(source, services.IncomingFile):
        source.fileobj.seek(0)
        return source.fileobj.read()
    if isinstance(source, Blob):
        return get_blob_store().read_range(source.storage_key, 0, source.size)
    return None  # an LFS object is not read before it is verified


def _publish(
    actor: Actor, repository: Repository, files: dict[str, Source], meta: dict[str, Any]
) -> Version:
    """Store inline files, then publish: through an upload session when LFS objects still
    need hashing (``uploads.upload_finalize``), directly otherwise."""
    blobs: dict[str, Blob | UploadFile] = {
        path: services.blob_ingest(src) if isinstance(src, services.IncomingFile) else src
        for path, src in files.items()
    }
    staged = {p: s for p, s in blobs.items() if isinstance(s, UploadFile)}
    if not staged:
        ready = [(p, b) for p, b in blobs.items() if isinstance(b, Blob)]
        return services.version_publish(
            actor=actor,
            repository=repository,
            files=ready,
            spec=spec_from_metadata(meta),
            message=str(meta.get("message") or ""),
            metadata=stored_metadata(meta),
        ).version
    assert actor.user is not None
    session = UploadSession.objects.create(
        repository=repository,
        created_by=actor.user,
        commit_metadata=meta,
        expires_at=timezone.now() + uploads.SESSION_TTL,
    )
    UploadFile.objects.bulk_create(
        UploadFile(
            session=session,
            path=path,
            size=src.size,
            sha256=src.sha256,
            staging_key=src.staging_key if isinstance(src, UploadFile) else "",
        )
        for path, src in blobs.items()
    )
    return uploads.upload_finalize(session)


@hub_view("POST")
def commit(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> JsonResponse:
    """``POST /api/{type}s/{repo}/commit/main`` (NDJSON): a new version on top of the head."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name, need=Role.WRITE)
    _check_branch(request, revision)
    lines = _lines(request)
    first = next(lines, None)
    if first is None or first.get("key") != "header":
        raise HubError(400, "BadRequest", "A commit starts with a header line.")
    header = first["value"]
    summary = str(header.get("summary") or "").strip()
    description = str(header.get("description") or "").strip()
    head = head_version(repository)
    parent = header.get("parentCommit")
    if parent and (head is None or parent != head.commit_id):
        raise HubError(
            412,
            "PreconditionFailed",
            f"parentCommit {parent} is not the head of main"
            + (f" ({head.commit_id}, {head.label})." if head else " (the repository is empty)."),
        )
    files: dict[str, Source] = (
        {f.path: f.blob for f in head.files.select_related("blob")} if head else {}
    )
    temps: list[IO[bytes]] = []
    try:
        _apply(actor, repository, files, lines, temps)
        if not files:
            raise HubError(400, "BadRequest", "A commit must leave at least one file.")
        settle_kind(repository, list(files))
        readme = _read(files.get("README.md"))
        meta = cards.commit_metadata(
            actor,
            repository,
            message="\n\n".join(p for p in (summary, description) if p),
            readme=readme.decode("utf-8", "replace") if readme is not None else None,
            adapter_config=_read(files.get("adapter_config.json")),
        )
        # Every check the publish makes, before any byte is stored or hashed.
        services.version_check(
            actor=actor,
            repository=repository,
            paths=list(files),
            spec=spec_from_metadata(meta),
            message=str(meta["message"]),
            metadata=stored_metadata(meta),
            size=sum(source.size for source in files.values()),
        )
        version = _publish(actor, repository, files, meta)
    finally:
        for temp in temps:
            temp.close()
    return json_ok(
        {
            "commitOid": version.commit_id,
            "commitUrl": hub_url(f"{repo_path(repository)}/commit/{version.commit_id}"),
            "strataVersion": version.label,
        }
    )


# --- Tags -----------------------------------------------------------------------------------


@hub_view("POST", "DELETE")
def tag(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> JsonResponse:
    """``POST .../tag/{rev}`` {"tag"} names a version with an alias; ``DELETE .../tag/{tag}``."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name, need=Role.WRITE)
    if request.method == "DELETE":
        services.alias_delete(actor=actor, repository=repository, name=revision)
        return json_ok({})
    body = read_json(request, limit=64 * 1024)
    tag_name = body.get("tag") if isinstance(body, dict) else None
    if not isinstance(tag_name, str):
        raise HubError(400, "BadRequest", "Send {tag, message?}.")
    version = version_for(actor, repository, revision)
    if Alias.objects.filter(repository=repository, name=tag_name).exists():
        raise HubError(409, "TagExists", f"Tag {tag_name} already exists.")
    services.alias_set(actor=actor, repository=repository, name=tag_name, version=version)
    return json_ok({"name": tag_name, "targetCommit": version.commit_id})
