"""Read routes: repository and revision info, tree listings, refs, commits, whoami.

Revisions are Strata's names: ``v3``, ``v3-merged``, aliases (``main`` is the newest
valid version) and 40-hex commit ids. Branch and tag names never contain ``/`` and never
look like a commit id, so the client's URL quoting needs no special handling.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from hub.accounts.models import Membership
from hub.hfcompat.common import (
    API_TYPES,
    actor_of,
    file_entry,
    find_repo,
    iso_z,
    json_ok,
    tree_id,
)
from hub.hfcompat.errors import INVALID_CREDENTIALS, HubError, hub_view
from hub.registry.access import Actor
from hub.registry.errors import NotFound
from hub.registry.lineage import adapter_base
from hub.registry.lookups import version_files
from hub.registry.models import Alias, Repository, Version, VersionFile
from hub.registry.selectors import can_see_invalid, version_for, versions_for

#: Entries per page of tree and commit listings; further pages via ``Link: rel="next"``.
PAGE_SIZE = 1000
#: How many older versions ``expand=true`` looks through to date each file.
HISTORY_LIMIT = 200

FileRow = tuple[str, str, int]  # (path, sha256, size)


def main_or_none(actor: Actor, repository: Repository) -> Version | None:
    try:
        return version_for(actor, repository, Alias.MAIN)
    except NotFound:
        return None


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def commit_title(version: Version) -> str:
    first = version.message.strip().splitlines()[0] if version.message.strip() else ""
    return first or f"Strata {version.label}"


def last_commit_json(version: Version) -> dict[str, Any]:
    return {
        "id": version.commit_id,
        "title": commit_title(version),
        "date": iso_z(version.created_at),
    }


def _rows(version: Version) -> list[FileRow]:
    return [(f.path, f.blob.sha256, f.blob.size) for f in version_files(version)]


# --- Repository and revision info -------------------------------------------------------


@hub_view("GET")
def repo_info(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str | None = None
) -> JsonResponse:
    """``GET /api/{models,datasets}/{repo}[/revision/{rev}]``: ``id``, ``sha``, ``siblings``..."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name)
    # Without a revision the Hub describes the default branch; a repository whose first
    # version is still being validated has none yet, and is described without a sha.
    version = (
        main_or_none(actor, repository)
        if revision is None
        else version_for(actor, repository, revision)
    )
    with_blobs = _truthy(request.GET.get("blobs"))
    siblings: list[dict[str, Any]] = []
    for path, sha256, size in _rows(version) if version else []:
        sibling: dict[str, Any] = {"rfilename": path}
        if with_blobs:
            entry = file_entry(path, sha256, size)
            sibling |= {
                "size": size,
                "blobId": entry["oid"],
                "lfs": {"size": size, "sha256": sha256, "pointerSize": entry["lfs"]["pointerSize"]},
            }
        siblings.append(sibling)
    data: dict[str, Any] = {
        "_id": f"strata-{repository.pk}",
        "id": repository.full_name,
        "author": repository.namespace.name,
        "sha": version.commit_id if version else None,
        "lastModified": iso_z(version.created_at if version else repository.updated_at),
        "createdAt": iso_z(repository.created_at),
        "private": repository.is_private,
        "gated": False,
        "disabled": False,
        "downloads": repository.downloads,
        "likes": 0,
        "tags": list(repository.tags),
        "siblings": siblings,
        "usedStorage": version.total_size if version else 0,
        "description": repository.description,
        # Strata's own view of the revision; unknown keys become attributes client-side.
        "strata": _strata_json(actor, repository, version),
    }
    if repository.kind == Repository.Kind.DATASET:
        data["cardData"] = None
    else:
        data["modelId"] = repository.full_name
        data["library_name"] = "peft" if repository.kind == Repository.Kind.ADAPTER else None
        data["pipeline_tag"] = None
        data["spaces"] = []
    return json_ok(data)


def _strata_json(actor: Actor, repository: Repository, version: Version | None) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": repository.kind}
    if version is None:
        return info
    info |= {"version": version.label, "status": version.status}
    base = adapter_base(version) if repository.kind == Repository.Kind.ADAPTER else None
    if base is not None:
        try:
            visible = find_repo(
                actor, "model", base.repository.namespace.name, base.repository.name
            )
        except NotFound:
            visible = None
        if visible is not None:
            info["baseModel"] = f"{visible.full_name}@{base.label}"
    return info


