"""Who may do what, through every door: the REST API, the Hugging Face protocol, the web UI.

``ROWS`` is the whole policy as data: one row per endpoint, with the status every kind of
caller gets on a public and on a private repository. Callers are classed by the role they
hold on the repository's namespace (``hub/registry/access.py``: read < write < admin; a
user is admin of their own namespace, a site admin of every namespace):

    anon    nobody signed in
    none    signed in without a role there (an outsider, or a member of another org)
    read, write, admin

``ROLES`` says which class each person is in, namespace by namespace. The rules the
table encodes:

- A private repository is a missing one to whoever cannot read it: 404 from every
  endpoint, with the body a never-existing name gets, no data in the answer, and never
  a mention in a listing, a search, an autocomplete, a leaderboard or a job list. (A
  name inside a request body, as compose's inputs, is a reference: hidden or missing,
  it gets 400 ``reference_not_found``, as a push's lineage references do.)
- Readers read. A write by a reader gets 403 ``forbidden`` (they can see the repository,
  so a 403 tells them nothing new); an anonymous write gets 401 (the web: the login page).
- Writers push, upload, tag and edit metadata; delete and visibility changes need admin
  (``services.repository_delete`` / ``repository_update``).
- Merge and benchmark requests need read access only (``derived.merge_request``: anyone
  who can read the version may ask for its merged weights); compose needs write access
  on its target.

People, an organization and three sets of repositories are made once per module inside
a transaction that is rolled back at the end; every case runs in its own savepoint on
top (pytest-django's function-scoped ``db``), so a push, a delete or a visibility change
never reaches the next case. No Celery message is sent: a queued job row is enough.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponseBase
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from hub.accounts.models import ApiToken, Namespace
from hub.accounts.services import membership_remove, membership_set, organization_create
from hub.registry import benchmarks, services
from hub.registry.access import Actor
from hub.registry.lineage import DatasetRef, LineageSpec, Ref
from hub.registry.models import Job, Repository, Version
from tests.factories import adapter_files, base_model_files, make_token, make_user, multipart
from tests.web.hubdata import adapter_report, base_report, push

pytestmark = pytest.mark.django_db

# --- The policy ---------------------------------------------------------------------------

CLASSES = ("anon", "none", "read", "write", "admin")
Statuses = dict[str, int]


def roles(anon: int, none: int, read: int, write: int, admin: int) -> Statuses:
    return dict(zip(CLASSES, (anon, none, read, write, admin), strict=True))


def reads(ok: int) -> dict[str, Statuses]:
    """Anyone who can read the repository."""
    return {"public": roles(ok, ok, ok, ok, ok), "private": roles(404, 404, ok, ok, ok)}


def writes(ok: int) -> dict[str, Statuses]:
    """The write role."""
    return {"public": roles(401, 403, 403, ok, ok), "private": roles(404, 404, 403, ok, ok)}


def admins(ok: int) -> dict[str, Statuses]:
    """The admin role: owners, organization admins, site admins."""
    return {"public": roles(401, 403, 403, 403, ok), "private": roles(404, 404, 403, 403, ok)}


EVERYONE = roles(200, 200, 200, 200, 200)


def same(statuses: Statuses) -> dict[str, Statuses]:
    """Not about one repository: the same answer whatever its visibility."""
    return {"public": statuses, "private": statuses}


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    #: Placeholders: {ns}, {animal}, {lora} {base} {data} {side} (namespace/name), {job},
    #: {flip} (the other visibility).
    url: str
    expect: dict[str, Statuses]
    body: Any = None
    #: json | multipart | ndjson | form | lfs
    fmt: str = "json"
    #: A listing: this name shows to those who can read the target and to no one else.
    lists: str | None = None
    #: False where a reader need not see it (a job list shows one's own jobs only).
    listed_for_readers: bool = True
    #: The error code of this row's answer for a hidden (or missing) repository.
    missing: str = "repo_not_found"

    @property
    def door(self) -> str:
        if self.url.startswith("/api/v1/"):
            return "rest"
        return "hf" if self.url.startswith("/hf/") else "web"


NEW_BYTES = b'{"text": "pushed by the access matrix"}\n'
NEW_SHA = hashlib.sha256(NEW_BYTES).hexdigest()
V1 = "/api/v1/repos/{lora}/versions/v1"
HF_LORA = "/hf/api/models/{lora}"
NDJSON_COMMIT = (
    json.dumps({"key": "header", "value": {"summary": "from the access matrix"}})
    + "\n"
    + json.dumps(
        {
            "key": "file",
            "value": {
                "path": "extra.jsonl",
                "content": base64.b64encode(NEW_BYTES).decode(),
                "encoding": "base64",
            },
        }
    )
    + "\n"
)

ROWS = [
    # REST: listings and search.
    Row("REST list", "get", "/api/v1/repos?limit=100", same(EVERYONE),
        lists="{animal}-lora"),
    Row("REST search", "get", "/api/v1/repos?q={animal}&limit=100", same(EVERYONE),
        lists="{animal}-lora"),
    Row("REST filter by owner", "get", "/api/v1/repos?owner={ns}&limit=100",
        same(EVERYONE), lists="{animal}-lora"),
    Row("REST filter by public base", "get", "/api/v1/repos?base=acme/zebra-base&limit=100",
        same(EVERYONE), lists="{animal}-side"),
    Row("REST sort by score", "get",
        "/api/v1/repos?sort=score&eval_set=acme/zebra-data&limit=100",
        same(EVERYONE), lists="{animal}-side"),
    Row("REST leaderboard of a public base", "get", "/api/v1/leaderboards/acme/zebra-base",
        same(EVERYONE), lists="{animal}-side"),
    # REST: reads.
    Row("REST repo detail", "get", "/api/v1/repos/{lora}", reads(200)),
    Row("REST versions", "get", "/api/v1/repos/{lora}/versions", reads(200)),
    Row("REST version detail", "get", V1, reads(200)),
    Row("REST files", "get", V1 + "/files", reads(200)),
    Row("REST download", "get", V1 + "/files/adapter_config.json", reads(302)),
    Row("REST lineage", "get", V1 + "/lineage", reads(200)),
    Row("REST aliases", "get", "/api/v1/repos/{lora}/aliases", reads(200)),
    Row("REST benchmarks", "get", V1 + "/benchmarks", reads(200)),
    Row("REST leaderboard", "get", "/api/v1/leaderboards/{base}", reads(200)),
    Row("REST compare", "get", "/api/v1/compare?a={lora}@v1&b={lora}@pinned", reads(200)),
    Row("REST job detail", "get", "/api/v1/jobs/{job}", reads(200), missing="job_not_found"),
    Row("REST job list", "get", "/api/v1/jobs", same(roles(401, 200, 200, 200, 200)),
        lists="{animal}-lora", listed_for_readers=False),
    # REST: requests any reader may make.
    Row("REST merge request", "post", V1 + "/merge", reads(202), body={}),
    Row("REST benchmark request", "post", V1 + "/benchmark", reads(202),
        body={"eval_sets": ["acme/shared-evals"]}),
    # REST: writes.
    Row("REST push", "post", "/api/v1/repos/{data}/versions", writes(201),
        body={"extra.jsonl": NEW_BYTES}, fmt="multipart"),
    Row("REST upload session", "post", "/api/v1/repos/{data}/uploads", writes(201),
        body={"files": [{"path": "extra.jsonl", "size": len(NEW_BYTES), "sha256": NEW_SHA}]}),
    Row("REST alias set", "put", "/api/v1/repos/{lora}/aliases/stable", writes(200),
        body={"version": "v1"}),
    Row("REST alias delete", "delete", "/api/v1/repos/{lora}/aliases/pinned", writes(204)),
    Row("REST metadata edit", "patch", "/api/v1/repos/{lora}", writes(200),
        body={"description": "edited by the access matrix"}),
    # Compose refuses anonymous callers before it looks anything up, then resolves its
    # inputs as references in a body are resolved (a push's lineage too): one hidden or
    # missing is a 400 reference_not_found; then it checks the write role on its target.
    Row("REST compose request", "post", "/api/v1/compose",
        {"public": roles(401, 403, 403, 202, 202), "private": roles(401, 400, 403, 202, 202)},
        body={"inputs": [{"repo": "{lora}", "revision": "v1"}], "target": "{lora}"},
        missing="reference_not_found"),
    # REST: the admin role.
    Row("REST visibility change", "patch", "/api/v1/repos/{lora}", admins(200),
        body={"visibility": "{flip}"}),
    Row("REST delete", "delete", "/api/v1/repos/{lora}", admins(204)),
    # Hugging Face protocol: reads.
    Row("HF model info", "get", HF_LORA, reads(200)),
    Row("HF revision info", "get", HF_LORA + "/revision/v1", reads(200)),
    Row("HF tree", "get", HF_LORA + "/tree/main", reads(200)),
    Row("HF paths-info", "post", HF_LORA + "/paths-info/main", reads(200),
        body={"paths": "adapter_config.json"}, fmt="form"),
    Row("HF refs", "get", HF_LORA + "/refs", reads(200)),
    Row("HF commits", "get", HF_LORA + "/commits/main", reads(200)),
    Row("HF dataset info", "get", "/hf/api/datasets/{data}", reads(200)),
    Row("HF download", "get", "/hf/{lora}/resolve/main/adapter_config.json", reads(302)),
    Row("HF download HEAD", "head", "/hf/{lora}/resolve/v1/adapter_config.json", reads(302)),
    Row("HF dataset download", "get", "/hf/datasets/{data}/resolve/main/data.jsonl", reads(302)),
    # Hugging Face protocol: writes.
    Row("HF preupload", "post", HF_LORA + "/preupload/main", writes(200),
        body={"files": [{"path": "README.md", "size": 12, "sample": ""}]}),
    Row("HF commit", "post", "/hf/api/datasets/{data}/commit/main", writes(200),
        body=NDJSON_COMMIT, fmt="ndjson"),
    Row("HF LFS batch", "post", "/hf/{lora}.git/info/lfs/objects/batch", writes(200),
        body={"operation": "upload", "transfers": ["basic"],
              "objects": [{"oid": NEW_SHA, "size": len(NEW_BYTES)}]}, fmt="lfs"),
    Row("HF tag create", "post", HF_LORA + "/tag/v1", writes(200), body={"tag": "release"}),
    Row("HF tag delete", "delete", HF_LORA + "/tag/pinned", writes(200)),
    # Creating a repository is about the namespace: outside it, the namespace is missing.
    Row("HF create repo", "post", "/hf/api/repos/create", same(roles(401, 404, 403, 200, 200)),
        body={"name": "fresh-by-matrix", "organization": "{ns}"},
        missing="namespace_not_found"),
    # Web pages: listings.
    Row("web home", "get", "/", same(EVERYONE), lists="{animal}-lora"),
    Row("web search", "get", "/search?q={animal}", same(EVERYONE),
        lists="{animal}-lora"),
    Row("web models by owner", "get", "/models?owner={ns}", same(EVERYONE),
        lists="{animal}-lora"),
    Row("web autocomplete", "get", "/-/complete?kind=adapter&q={animal}",
        same(EVERYONE), lists="{animal}-lora"),
    Row("web namespace", "get", "/{ns}", same(EVERYONE), lists="{animal}-lora"),
    Row("web public base page", "get", "/acme/zebra-base", same(EVERYONE),
        lists="{animal}-side"),
    Row("web job list", "get", "/jobs", same(roles(302, 200, 200, 200, 200)),
        lists="{animal}-lora", listed_for_readers=False),
    # Web pages: one repository.
    Row("web repo page", "get", "/{lora}", reads(200)),
    Row("web version page", "get", "/{lora}/v/v1", reads(200)),
    Row("web lineage", "get", "/{lora}/v/v1/lineage", reads(200)),
    Row("web compare", "get", "/{lora}/compare/v1...pinned", reads(200)),
    Row("web dataset page", "get", "/{data}", reads(200)),
    Row("web job page", "get", "/jobs/{job}", reads(200)),
    # The upload page asks for a signed-in visitor first, then the write role.
    Row("web upload page", "get", "/{lora}/upload",
        {"public": roles(302, 403, 403, 200, 200), "private": roles(302, 404, 403, 200, 200)}),
]  # fmt: skip
ROW = {row.label: row for row in ROWS}
assert len(ROW) == len(ROWS), "row labels must be unique"


@dataclass(frozen=True)
class Target:
    """A set of repositories: ``{animal}-base`` (a base model), ``-data`` (a dataset),
    ``-lora`` (an adapter on -base, evaluated on -data), ``-side`` (an adapter on the
    public acme/zebra-base, benchmarked on acme/zebra-data), all of one visibility."""

    label: str
    ns: str
    animal: str
    visibility: str
    #: Who calls. Each class once at least; "none" twice where a member of another
    #: namespace could be mistaken for a member of this one.
    actors: tuple[str, ...]


IN_ACME = ("anonymous", "outsider", "owner", "reader", "writer", "org admin", "site admin")
IN_OLIVIA = ("anonymous", "outsider", "writer", "owner", "site admin")
TARGETS = [
    Target("acme public", "acme", "zebra", "public", IN_ACME),
    Target("acme private", "acme", "yak", "private", IN_ACME),
    Target("olivia private", "olivia", "okapi", "private", IN_OLIVIA),
]
TARGET = {t.label: t for t in TARGETS}
USERNAMES = {
    "outsider": "oscar",
    "reader": "rita",
    "writer": "wendy",
    "owner": "olivia",
    "org admin": "adam",
    "site admin": "sam",
}
#: Namespace -> actor -> role class; anyone else signed in is "none".
ROLES = {
    "acme": {"reader": "read", "writer": "write", "org admin": "admin", "site admin": "admin"},
    "olivia": {"owner": "admin", "site admin": "admin"},
}


def role_of(actor: str, target: Target) -> str:
    if actor == "anonymous":
        return "anon"
    return ROLES[target.ns].get(actor, "none")


# --- The world ----------------------------------------------------------------------------


@dataclass
class World:
    tokens: dict[str, str]
    read_tokens: dict[str, str]
    #: Tokens of the org admin that no longer work: "revoked", "expired".
    dead_tokens: dict[str, str]
    users: dict[str, User]
    ctx: dict[str, dict[str, str]] = field(default_factory=dict)
    #: What must never reach someone who cannot read the target: commit ids, a marker.
    secrets: dict[str, list[str]] = field(default_factory=dict)


def _valid(version: Version, report: dict[str, Any] | None = None, **extra: Any) -> Version:
    services.version_set_status(version=version, status="valid", report=report, **extra)
    version.refresh_from_db()
    return version


def _build_target(target: Target, pusher: User, seed: int, world: World) -> None:
    actor = Actor(user=pusher)
    ns, animal = target.ns, target.animal

    def repo(name: str, kind: str) -> Repository:
        return services.repository_create(
            actor=actor,
            namespace=ns,
            name=f"{animal}-{name}",
            kind=kind,
            visibility=target.visibility,
            description=f"Access matrix {kind}, codename {animal}cipher.",
        )

    base = repo("base", "base_model")
    report, manifest = base_report()
    base_v1 = _valid(push(actor, base, base_model_files(seed=seed)), report, manifest=manifest)
    data = repo("data", "dataset")
    data_v1 = push(actor, data, {"data.jsonl": f'{{"seed": {seed}}}\n'.encode()})
    if data_v1.status != Version.Status.VALID:
        data_v1 = _valid(data_v1)
    lora = repo("lora", "adapter")
    lora_v1 = push(
        actor,
        lora,
        adapter_files(seed=seed, base=f"{ns}/{animal}-base"),
        spec=LineageSpec(
            base=Ref(f"{ns}/{animal}-base", "v1"),
            evaluated_on=[DatasetRef(ref=Ref(f"{ns}/{animal}-data", "v1"))],
        ),
        message=f"{animal} adapter",
    )
    lora_v1 = _valid(lora_v1, adapter_report(4))
    services.alias_set(actor=actor, repository=lora, name="pinned", version=lora_v1)
    side = repo("side", "adapter")
    side_v1 = push(
        actor,
        side,
        adapter_files(seed=seed + 50, base="acme/zebra-base"),
        spec=LineageSpec(base=Ref("acme/zebra-base", "v1")),
    )
    side_v1 = _valid(side_v1, adapter_report(4))
    zebra_data = Version.objects.get(
        repository__namespace__name="acme", repository__name="zebra-data"
    )
    for version, eval_set in ((lora_v1, data_v1), (side_v1, zebra_data)):
        benchmarks.benchmark_record(
            version=version,
            eval_set=eval_set,
            code="access-matrix",
            metric="perplexity",
            base_value=12.0,
            adapter_value=9.0 + seed / 100,
            device="cpu",
            result={},
            job=None,
        )
    job = Job.objects.get(version=lora_v1, kind=Job.Kind.VALIDATE)
    world.ctx[target.label] = {
        "ns": ns,
        "animal": animal,
        "lora": f"{ns}/{animal}-lora",
        "base": f"{ns}/{animal}-base",
        "data": f"{ns}/{animal}-data",
        "side": f"{ns}/{animal}-side",
        "job": str(job.pk),
        "flip": "public" if target.visibility == "private" else "private",
    }
    world.secrets[target.label] = [
        f"{animal}cipher",
        *(v.commit_id for v in (base_v1, data_v1, lora_v1, side_v1)),
    ]


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[World]:
    # WhiteNoise warns about a missing STATIC_ROOT on every request; the pages use finders.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    fast = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with (
        django_db_blocker.unblock(),
        override_settings(PASSWORD_HASHERS=fast),
        transaction.atomic(),
    ):
        users = {actor: make_user(name) for actor, name in USERNAMES.items()}
        User.objects.filter(pk=users["site admin"].pk).update(is_superuser=True, is_staff=True)
        users["site admin"].refresh_from_db()
        acme = organization_create(actor=users["org admin"], name="acme")
        for actor, role in (("reader", "read"), ("writer", "write")):
            membership_set(actor=users["org admin"], org=acme, user=users[actor], role=role)
        world = World(
            tokens={actor: make_token(user) for actor, user in users.items()},
            read_tokens={actor: make_token(user, "read") for actor, user in users.items()},
            dead_tokens={state: make_token(users["org admin"]) for state in ("revoked", "expired")},
            users=users,
        )
        dead = ApiToken.objects.filter(user=users["org admin"]).order_by("-pk")
        revoked, expired = dead[1], dead[0]
        ApiToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
        ApiToken.objects.filter(pk=expired.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        shared = services.repository_create(
            actor=Actor(user=users["writer"]), namespace="acme", name="shared-evals", kind="dataset"
        )
        push(Actor(user=users["writer"]), shared, {"evals.jsonl": b'{"text": "shared"}\n'})
        for seed, target in enumerate(TARGETS, start=1):
            pusher = users["writer"] if target.ns == "acme" else users["owner"]
            _build_target(target, pusher, seed, world)
        # The checks "ran": the jobs are done, as a worker would leave them.
        Job.objects.filter(state=Job.State.QUEUED).update(
            state=Job.State.SUCCEEDED, attempts=1, finished_at=timezone.now()
        )
        yield world
        transaction.set_rollback(True)


# --- One request --------------------------------------------------------------------------


def fill(value: Any, ctx: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ctx)
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ctx) for v in value]
    return value


def send(
    row: Row,
    ctx: dict[str, str],
    *,
    token: str | None = None,
    session_user: User | None = None,
) -> HttpResponseBase:
    """Make ``row``'s request with a bearer token (REST, HF) or a signed-in session (web)."""
    url = row.url.format(**ctx)
    body = fill(row.body, ctx) if row.fmt not in ("multipart", "ndjson") else row.body
    client = _client(row.door)
    client.cookies.clear()
    if session_user is not None:
        client.force_login(session_user)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    call = getattr(client, row.method)
    if row.method in ("get", "head") or (body is None and row.door == "rest"):
        return call(url, **auth)  # type: ignore[no-any-return]
    if row.fmt == "multipart":
        return call(url, multipart(body), format="multipart", **auth)  # type: ignore[no-any-return]
    if row.fmt == "form":
        return call(url, body, **auth)  # type: ignore[no-any-return]
    types = {"ndjson": "application/x-ndjson", "lfs": "application/vnd.git-lfs+json"}
    if row.fmt in types:
        data = body if isinstance(body, str) else json.dumps(body)
        return call(url, data, content_type=types[row.fmt], **auth)  # type: ignore[no-any-return]
    if row.door == "rest":
        return call(url, body, format="json", **auth)  # type: ignore[no-any-return]
    data = json.dumps(body) if body is not None else ""
    return call(url, data, content_type="application/json", **auth)  # type: ignore[no-any-return]


