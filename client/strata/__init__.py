"""Strata client: pull LoRA adapters in scripts, push them from training jobs.

    import strata

    path = strata.snapshot("acme/sql-lora@v3")          # a local folder, verified
    model = strata.load_peft(base, "acme/sql-lora@v3")   # the whole stack applied
    strata.push("out/", "acme/sql-lora", base="acme/llama-3-8b", wait=True)

Module functions use a :class:`Client` configured from the environment
(``STRATA_ENDPOINT``, ``STRATA_TOKEN``, ``STRATA_CACHE_DIR``, ``STRATA_OFFLINE``) and the
config file written by ``strata login``. Make a ``Client`` to use other settings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strata._version import __version__
from strata.client import Client, PullResult, PushResult, StackEntry
from strata.errors import (
    AuthError,
    HubError,
    IntegrityError,
    JobFailed,
    NetworkError,
    NotFoundError,
    StrataError,
    UsageError,
    ValidationFailed,
)
from strata.refs import Ref

__all__ = [
    "AuthError",
    "Client",
    "HubError",
    "IntegrityError",
    "JobFailed",
    "NetworkError",
    "NotFoundError",
    "PullResult",
    "PushResult",
    "Ref",
    "StackEntry",
    "StrataError",
    "UsageError",
    "ValidationFailed",
    "__version__",
    "benchmark",
    "compose",
    "files",
    "info",
    "jobs",
    "lineage",
    "list_repos",
    "load_peft",
    "login",
    "logout",
    "merge",
    "pull",
    "push",
    "search",
    "snapshot",
    "versions",
    "whoami",
]


def login(token: str, *, endpoint: str | None = None) -> dict[str, Any]:
    """Verify ``token`` and store it for ``endpoint`` in the user config file."""
    return Client(endpoint).login(token)


def logout(*, endpoint: str | None = None) -> bool:
    return Client(endpoint).logout()


def whoami() -> dict[str, Any]:
    return Client().whoami()


def info(repo: str) -> dict[str, Any]:
    return Client().repo_info(repo)


def list_repos(**filters: Any) -> list[dict[str, Any]]:
    """Filters: kind, base, owner, tag, license, status, q, sort, limit."""
    return Client().list_repos(**filters)


def search(q: str, **filters: Any) -> list[dict[str, Any]]:
    return Client().search(q, **filters)


def versions(repo: str) -> list[dict[str, Any]]:
    return Client().versions(repo)


def files(ref: str) -> list[dict[str, Any]]:
    return Client().files(ref)


def lineage(ref: str, *, depth: int = 8) -> dict[str, Any]:
    return Client().lineage(ref, depth=depth)


def jobs() -> list[dict[str, Any]]:
    return Client().jobs()


def push(folder: str | os.PathLike[str], repo: str, **options: Any) -> PushResult:
    """Publish ``folder`` as a new version of ``repo``; see :meth:`Client.push`."""
    return Client().push(folder, repo, **options)


def pull(ref: str, **options: Any) -> PullResult:
    """Download ``ref`` (``ns/name[@rev]``) into the cache; see :meth:`Client.pull`."""
    return Client().pull(ref, **options)


def snapshot(ref: str, *, merged: bool = False) -> Path:
    """A local folder with the files of ``ref``, downloaded and verified if needed."""
    return Client().snapshot(ref, merged=merged)


def merge(ref: str, **options: Any) -> dict[str, Any]:
    return Client().merge(ref, **options)


def benchmark(ref: str, **options: Any) -> dict[str, Any]:
    return Client().benchmark(ref, **options)


def compose(inputs: Sequence[tuple[str, float]], target: str, **options: Any) -> dict[str, Any]:
    return Client().compose(inputs, target, **options)


def load_peft(base_model: Any, ref: str, **options: Any) -> Any:
    """``base_model`` with the adapter stack of ``ref`` applied; see :mod:`strata.peft`."""
    from strata.peft import load_peft as _load_peft

    return _load_peft(base_model, ref, **options)
