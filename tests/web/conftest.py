"""Fixtures for the web tests: realistic hub content and signed-in clients."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from tests.web.hubdata import HubData, build


@pytest.fixture(scope="session", autouse=True)
def _static_root() -> None:
    # WhiteNoise warns about a missing STATIC_ROOT on every request; the tests use finders.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Rendered model cards are cached by sha256; tests reuse the same bytes.
    cache.clear()


@pytest.fixture
def hub(db: Any) -> HubData:
    return build()


@pytest.fixture
def client_for() -> Callable[[User | None], Client]:
    def make(user: User | None) -> Client:
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make
