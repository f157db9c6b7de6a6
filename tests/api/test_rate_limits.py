"""Per-token and per-IP rate limits answer 429 with Retry-After."""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache

from tests.factories import make_token, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["locmem", "redis"])
def _fresh_counters(request, settings):
    """Each test runs on the in-process cache and on Redis (production's shared one)."""
    if request.param == "redis":
        broker = os.environ.get("CELERY_BROKER_URL", "")
        if not broker.startswith("redis://"):
            pytest.skip("needs Redis")
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": broker.rsplit("/", 1)[0] + "/13",
            }
        }
    cache.clear()
    yield
    cache.clear()


def test_anonymous_callers_are_limited_per_address(api, settings):
    settings.RATE_LIMIT_ANON = "3/min"
    answers = [api().get("/api/v1/repos") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limited"
    assert int(answers[-1]["Retry-After"]) > 0


def test_each_token_has_its_own_budget(api, settings):
    settings.RATE_LIMIT_USER = "2/min"
    alice = make_user("alice")
    first, second = make_token(alice, "read"), make_token(alice, "read")
    assert [api(first).get("/api/v1/whoami").status_code for _ in range(3)] == [200, 200, 429]
    # Another token of the same user is counted apart, and anonymous callers too.
    assert api(second).get("/api/v1/whoami").status_code == 200
    assert api().get("/api/v1/repos").status_code == 200


def test_the_hugging_face_routes_have_the_same_limits(api, settings):
    settings.RATE_LIMIT_ANON = "2/min"
    settings.RATE_LIMIT_USER = "2/min"
    url = "/hf/api/models/nobody/nothing"
    anonymous = [api().get(url) for _ in range(3)]
    assert [a.status_code for a in anonymous] == [404, 404, 429]
    assert anonymous[-1]["X-Error-Code"] == "RateLimited"
    assert int(anonymous[-1]["Retry-After"]) > 0
    # A token has a budget of its own, whatever its address has used.
    token = make_token(make_user("alice"), "read")
    assert [api(token).get(url).status_code for _ in range(3)] == [404, 404, 429]
