"""Rate limits: per token (or signed-in user) and per client IP, answered with 429.

Rates come from settings at request time (RATE_LIMIT_USER / RATE_LIMIT_ANON), so they
can be tuned per deployment; counters live in the configured cache (Redis in
production, so all web processes share them), one per client and time window.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from hub.accounts.models import ApiToken
from hub.accounts.services import token_digest
from hub.api.auth import bearer_secret


class _SettingsRateThrottle(SimpleRateThrottle):
    """A fixed-window counter: one atomic increment per request.

    DRF's own throttle keeps every request's timestamp in one cache entry and rewrites
    it on each request; at 3,000/min that is a 3,000-float list pickled twice per
    request. A window allows up to twice the rate across its boundary, which is the
    usual price for constant cost.
    """

    setting = ""

    def __init__(self) -> None:
        super().__init__()
        self.limit, self.period = self.parse_rate(self.get_rate())

    def get_rate(self) -> str:
        rate: str = getattr(settings, self.setting)
        return rate

    def allow_request(self, request: Any, view: Any) -> bool:
        self.key = self.get_cache_key(request, view)
        if self.key is None or self.limit is None or self.period is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.period)
        key = f"{self.key}:{window}"
        try:
            count = self.cache.incr(key)  # atomic in Redis
        except ValueError:
            # The window's first request, unless another process started it just now.
            started = self.cache.add(key, 1, timeout=self.period + 1)
            count = 1 if started else self.cache.incr(key)
        self.window_ends = (window + 1) * self.period
        return count <= self.limit

    def wait(self) -> float:
        return max(0.0, self.window_ends - self.now)


class TokenRateThrottle(_SettingsRateThrottle):
    """Per API token, or per user for session requests."""

    scope = "user"
    setting = "RATE_LIMIT_USER"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        ident = (
            f"token-{request.auth.pk}"
            if isinstance(request.auth, ApiToken)
            else f"user-{request.user.pk}"
        )
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(_SettingsRateThrottle):
    """Per client IP for requests without credentials."""

    scope = "anon"
    setting = "RATE_LIMIT_ANON"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class HubRouteThrottle(_SettingsRateThrottle):
    """The same limits on the Hugging Face routes (plain Django views): per bearer token,
    keyed by the token's digest so no query runs first, else per client address."""

    def __init__(self, request: HttpRequest) -> None:
        secret = bearer_secret(request)
        if secret is None:
            self.scope, self.setting = "hf-anon", "RATE_LIMIT_ANON"
            self.ident = self.get_ident(request)  # type: ignore[arg-type]
        else:
            self.scope, self.setting = "hf-token", "RATE_LIMIT_USER"
            self.ident = token_digest(secret)[:32]
        super().__init__()  # reads the rate named by ``setting``

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}


def hub_route_retry_after(request: HttpRequest) -> int | None:
    """Seconds to wait when this request is over its limit on the HF routes, else None."""
    throttle = HubRouteThrottle(request)
    if throttle.allow_request(request, None):
        return None
    return max(1, math.ceil(throttle.wait() or 1))
