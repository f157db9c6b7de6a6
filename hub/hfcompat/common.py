"""Shared pieces of the Hub routes: the caller, repository lookup, URLs, ids and dates."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from hub.accounts.models import Role
from hub.accounts.services import token_authenticate
from hub.api.auth import bearer_secret
from hub.hfcompat.errors import INVALID_CREDENTIALS, HubError
from hub.registry.access import Actor, repository_for
from hub.registry.errors import NotFound
from hub.registry.models import Repository, Version

#: Where the routes are mounted; clients set HF_ENDPOINT=<PUBLIC_BASE_URL>/hf.
PREFIX = "/hf"
#: URL segment of the Hub's repository types -> the types themselves.
API_TYPES = {"models": "model", "datasets": "dataset"}


def actor_of(request: HttpRequest) -> Actor:
    """The caller from ``Authorization: Bearer <strata token>``; a bad token is refused."""
    secret = bearer_secret(request)
    if secret is None:
        return Actor.anonymous()
    token = token_authenticate(secret)
    if token is None:
        raise HubError(
            401,
            "InvalidCredentials",
            INVALID_CREDENTIALS,
            headers={"WWW-Authenticate": 'Bearer realm="strata"'},
        )
    return Actor.of(token.user, token)


def repo_type_of(repository: Repository) -> str:
    return "dataset" if repository.kind == Repository.Kind.DATASET else "model"


def find_repo(
    actor: Actor, repo_type: str, namespace: str, name: str, *, need: str = Role.READ
) -> Repository:
    """The repository as the actor may see it; a type mismatch looks like a missing repo."""
    repository = repository_for(actor, namespace, name, need=need)
    if repo_type_of(repository) != repo_type:
        raise NotFound("repo_not_found", f"Repository {namespace}/{name} was not found.")
    return repository


def head_version(repository: Repository) -> Version | None:
    """The tip of the ``main`` branch for writes: the newest version, whatever its status.

    Reads of ``main`` follow the alias (the newest *valid* version); commits build on
    what the author pushed last, as a git branch would.
    """
    return (
        Version.objects.filter(repository=repository, variant="")
        .order_by("-number")
        .select_related("repository__namespace")
        .first()
    )


def hub_url(path: str) -> str:
    """An absolute Hub URL. Clients check that its host equals HF_ENDPOINT's."""
    return f"{settings.PUBLIC_BASE_URL}{PREFIX}/{path.lstrip('/')}"


def repo_path(repository: Repository) -> str:
    """``ns/name`` for models, ``datasets/ns/name`` for datasets (the Hub's web paths)."""
    prefix = "datasets/" if repository.kind == Repository.Kind.DATASET else ""
    return f"{prefix}{repository.full_name}"


def iso_z(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``: the client rejects ``+00:00``."""
    if moment is None:
        return None
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git-LFS pointer file of a blob: what a git tree would hold for it."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def git_blob_id(data: bytes) -> str:
    """Git's object id of a blob (sha1 of ``blob <len>\\0<data>``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def file_entry(path: str, sha256: str, size: int) -> dict[str, Any]:
    """A tree entry. Every Strata file is content-addressed by sha256, so every file is
    presented the way the Hub presents LFS files: ``oid`` is the pointer's git id."""
    pointer = lfs_pointer(sha256, size)
    return {
        "type": "file",
        "path": path,
        "size": size,
        "oid": git_blob_id(pointer),
        "lfs": {"oid": sha256, "size": size, "pointerSize": len(pointer)},
    }


def tree_id(entries: list[tuple[str, str]]) -> str:
    """A stable 40-hex id for a folder, from its (path, sha256) contents."""
    canonical = json.dumps(sorted(entries), separators=(",", ":")).encode()
    return hashlib.sha1(b"tree\0" + canonical, usedforsecurity=False).hexdigest()


def json_ok(data: Any, *, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, safe=False)


def read_json(request: HttpRequest, *, limit: int = 4 * 1024 * 1024) -> Any:
    """The JSON request body, read up to ``limit`` bytes (the rest is drained later)."""
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise HubError(413, "PayloadTooLarge", f"The request body is limited to {limit} bytes.")
    try:
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        raise HubError(400, "BadRequest", f"The request body is not valid JSON: {exc}") from exc