#: One client per door for the whole module: a new client builds a new middleware chain,
#: and WhiteNoise's scan of the static files would then cost more than the request.
_CLIENTS: dict[str, Client] = {}


def _client(door: str) -> Client:
    if door not in _CLIENTS:
        _CLIENTS[door] = APIClient() if door == "rest" else Client()
    return _CLIENTS[door]


def send_as(world: World, actor: str, row: Row, ctx: dict[str, str]) -> HttpResponseBase:
    """The actor's own credentials for the row's door."""
    if actor == "anonymous":
        return send(row, ctx)
    if row.door == "web":
        return send(row, ctx, session_user=world.users[actor])
    return send(row, ctx, token=world.tokens[actor])


def text_of(response: HttpResponseBase) -> str:
    """Everything an answer tells: headers and body."""
    if getattr(response, "streaming", False):
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
    else:
        body = response.content  # type: ignore[attr-defined]
    headers = " ".join(f"{k}: {v}" for k, v in response.items())
    return headers + "\n" + body.decode("utf-8", "replace")


def error_code(row: Row, response: HttpResponseBase) -> str | None:
    if row.door == "hf":
        return response.get("X-Error-Code")
    try:
        body = json.loads(response.content)  # type: ignore[attr-defined]
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


HF_NAMES = {"repo_not_found": "RepoNotFound"}


