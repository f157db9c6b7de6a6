"""Benchmark the web pages on a hub with 10,000 adapters.

Creates a fresh database (``<name>_web_bench`` next to ``DATABASE_URL``'s, dropped at
the end unless ``--keepdb``), fills it with ``bulk_create`` — users and an organization, 5 base
models, 10,000 adapters (5% private, 10% stacked on another adapter, 10% with a second
version) with their versions, files, ``main`` aliases, lineage edges, validation reports
and jobs — then times pages on the server with Django's test client, which runs the
whole middleware stack and template rendering but no network. Storage is never read
(the adapters have no README.md).

Timings are medians of ``--repeats`` requests after two warm-up requests; the target is
under 100 ms each. Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/strata SECRET_KEY=x \\
        .venv/bin/python bench/web_pages.py [--adapters 10000] [--repeats 15]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from hub.accounts.models import Membership, Namespace  # noqa: E402
from hub.registry.models import (  # noqa: E402
    Alias,
    Blob,
    Job,
    LineageEdge,
    Repository,
    Version,
    VersionFile,
)
from hub.registry.names import canonical_name  # noqa: E402

TAGS = [f"tag-{i}" for i in range(30)] + ["chat", "instruction", "dialogue", "code", "math"]
TOPICS = ["chat", "code", "math", "summaries"]
LICENSES = ["apache-2.0", "mit", "llama3", "cc-by-4.0", ""]
MODULES = [f"model.layers.{i}.self_attn.{p}" for i in range(4) for p in ("q_proj", "v_proj")]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def commit(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def report(rank: int) -> dict[str, Any]:
    return {
        "status": "valid",
        "findings": [],
        "facts": {
            "layout": "peft",
            "r": rank,
            "max_rank": rank,
            "ranks": [rank],
            "lora_alpha": 2 * rank,
            "target_modules": ["q_proj", "v_proj"],
            "lora_module_count": len(MODULES),
            "fits_vllm_default_rank": rank <= 16,
            "vllm_default_max_lora_rank": 16,
        },
        "module_stats": [
            {"module": m, "rank": rank, "alpha": 2.0 * rank, "delta_norm": 0.5 + i / 10}
            for i, m in enumerate(MODULES)
        ],
    }


def populate(adapters: int, seed: int = 7) -> dict[str, str]:
    rng = random.Random(seed)
    now = timezone.now()
    password = make_password("bench-password")
    users = User.objects.bulk_create(
        [User(username=f"user{i:03d}", password=password) for i in range(50)]
    )
    namespaces = Namespace.objects.bulk_create(
        [
            Namespace(name=u.username, name_key=canonical_name(u.username), kind="user", user=u)
            for u in users
        ]
    )
    org = Namespace.objects.create(name="bench-org", name_key="bench-org", kind="org")
    Membership.objects.bulk_create(
        [Membership(namespace=org, user=u, role="write") for u in users[:10]]
    )
    owners = [*namespaces, org]

    bases = Repository.objects.bulk_create(
        [
            Repository(
                namespace=org,
                name=f"base-{i}",
                name_key=f"base-{i}",
                kind="base_model",
                description=f"Base model {i}",
                license="apache-2.0",
                tags=["causal-lm"],
                downloads=rng.randint(0, 100_000),
            )
            for i in range(5)
        ]
    )
    base_versions = Version.objects.bulk_create(
        [
            Version(
                repository=b,
                number=1,
                commit_id=commit(f"base{b.pk}"),
                status="valid",
                report={"status": "valid", "findings": [], "facts": {"parameters": 7_000_000_000}},
                manifest={
                    f"layer.{j}.weight": {"dtype": "BF16", "shape": [4096, 4096]} for j in range(64)
                },
                total_size=14_000_000_000,
            )
            for b in bases
        ]
    )
    Alias.objects.bulk_create(
        [
            Alias(repository=b, name="main", version=v)
            for b, v in zip(bases, base_versions, strict=True)
        ]
    )

    repos = Repository.objects.bulk_create(
        [
            Repository(
                namespace=owners[i % len(owners)],
                name=f"adapter-{i:05d}",
                name_key=f"adapter-{i:05d}",
                kind="adapter",
                visibility="private" if i % 20 == 0 else "public",
                description=f"LoRA adapter number {i} for {rng.choice(TOPICS)}.",
                license=rng.choice(LICENSES),
                tags=sorted(rng.sample(TAGS, 2)),
                base_repository=bases[i % len(bases)],
                downloads=rng.randint(0, 50_000),
                created_by=users[i % len(users)],
                updated_at=now - timedelta(minutes=i),
            )
            for i in range(adapters)
        ],
        batch_size=2000,
    )
    versions: list[Version] = []
    for i, repo in enumerate(repos):
        count = 2 if i % 10 == 0 else 1
        for n in range(1, count + 1):
            versions.append(
                Version(
                    repository=repo,
                    number=n,
                    commit_id=commit(f"{repo.pk}:{n}"),
                    status="valid",
                    message=f"version {n}",
                    report=report(rng.choice([4, 8, 16, 32, 64])),
                    total_size=rng.randint(10_000, 200_000_000),
                    created_by=users[i % len(users)],
                )
            )
    versions = Version.objects.bulk_create(versions, batch_size=2000)
    blobs = Blob.objects.bulk_create(
        [
            Blob(sha256=sha(f"{v.pk}:{p}"), size=1000, storage_key=f"blobs/{v.pk}/{p}")
            for v in versions
            for p in ("c", "w")
        ],
        batch_size=4000,
    )
    VersionFile.objects.bulk_create(
        [
            VersionFile(version=v, path=path, blob=blobs[2 * k + j])
            for k, v in enumerate(versions)
            for j, path in enumerate(("adapter_config.json", "adapter_model.safetensors"))
        ],
        batch_size=4000,
    )
    newest: dict[int, Version] = {}
    for v in versions:
        newest[v.repository_id] = v
    Alias.objects.bulk_create(
        [Alias(repository_id=rid, name="main", version=v) for rid, v in newest.items()],
        batch_size=4000,
    )
    edges = []
    for k, v in enumerate(versions):
        edges.append(LineageEdge(child=v, parent=base_versions[k % len(bases)], kind="adapter_of"))
        if k % 10 == 5 and k > 20:
            edges.append(LineageEdge(child=v, parent=versions[k - 11], kind="stacked_on"))
        if v.number == 2:
            edges.append(LineageEdge(child=v, parent=versions[k - 1], kind="finetuned_from"))
    LineageEdge.objects.bulk_create(edges, batch_size=4000)
    Job.objects.bulk_create(
        [
            Job(
                kind="validate",
                state="succeeded",
                version=v,
                requested_by=v.created_by,
                dedupe_key=f"validate:{v.pk}",
                started_at=now,
                finished_at=now,
                result={"status": "valid"},
            )
            for v in versions
        ],
        batch_size=4000,
    )
    # Repositories with lineage, for the repository page: a stacked one and a base.
    stacked = next(v for k, v in enumerate(versions) if k % 10 == 5 and k > 20)
    target = Repository.objects.select_related("namespace").get(pk=stacked.repository_id)
    with connection.cursor() as cursor:
        if settings.USES_POSTGRES:
            cursor.execute("ANALYZE")
    return {
        "repo": f"/{target.namespace.name}/{target.name}",
        "base": f"/bench-org/{bases[0].name}",
        "user": users[0].username,
    }


def existing_paths() -> dict[str, str]:
    stacked = LineageEdge.objects.filter(kind="stacked_on").order_by("pk").first()
    assert stacked is not None
    target = Repository.objects.select_related("namespace").get(pk=stacked.child.repository_id)
    return {
        "repo": f"/{target.namespace.name}/{target.name}",
        "base": "/bench-org/base-0",
        "user": "user000",
    }


def time_page(client: Client, url: str, repeats: int) -> tuple[float, int]:
    for _ in range(2):
        assert client.get(url).status_code == 200, url
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, url
    with CaptureQueriesContext(connection) as ctx:
        client.get(url)
    return statistics.median(samples), len(ctx.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapters", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--keepdb", action="store_true", help="keep (and reuse) the database between runs"
    )
    args = parser.parse_args()

    setup_test_environment()
    # Its own database, never the test suite's (test_<name>), which pytest may be using.
    test = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test["NAME"] = str(Path(settings.DATA_DIR) / "web-bench.sqlite3")
    else:
        test["NAME"] = f"{connection.settings_dict['NAME']}_web_bench"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keepdb)
    try:
        start = time.perf_counter()
        if args.keepdb and Repository.objects.filter(kind="adapter").exists():
            paths = existing_paths()
        else:
            paths = populate(args.adapters)
        built = time.perf_counter() - start
        anonymous = Client()
        signed_in = Client()
        signed_in.force_login(User.objects.get(username=paths["user"]))
        pages = [
            ("home", "/", anonymous),
            ("home (signed in)", "/", signed_in),
            ("search", "/search", anonymous),
            ("search ?q=", "/search?q=adapter-00042", anonymous),
            ("search facets", "/search?kind=adapter&tag=chat&license=mit&sort=recent", anonymous),
            ("search rank", "/search?rank_min=16&rank_max=32", anonymous),
            ("search (signed in)", "/search?kind=adapter", signed_in),
            ("repository", paths["repo"], anonymous),
            ("repository (signed in)", paths["repo"], signed_in),
            ("lineage", paths["repo"] + "/v/v1/lineage", anonymous),
            ("base model (2,000 adapters)", paths["base"], anonymous),
            ("organization", "/bench-org", anonymous),
            ("jobs (signed in)", "/jobs", signed_in),
        ]
        results = {}
        print(
            f"{args.adapters} adapters ({Repository.objects.count()} repositories) "
            f"built in {built:.1f} s on {connection.vendor}; median of {args.repeats}:"
        )
        print(f"{'page':32} {'median ms':>10} {'queries':>8}")
        for label, url, client in pages:
            median, queries = time_page(client, url, args.repeats)
            results[label] = {"url": url, "median_ms": round(median, 1), "queries": queries}
            print(f"{label:32} {median:10.1f} {queries:8d}")
        print(json.dumps({"adapters": args.adapters, "db": connection.vendor, "pages": results}))
    finally:
        if not args.keepdb:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
