"""The one-statement reads build exactly the instances the ORM builds.

On PostgreSQL in-process, and on SQLite (the embedded default) in a subprocess: SQLite
hands back datetimes and JSON as text and UUIDs without dashes, so the field converters
``hub.db_rows`` applies are what keeps the two paths equal there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[2]


def build_hub() -> dict[str, Any]:
    """A user with a token, and a repository whose v1 has files, a parent, an external
    dataset and a job, written through the ORM."""
    from hub.accounts.services import token_create, token_digest, user_create
    from hub.registry.models import Blob, Job, LineageEdge, Repository, Version, VersionFile

    user = user_create(username="rowan", password="correct-horse-battery")
    secret = token_create(
        user=user, name="rows", scope="write", expires_at=timezone.now() + timedelta(days=3)
    ).secret
    namespace = user.namespace  # type: ignore[attr-defined]
    base = Repository.objects.create(
        namespace=namespace, name="base", name_key="base", kind="model"
    )
    child = Repository.objects.create(
        namespace=namespace,
        name="child",
        name_key="child",
        kind="adapter",
        tags=["chat", "ünïcode"],
        base_repository=base,
        auto_merge=True,
    )
    parent = Version.objects.create(repository=base, number=1, commit_id="a" * 40, status="valid")
    version = Version.objects.create(
        repository=child,
        number=1,
        commit_id="b" * 40,
        status="pending",
        message="first",
        metadata={"nested": {"list": [1, 2.5, None, "x"]}},
        report={"checks": [{"ok": True}]},
        total_size=300,
    )
    for n, path in enumerate(["b.safetensors", "a.json"]):
        blob = Blob.objects.create(sha256=f"{n}" * 64, size=100 + n, storage_key=f"blobs/{n}")
        VersionFile.objects.create(version=version, path=path, blob=blob, uploaded_blob=None)
    LineageEdge.objects.create(child=version, parent=parent, kind="adapter_of")
    LineageEdge.objects.create(
        child=version, kind="trained_on", external_uri="hf://d/x", weight=0.5
    )
    Job.objects.create(kind="validate", version=version)
    return {"digest": token_digest(secret), "user": user.username}


def differences(a: Model | None, b: Model | None, what: str) -> list[str]:
    """Field by field, value and type: a datetime left as text would compare unequal."""
    if a is None or b is None or type(a) is not type(b):
        return [f"{what}: {a!r} vs {b!r}"]
    found = []
    for field in type(a)._meta.concrete_fields:
        x, y = getattr(a, field.attname), getattr(b, field.attname)
        if x != y or type(x) is not type(y):
            found.append(f"{what}.{field.attname}: {x!r} ({type(x).__name__}) vs {y!r}")
    return found


def compare_with_orm(hub: dict[str, Any]) -> list[str]:
    from hub.accounts.models import ApiToken
    from hub.accounts.services import _token_with_user
    from hub.registry.access import Actor
    from hub.registry.lookups import version_lookup, version_relations
    from hub.registry.models import Job, LineageEdge, Repository, Version, VersionFile

    found: list[str] = []
    token = _token_with_user(hub["digest"])
    expected_token = ApiToken.objects.select_related("user").get(digest=hub["digest"])
    found += differences(token, expected_token, "token")
    found += differences(token and token.user, expected_token.user, "token.user")

    owner = Actor(user=User.objects.get(username=hub["user"]))
    looked_up = version_lookup(owner, hub["user"], "child", "v1")
    repository = Repository.objects.select_related("namespace").get(name="child")
    version = Version.objects.get(repository=repository, number=1)
    if looked_up is None:
        return [*found, "version_lookup found nothing"]
    found += differences(looked_up[0], repository, "repository")
    found += differences(looked_up[0].namespace, repository.namespace, "namespace")
    found += differences(looked_up[1], version, "version")

    relations = version_relations(version)  # three statements in one round trip
    files = relations.files
    expected_files = list(VersionFile.objects.filter(version=version).select_related("blob"))
    if [f.path for f in files] != ["a.json", "b.safetensors"]:
        found.append(f"files out of order: {[f.path for f in files]}")
    for got, want in zip(files, expected_files, strict=True):
        found += differences(got, want, f"file {want.path}")
        found += differences(got.blob, want.blob, f"file {want.path}.blob")

    edges = relations.edges
    expected_edges = list(
        LineageEdge.objects.filter(child=version).select_related("parent__repository__namespace")
    )
    for got, want in zip(edges, expected_edges, strict=True):
        found += differences(got, want, f"edge {want.kind}")
        if want.parent is None:
            if got.parent_id is not None:
                found.append("an external edge has a parent")
            continue
        found += differences(got.parent, want.parent, "edge.parent")
        found += differences(got.parent.repository, want.parent.repository, "edge.parent.repo")
        found += differences(
            got.parent.repository.namespace, want.parent.repository.namespace, "edge.parent.ns"
        )
    expected_jobs = list(Job.objects.filter(version=version))
    for got, want in zip(relations.jobs, expected_jobs, strict=True):
        found += differences(got, want, "job")
    return found


@pytest.mark.django_db
def test_postgresql_rows_become_the_instances_the_orm_builds() -> None:
    hub = build_hub()
    # psycopg prepares a statement on its 5th run: the prepared runs must agree too.
    for _ in range(7):
        assert compare_with_orm(hub) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = " ".join(row[0] for row in cursor.fetchall())
    assert "t.digest = $1" in prepared
    assert "e.child_id = $1" in prepared  # run in a pipeline with the files and jobs


@pytest.mark.slow
def test_sqlite_rows_become_the_instances_the_orm_builds(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'rows.sqlite3'}",
        "SECRET_KEY": "rows-test-secret-key-not-for-production-0123456789",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    script = (
        "import json; from tests.registry.test_db_rows import build_hub, compare_with_orm; "
        "print(json.dumps(compare_with_orm(build_hub())))"
    )
    done = subprocess.run(
        [*manage, "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