def expected_code(row: Row, status: int) -> str | None:
    code = {400: row.missing, 401: "auth_required", 403: "forbidden", 404: row.missing}.get(status)
    if row.door == "hf" and code is not None:
        return HF_NAMES.get(code, code)
    return code


def ghost_of(ctx: dict[str, str]) -> dict[str, str]:
    """The context of repositories that never existed, in a namespace that never did."""
    names = {k: f"ghostns/ghost-{k}" for k in ("lora", "base", "data", "side")}
    return ctx | names | {"ns": "ghostns", "animal": "ghost", "job": str(uuid.uuid4())}


def normalized(response: HttpResponseBase, ctx: dict[str, str]) -> tuple[Any, ...]:
    body = response.content.decode()  # type: ignore[attr-defined]
    message = response.get("X-Error-Message", "")
    out = []
    for text in (body, message):
        text = text.replace(f"{ctx['ns']}/{ctx['animal']}", "REPO").replace(ctx["ns"], "NS")
        out.append(text)
    return (response.status_code, response.get("X-Error-Code"), *out)


def check(
    row: Row, target: Target, role: str, response: HttpResponseBase, world: World, actor: str
) -> None:
    want = row.expect[target.visibility][role]
    text = text_of(response)
    assert response.status_code == want, text[:600]
    can_read = target.visibility == "public" or role in ("read", "write", "admin")
    ctx = world.ctx[target.label]
    if not can_read:
        for secret in world.secrets[target.label]:
            assert secret not in text, f"{secret} leaked"
    if row.lists is not None:
        name = row.lists.format(**ctx)
        if not can_read:
            assert f"{ctx['animal']}-" not in text, f"{name} is listed"
        elif row.listed_for_readers:
            assert name in text, f"{name} is missing from the listing"
    if want >= 400 and row.door != "web":
        assert error_code(row, response) == expected_code(row, want), text[:600]
    if want == 302 and row.door == "web":
        assert response["Location"].startswith("/login"), response["Location"]
    if want >= 400 and not can_read and row.door != "web":
        # Exactly what a name that never existed gets.
        ghost = ghost_of(ctx)
        missing = send_as(world, actor, row, ghost)
        assert normalized(response, ctx) == normalized(missing, ghost)


