"""Domain errors with stable codes. Transport layers map them to HTTP answers."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An error the caller can act on. ``code`` is stable; ``message`` is for people."""

    status = 400

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


class BadRequest(DomainError):
    status = 400


class NotAuthenticated(DomainError):
    status = 401


class PermissionDenied(DomainError):
    status = 403


class NotFound(DomainError):
    """Also what a private repository looks like to someone who may not see it."""

    status = 404


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class ServiceUnavailable(DomainError):
    """Our infrastructure failed (storage, broker). The client should retry."""

    status = 503
