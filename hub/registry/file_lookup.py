"""The download hot path: a file at a revision, with the access check, in one query.

``huggingface_hub`` sends a HEAD for every file it may download, and pulls in scripts
send thousands. Through the ORM the same answer costs four queries and ~5 ms of Python
(``repository_for``, ``version_for``, the file, the blob); here it is one parameterized
statement. It answers only the common, successful case: when it finds nothing, or finds
an invalid version (whose visibility depends on the caller's role), the caller takes the
ordinary path, which also words the precise error. So this module decides nothing the
ORM path would decide differently; the access-matrix tests cover both.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from hub.accounts.models import Membership, Namespace
from hub.registry.access import Actor
from hub.registry.models import Alias, Blob, Repository, Version, VersionFile
from hub.registry.names import is_commit_id, is_version_label, version_label_parts


@dataclass(frozen=True)
class FoundFile:
    repository: Repository
    version: Version
    blob: Blob


_TABLES = {
    "repository": Repository._meta.db_table,
    "namespace": Namespace._meta.db_table,
    "membership": Membership._meta.db_table,
    "version": Version._meta.db_table,
    "alias": Alias._meta.db_table,
    "file": VersionFile._meta.db_table,
    "blob": Blob._meta.db_table,
}

_SELECT = """
SELECT r.id, r.kind, v.id, v.number, v.variant, v.commit_id, v.status,
       b.sha256, b.size, b.storage_key
FROM {repository} r
JOIN {namespace} n ON n.id = r.namespace_id
JOIN {version} v ON v.repository_id = r.id
JOIN {file} f ON f.version_id = v.id
JOIN {blob} b ON b.sha256 = f.blob_id
WHERE n.name = %s AND r.name = %s AND r.deleted_at IS NULL AND f.path = %s
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


def file_lookup(
    actor: Actor, namespace: str, name: str, revision: str, path: str
) -> FoundFile | None:
    """The file, its version and repository if the actor may read them; None otherwise,
    or when the version is invalid (the caller's ordinary path decides those)."""
    params: list[str | int] = [namespace, name, path]
    if is_version_label(revision):
        how, params = "label", [*params, *version_label_parts(revision)]
    elif is_commit_id(revision):
        how, params = "commit", [*params, revision]
    else:
        how, params = "alias", [*params, revision]
    public = Repository.Visibility.PUBLIC
    if actor.user is None:
        who, params = "anonymous", [*params, public]
    elif actor.is_site_admin:
        who = "site_admin"
    else:
        who, params = "member", [*params, public, actor.user.pk, actor.user.pk]
    sql = (_SELECT + _REVISION[how] + _VISIBLE[who]).format(**_TABLES)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
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