# --- The matrix ---------------------------------------------------------------------------

CASES = [
    pytest.param(row, target, actor, id=f"{row.label}|{target.label}|{actor}")
    for row in ROWS
    for target in TARGETS
    for actor in target.actors
]


@pytest.mark.parametrize(("row", "target", "actor"), CASES)
def test_every_caller_gets_exactly_what_their_role_allows(
    world: World, row: Row, target: Target, actor: str
) -> None:
    response = send_as(world, actor, row, world.ctx[target.label])
    check(row, target, role_of(actor, target), response, world, actor)


# --- Tokens -------------------------------------------------------------------------------

#: Every REST and HF row a reader is refused: what a read-scoped token may not do either.
WRITE_ROWS = [
    row for row in ROWS if row.door != "web" and row.expect["public"]["read"] in (401, 403)
]
#: Admins of each target: a read token stops them as it stops anyone.
ADMINS = [("owner", "olivia private"), ("org admin", "acme private"), ("site admin", "acme public")]


@pytest.mark.parametrize(
    ("row", "actor", "target"),
    [
        pytest.param(row, actor, TARGET[t], id=f"{row.label}|{actor}|{t}")
        for row in WRITE_ROWS
        for actor, t in ADMINS
    ],
)
def test_a_read_token_cannot_write_even_for_an_admin(
    world: World, row: Row, actor: str, target: Target
) -> None:
    ctx = world.ctx[target.label]
    response = send(row, ctx, token=world.read_tokens[actor])
    assert response.status_code == 403, text_of(response)[:600]
    assert error_code(row, response) == "token_scope"
    # The same token still reads.
    reader_row = ROW["REST repo detail" if row.door == "rest" else "HF model info"]
    read = send(reader_row, ctx, token=world.read_tokens[actor])
    assert read.status_code == 200


