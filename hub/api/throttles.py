"""Rate limits: per token (or signed-in user) and per client IP, answered with 429.

Rates come from settings at request time (RATE_LIMIT_USER / RATE_LIMIT_ANON), so they
can be tuned per deployment; counters live in the configured cache (Redis in
production, so all web processes share them).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from hub.accounts.models import ApiToken


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
