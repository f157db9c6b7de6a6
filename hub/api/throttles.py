"""Rate limits: per token (or signed-in user) and per client IP, answered with 429.

Rates come from settings at request time (RATE_LIMIT_USER / RATE_LIMIT_ANON), so they
can be tuned per deployment; counters live in the configured cache (Redis in
production, so all web processes share them).
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
    setting = ""

    def get_rate(self) -> str:
        rate: str = getattr(settings, self.setting)
        return rate


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
    if throttle.allow_request(request, None):  # type: ignore[arg-type]
        return None
    return max(1, math.ceil(throttle.wait() or 1))