DEAD_TOKEN_ROWS = [
    "REST list",
    "REST repo detail",
    "REST download",
    "REST merge request",
    "REST push",
    "REST alias set",
    "REST delete",
    "REST job list",
    "HF model info",
    "HF download",
    "HF preupload",
    "HF commit",
    "HF LFS batch",
    "HF create repo",
]


@pytest.mark.parametrize("state", ["revoked", "expired"])
@pytest.mark.parametrize("target", ["acme public", "acme private"])
@pytest.mark.parametrize("label", DEAD_TOKEN_ROWS)
def test_a_revoked_or_expired_token_fails_at_once(
    world: World, label: str, target: str, state: str
) -> None:
    """Never treated as anonymous (a public read would succeed): 401, nothing else."""
    row, t = ROW[label], TARGET[target]
    response = send(row, world.ctx[target], token=world.dead_tokens[state])
    text = text_of(response)
    assert response.status_code == 401, text[:600]
    assert error_code(row, response) == (
        "InvalidCredentials" if row.door == "hf" else "invalid_token"
    )
    for secret in world.secrets[t.label]:
        assert secret not in text


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_a_token_stops_working_the_moment_it_is_revoked_or_expires(
    world: World, state: str
) -> None:
    ctx = world.ctx["acme private"]
    rows = [ROW["REST repo detail"], ROW["HF model info"], ROW["HF download"]]
    secret = make_token(world.users["org admin"])
    token = ApiToken.objects.filter(user=world.users["org admin"]).latest("pk")
    assert [send(row, ctx, token=secret).status_code for row in rows] == [200, 200, 302]
    if state == "revoked":
        revoke_row = Row("revoke", "delete", f"/api/v1/tokens/{token.pk}", same(EVERYONE))
        revoke = send(revoke_row, {}, token=secret)
        assert revoke.status_code == 204
    else:
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    answers = [send(row, ctx, token=secret) for row in rows]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert [error_code(row, a) for row, a in zip(rows, answers, strict=True)] == [
        "invalid_token",
        "InvalidCredentials",
        "InvalidCredentials",
    ]


