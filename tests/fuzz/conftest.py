"""Fixtures for the hostile-input tests: an owner with a write token, a base model and an
adapter with one version each, and helpers to push through the real REST door."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import signals
from django.core.cache import cache
from django.db import close_old_connections

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import LineageSpec, Ref
from hub.registry.models import Repository, Version
from tests.factories import adapter_files, base_model_files, make_token, make_user
from tests.web.hubdata import push


@dataclass
class Owned:
    """``owner`` owns namespace ``owner`` holding ``owner/base`` and ``owner/lora``."""

    user: User
    token: str
    read_token: str
    base: Repository
    base_v1: Version
    adapter: Repository
    adapter_v1: Version


def build_owned() -> Owned:
    user = make_user("owner")
    actor = Actor.of(user)
    base = services.repository_create(
        actor=actor, namespace="owner", name="base", kind=Repository.Kind.BASE_MODEL
    )
    base_v1 = push(actor, base, base_model_files())
    services.version_set_status(version=base_v1, status=Version.Status.VALID)
    adapter = services.repository_create(
        actor=actor, namespace="owner", name="lora", kind=Repository.Kind.ADAPTER
    )
    adapter_v1 = push(
        actor, adapter, adapter_files(), spec=LineageSpec(base=Ref("owner/base", "v1"))
    )
    services.version_set_status(version=adapter_v1, status=Version.Status.VALID)
    return Owned(
        user=user,
        token=make_token(user, "write"),
        read_token=make_token(user, "read"),
        base=base,
        base_v1=base_v1,
        adapter=adapter,
        adapter_v1=adapter_v1,
    )


@pytest.fixture
def owned(db: Any) -> Owned:
    return build_owned()


@pytest.fixture(autouse=True)
def _keep_test_connection() -> Iterator[None]:
    """Requests sent straight to the WSGI app (Schemathesis' in-process transport) fire
    request_started/finished, whose ``close_old_connections`` would close the test's
    transaction; Django's own test client disconnects it the same way."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Rendered model cards are cached by sha256, throttles count in the cache.
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