# --- Trees ----------------------------------------------------------------------------------


def _dir_entry(path: str, rows: list[FileRow]) -> dict[str, Any]:
    inside = [(p, s) for p, s, _ in rows if p.startswith(path + "/")]
    return {"type": "directory", "path": path, "oid": tree_id(inside)}


def listing(rows: list[FileRow], folder: str, *, recursive: bool) -> list[dict[str, Any]] | None:
    """Entries under ``folder`` (all levels or one), sorted by path; None if no such folder."""
    prefix = f"{folder}/" if folder else ""
    files: list[dict[str, Any]] = []
    folders: set[str] = set()
    found = not folder
    for path, sha256, size in rows:
        if not path.startswith(prefix):
            continue
        found = True
        parts = path[len(prefix) :].split("/")
        depth = len(parts) if recursive else 1
        for level in range(1, min(depth, len(parts) - 1) + 1):
            folders.add(prefix + "/".join(parts[:level]))
        if recursive or len(parts) == 1:
            files.append(file_entry(path, sha256, size))
    if not found:
        return None
    entries = files + [_dir_entry(d, rows) for d in folders]
    return sorted(entries, key=lambda e: e["path"])


def last_commits(version: Version, paths: set[str]) -> dict[str, Version]:
    """For each path, the oldest version of an unbroken run that kept its current bytes:
    the commit that last changed it, as ``git log -1 -- path`` would say."""
    history = list(
        Version.objects.filter(
            repository_id=version.repository_id,
            variant=version.variant,
            number__lte=version.number,
        ).order_by("-number")[:HISTORY_LIMIT]
    )
    blobs: dict[int, dict[str, str]] = defaultdict(dict)
    for version_id, path, blob_id in VersionFile.objects.filter(
        version__in=[v.pk for v in history], path__in=paths
    ).values_list("version_id", "path", "blob_id"):
        blobs[version_id][path] = blob_id
    current = blobs[version.pk]
    result = {path: version for path in paths}
    open_paths = set(paths)
    for older in history[1:]:
        for path in list(open_paths):
            if blobs[older.pk].get(path) == current.get(path):
                result[path] = older
            else:
                open_paths.discard(path)
        if not open_paths:
            break
    return result


def _expand(version: Version, entries: list[dict[str, Any]]) -> None:
    file_paths = {e["path"] for e in entries if e["type"] == "file"}
    dirs = [e for e in entries if e["type"] == "directory"]
    all_rows = _rows(version) if dirs else []
    for d in dirs:
        file_paths |= {p for p, _, _ in all_rows if p.startswith(d["path"] + "/")}
    commits = last_commits(version, file_paths)
    for entry in entries:
        if entry["type"] == "file":
            entry["lastCommit"] = last_commit_json(commits[entry["path"]])
        else:
            under = [v for p, v in commits.items() if p.startswith(entry["path"] + "/")]
            if under:
                entry["lastCommit"] = last_commit_json(max(under, key=lambda v: v.number))


def paged(request: HttpRequest, items: list[Any]) -> JsonResponse:
    """One page of ``items``; a ``Link: <...>; rel="next"`` header points at the next one."""
    try:
        cursor = max(0, int(request.GET.get("cursor", "0")))
        limit = max(1, min(int(request.GET.get("limit", PAGE_SIZE)), PAGE_SIZE))
    except ValueError as exc:
        raise HubError(400, "BadRequest", "cursor and limit must be integers.") from exc
    response = json_ok(items[cursor : cursor + limit])
    if cursor + limit < len(items):
        query = request.GET.copy()
        query["cursor"] = str(cursor + limit)
        url = f"{settings.PUBLIC_BASE_URL}{quote(request.path)}?{query.urlencode()}"
        response["Link"] = f'<{url}>; rel="next"'
    return response


