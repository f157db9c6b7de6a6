"""The hot read paths: a version, or a file at a revision, with the access check, in one query.

``huggingface_hub`` sends a HEAD for every file it may download, pulls in scripts send
thousands, and tools poll version details while jobs run. Through the ORM the same
answers cost three or four queries and several ms of Python (``repository_for``,
``version_for``, the file, the blob); here each is one parameterized statement, run by
:mod:`hub.db_rows` (prepared on PostgreSQL). A version's files, lineage edges and jobs
are three more, sent together.

They answer only the common, successful case: when they find nothing, or find an
invalid version (whose visibility depends on the caller's role), the caller takes the
ordinary path, which also words the precise error. So this module decides nothing the
ORM path would decide differently; tests/registry/test_lookups.py compares both for
every kind of caller, and the access-matrix tests cover the endpoints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from hub.accounts.models import Membership, Namespace
from hub.db_rows import Row, columns, fetch, fetch_many, instance
from hub.registry.access import Actor
from hub.registry.models import (
    Alias,
    Blob,
    Job,
    LineageEdge,
    Repository,
    Version,
    VersionFile,
)
from hub.registry.names import is_commit_id, is_version_label, version_label_parts

Params = list[str | int]


@dataclass(frozen=True)
class FoundFile:
    repository: Repository
    version: Version
    blob: Blob


@functools.cache
def _tables() -> dict[str, str]:
    return {
        "repository": Repository._meta.db_table,
        "namespace": Namespace._meta.db_table,
        "membership": Membership._meta.db_table,
        "version": Version._meta.db_table,
        "alias": Alias._meta.db_table,
        "file": VersionFile._meta.db_table,
        "blob": Blob._meta.db_table,
        "edge": LineageEdge._meta.db_table,
        "job": Job._meta.db_table,
    }


_FROM = """
FROM {repository} r
JOIN {namespace} n ON n.id = r.namespace_id
JOIN {version} v ON v.repository_id = r.id
"""
_WHERE = "WHERE n.name = %s AND r.name = %s AND r.deleted_at IS NULL"
_FILE = """JOIN {file} f ON f.version_id = v.id
JOIN {blob} b ON b.sha256 = f.blob_id
"""

_REVISION = {
    "label": " AND v.number = %s AND v.variant = %s",
    "commit": " AND v.commit_id = %s",
    "alias": (
        " AND v.id = (SELECT a.version_id FROM {alias} a"
        " WHERE a.repository_id = r.id AND a.name = %s)"
    ),
}

_VISIBLE = {
    "anonymous": " AND r.visibility = %s",
    "member": (
        " AND (r.visibility = %s OR n.user_id = %s OR EXISTS ("
        "SELECT 1 FROM {membership} m WHERE m.namespace_id = n.id AND m.user_id = %s))"
    ),
    "site_admin": "",
}


def _revision(revision: str) -> tuple[str, Params]:
    """The clause that picks the version named by ``revision``, with its parameters."""
    if is_version_label(revision):
        return _REVISION["label"], [*version_label_parts(revision)]
    if is_commit_id(revision):
        return _REVISION["commit"], [revision]
    return _REVISION["alias"], [revision]


def _visible(actor: Actor) -> tuple[str, Params]:
    """The clause that keeps only repositories the actor may read (as
    ``access.repositories_visible_to`` decides), with its parameters."""
    public = Repository.Visibility.PUBLIC
    if actor.user is None:
        return _VISIBLE["anonymous"], [public]
    if actor.is_site_admin:
        return _VISIBLE["site_admin"], []
    return _VISIBLE["member"], [public, actor.user.pk, actor.user.pk]


def _first_row(
    select: str, actor: Actor, namespace: str, name: str, revision: str, *, path: str | None = None
) -> Row | None:
    """Run ``select`` over the repository, namespace and version named (and the file at
    ``path``, aliased ``f`` and its blob ``b``, when given), as the actor may see them."""
    by_revision, revision_params = _revision(revision)
    by_actor, actor_params = _visible(actor)
    sql = select + _FROM
    params: Params = [namespace, name, *revision_params, *actor_params]
    if path is None:
        sql += _WHERE + by_revision + by_actor
    else:
        sql += _FILE + _WHERE + " AND f.path = %s" + by_revision + by_actor
        params.insert(2, path)
    rows = fetch(sql.format(**_tables()), params)
    return rows[0] if rows else None


def file_lookup(
    actor: Actor, namespace: str, name: str, revision: str, path: str
) -> FoundFile | None:
    """The file, its version and repository if the actor may read them; None otherwise,
    or when the version is invalid (the caller's ordinary path decides those)."""
    row = _first_row(
        "SELECT r.id, r.kind, v.id, v.number, v.variant, v.commit_id, v.status,"
        " b.sha256, b.size, b.storage_key",
        actor,
        namespace,
        name,
        revision,
        path=path,
    )
    if row is None:
        return None
    repo_id, kind, version_id, number, variant, commit_id, status, sha256, size, key = row
    if status == Version.Status.INVALID:
        return None
    return FoundFile(
        repository=Repository(pk=repo_id, kind=kind, name=name),
        version=Version(
            pk=version_id,
            repository_id=repo_id,
            number=number,
            variant=variant,
            commit_id=commit_id,
            status=status,
        ),
        blob=Blob(sha256=sha256, size=size, storage_key=key),
    )


@functools.cache
def _version_select() -> str:
    # Every column of the three models, so the instances are whole, however they grow.
    return f"SELECT {columns(Repository, 'r')}, {columns(Namespace, 'n')}, {columns(Version, 'v')}"


def version_lookup(
    actor: Actor, namespace: str, name: str, revision: str
) -> tuple[Repository, Version] | None:
    """The repository (with its namespace) and the version if the actor may read them;
    None otherwise, or when the version is invalid."""
    row = _first_row(_version_select(), actor, namespace, name, revision)
    if row is None:
        return None
    repository, end = instance(Repository, row)
    repository.namespace, end = instance(Namespace, row, end)
    version, _ = instance(Version, row, end)
    if version.status == Version.Status.INVALID:
        return None
    version.repository = repository
    return repository, version


# A version's relations: each read is a statement and what turns its rows into instances,
# so version detail can send all three at once (:func:`version_relations`).


@functools.cache
def _files_sql() -> str:
    sql = (
        f"SELECT {columns(VersionFile, 'f')}, {columns(Blob, 'b')}"  # noqa: S608
        " FROM {file} f JOIN {blob} b ON b.sha256 = f.blob_id"
        " WHERE f.version_id = %s ORDER BY f.path"
    )
    return sql.format(**_tables())


def _files_from(rows: list[Row], version: Version) -> list[VersionFile]:
    files = []
    for row in rows:
        file, end = instance(VersionFile, row)
        file.blob, _ = instance(Blob, row, end)
        file.version = version
        files.append(file)
    return files


@functools.cache
def _edges_sql() -> str:
    sql = (
        f"SELECT {columns(LineageEdge, 'e')}, {columns(Version, 'v')},"  # noqa: S608
        f" {columns(Repository, 'r')}, {columns(Namespace, 'n')}"
        " FROM {edge} e"
        " LEFT JOIN {version} v ON v.id = e.parent_id"
        " LEFT JOIN {repository} r ON r.id = v.repository_id"
        " LEFT JOIN {namespace} n ON n.id = r.namespace_id"
        " WHERE e.child_id = %s ORDER BY e.kind, e.position"
    )
    return sql.format(**_tables())


def _edges_from(rows: list[Row], version: Version) -> list[LineageEdge]:
    edges = []
    for row in rows:
        edge, end = instance(LineageEdge, row)
        edge.child = version
        if edge.parent_id is not None:
            parent, end = instance(Version, row, end)
            parent.repository, end = instance(Repository, row, end)
            parent.repository.namespace, _ = instance(Namespace, row, end)
            edge.parent = parent
        edges.append(edge)
    return edges


@functools.cache
def _jobs_sql() -> str:
    sql = (
        f"SELECT {columns(Job, 'j')} FROM {{job}} j"  # noqa: S608
        " WHERE j.version_id = %s ORDER BY j.created_at DESC"
    )
    return sql.format(**_tables())


def version_files(version: Version) -> list[VersionFile]:
    """The version's files by path, each with its blob."""
    return _files_from(fetch(_files_sql(), [version.pk]), version)


@dataclass(frozen=True)
class VersionRelations:
    """A version's files (by path, with blobs), lineage edges (by kind and position, each
    parent with its repository and namespace; none for an external URI) and jobs
    (newest first)."""

    files: list[VersionFile]
    edges: list[LineageEdge]
    jobs: list[Job]


def version_relations(version: Version) -> VersionRelations:
    """What version detail shows of a version, read in one round trip."""
    params = [version.pk]
    files, edges, jobs = fetch_many(
        [(_files_sql(), params), (_edges_sql(), params), (_jobs_sql(), params)]
    )
    return VersionRelations(
        files=_files_from(files, version),
        edges=_edges_from(edges, version),
        jobs=[instance(Job, row)[0] for row in jobs],
    )
