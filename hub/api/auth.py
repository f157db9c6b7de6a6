"""Bearer-token authentication, shared by the REST API and the Hugging Face routes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from hub.accounts.models import ApiToken
from hub.accounts.services import token_authenticate


def bearer_secret(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer strata_…``. A bad token is refused, never ignored."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        secret = bearer_secret(request._request)
        if secret is None:
            return None
        token = token_authenticate(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="strata"'


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