@hub_view("GET")
def tree(
    request: HttpRequest,
    repo_type: str,
    namespace: str,
    name: str,
    revision: str,
    path: str = "",
) -> JsonResponse:
    """``GET /api/{type}s/{repo}/tree/{rev}[/{path}]?recursive=&expand=``."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name)
    version = version_for(actor, repository, revision)
    folder = path.strip("/")
    entries = listing(_rows(version), folder, recursive=_truthy(request.GET.get("recursive")))
    if entries is None:
        raise HubError(
            404,
            "EntryNotFound",
            f"{folder} is not a folder of {repository.full_name}@{version.label}.",
            headers={"X-Repo-Commit": version.commit_id},
        )
    if _truthy(request.GET.get("expand")):
        _expand(version, entries)
    return paged(request, entries)


@hub_view("POST")
def paths_info(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> JsonResponse:
    """``POST /api/{type}s/{repo}/paths-info/{rev}`` (form: ``paths``, ``expand``)."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name)
    version = version_for(actor, repository, revision)
    rows = _rows(version)
    by_path = {p: (s, n) for p, s, n in rows}
    entries: list[dict[str, Any]] = []
    for wanted in dict.fromkeys(p.strip("/") for p in request.POST.getlist("paths")):
        if wanted in by_path:
            sha256, size = by_path[wanted]
            entries.append(file_entry(wanted, sha256, size))
        elif wanted and any(p.startswith(wanted + "/") for p, _, _ in rows):
            entries.append(_dir_entry(wanted, rows))
    if _truthy(request.POST.get("expand")):
        _expand(version, entries)
    return json_ok(entries)


# --- Refs and commits ------------------------------------------------------------------------


def _ref(name: str, kind: str, version: Version) -> dict[str, str]:
    return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": version.commit_id}


@hub_view("GET")
def refs(request: HttpRequest, repo_type: str, namespace: str, name: str) -> JsonResponse:
    """``main`` is the only branch; other aliases and every version label are tags."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name)
    main = main_or_none(actor, repository)
    show_invalid = can_see_invalid(actor, repository)
    aliases = (
        Alias.objects.filter(repository=repository)
        .exclude(name=Alias.MAIN)
        .select_related("version")
        .order_by("name")
    )
    tags = [
        _ref(a.name, "tags", a.version)
        for a in aliases
        if show_invalid or a.version.status != Version.Status.INVALID
    ]
    tags += [_ref(v.label, "tags", v) for v in versions_for(actor, repository)]
    data: dict[str, Any] = {
        "branches": [_ref(Alias.MAIN, "heads", main)] if main else [],
        "tags": tags,
        "converts": [],
    }
    if _truthy(request.GET.get("include_prs")):
        data["pullRequests"] = []
    return json_ok(data)


@hub_view("GET")
def commits(
    request: HttpRequest, repo_type: str, namespace: str, name: str, revision: str
) -> JsonResponse:
    """``GET /api/{type}s/{repo}/commits/{rev}``: the version and the ones before it."""
    actor = actor_of(request)
    repository = find_repo(actor, API_TYPES[repo_type], namespace, name)
    version = version_for(actor, repository, revision)
    history = (
        versions_for(actor, repository)
        .filter(variant=version.variant, number__lte=version.number)
        .select_related("created_by")
    )
    items = [
        {
            "id": v.commit_id,
            "title": commit_title(v),
            "message": v.message,
            "date": iso_z(v.created_at),
            "authors": [{"user": v.created_by.username}] if v.created_by else [],
        }
        for v in history
    ]
    return paged(request, items)


# --- Accounts -----------------------------------------------------------------------------


@hub_view("GET")
def whoami(request: HttpRequest) -> JsonResponse:
    """``GET /api/whoami-v2``: who the token belongs to, and what it may do."""
    actor = actor_of(request)
    if actor.user is None:
        raise HubError(401, "Unauthorized", INVALID_CREDENTIALS)
    user = actor.user
    orgs = Membership.objects.filter(user=user).select_related("namespace")
    return json_ok(
        {
            "type": "user",
            "id": str(user.pk),
            "name": user.username,
            "fullname": user.get_full_name() or user.username,
            "email": user.email or None,
            "isPro": False,
            "orgs": [{"type": "org", "name": m.namespace.name, "roleInOrg": m.role} for m in orgs],
            "auth": {
                "type": "access_token",
                "accessToken": {
                    "displayName": "strata token",
                    "role": "write" if actor.write_scope else "read",
                },
            },
        }
    )


@hub_view("GET")
def agent_harnesses(request: HttpRequest) -> JsonResponse:
    """Client telemetry asks once a day; an empty registry keeps it quiet."""
    return json_ok({"standardEnvVars": [], "harnesses": {}})
