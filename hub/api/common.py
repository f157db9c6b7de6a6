"""Small helpers for REST views: the actor of a request, JSON form fields."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.request import Request

from hub.accounts.models import ApiToken
from hub.registry.access import Actor
from hub.registry.errors import BadRequest


def actor_of(request: Request) -> Actor:
    token = request.auth if isinstance(request.auth, ApiToken) else None
    return Actor.of(request.user, token)


def json_field(raw: str | None, *, what: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("invalid_metadata", f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest("invalid_metadata", f"{what} must be a JSON object.")
    return value