#: Every row, replayed by a member the moment after their removal.
@pytest.mark.parametrize("row", ROWS, ids=[row.label for row in ROWS])
def test_a_removed_member_loses_access_at_once(world: World, row: Row) -> None:
    """The writer, signed in and holding a token, is removed from acme between two
    requests; their next one is an outsider's (tokens and sessions carry no roles)."""
    actor, target = "writer", TARGET["acme private"]
    ctx = world.ctx[target.label]
    before = send_as(world, actor, ROW["REST repo detail"], ctx)
    assert before.status_code == 200
    acme = Namespace.objects.get(name="acme")
    membership_remove(actor=world.users["org admin"], org=acme, user=world.users[actor])
    response = send_as(world, actor, row, ctx)
    check(row, target, "none", response, world, actor)


LEFT_BEHIND = [
    pytest.param("REST job detail", "/api/v1/jobs/{job}"),
    pytest.param("REST job list", "/api/v1/jobs"),
    pytest.param("web job page", "/jobs/{job}"),
    pytest.param("web job list", "/jobs"),
    pytest.param("REST upload detail", "/api/v1/uploads/{upload}"),
    pytest.param("REST upload commit", "/api/v1/uploads/{upload}/commit"),
]


@pytest.mark.parametrize(("label", "url"), LEFT_BEHIND)
def test_what_a_removed_member_started_tells_them_nothing(
    world: World, label: str, url: str
) -> None:
    """A merge they asked for and an upload session they opened while a writer of a
    private repository: after their removal, both are gone for them."""
    ctx = world.ctx["acme private"]
    writer = world.tokens["writer"]
    merge = send(ROW["REST merge request"], ctx, token=writer)
    assert merge.status_code == 202
    upload = send(ROW["REST upload session"], ctx, token=writer)
    assert upload.status_code == 201
    url = url.format(job=merge.json()["job"]["id"], upload=upload.json()["id"])  # type: ignore[attr-defined]
    door = "web" if label.startswith("web") else "rest"
    method = "post" if label.endswith("commit") else "get"
    row = Row(label, method, url, same(EVERYONE), body={} if method == "post" else None)

    def get() -> HttpResponseBase:
        if door == "web":
            return send(row, {}, session_user=world.users["writer"])
        return send(row, {}, token=writer)

    if not label.endswith("commit"):
        before = get()
        assert before.status_code == 200
        assert "yak-" in text_of(before)
    acme = Namespace.objects.get(name="acme")
    membership_remove(actor=world.users["org admin"], org=acme, user=world.users["writer"])
    after = get()
    text = text_of(after)
    assert after.status_code == (200 if label.endswith("list") else 404), text[:600]
    assert "yak-" not in text, text[:600]
