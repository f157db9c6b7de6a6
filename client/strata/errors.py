"""Errors raised by the client. Each maps to a CLI exit code scripts can branch on."""

from __future__ import annotations

from typing import Any

#: Exit codes of the ``strata`` command.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_VALIDATION = 5
EXIT_NETWORK = 6
EXIT_INTERRUPTED = 130


class StrataError(Exception):
    """Base class. ``code`` is the hub's stable error code when the hub answered."""

    exit_code = EXIT_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.detail = detail or {}

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code or type(self).__name__, "message": self.message}
        if self.status is not None:
            data["status"] = self.status
        if self.detail:
            data["detail"] = self.detail
        return data


class UsageError(StrataError):
    """A bad argument: a malformed reference, conflicting options."""

    exit_code = EXIT_USAGE


class AuthError(StrataError):
    """No token, a bad token, or not allowed (HTTP 401/403)."""

    exit_code = EXIT_AUTH


class NotFoundError(StrataError):
    """No such repository, revision, file or job (HTTP 404), or not in the offline cache."""

    exit_code = EXIT_NOT_FOUND


class ValidationFailed(StrataError):
    """The hub refused the content: HTTP 400/413/422, a failed upload check, an invalid version."""

    exit_code = EXIT_VALIDATION


class NetworkError(StrataError):
    """The hub or storage could not be reached, or kept failing (5xx) after retries."""

    exit_code = EXIT_NETWORK


class IntegrityError(StrataError):
    """Downloaded bytes did not match their sha256, even after a fresh download."""


class JobFailed(StrataError):
    """A hub job (merge, compose, benchmark, upload finalization) ended in failure."""

    def __init__(self, message: str, *, job: dict[str, Any], code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.job = job


class HubError(StrataError):
    """Any other error answer from the hub (e.g. 409 conflicts)."""


def error_for_status(
    status: int, code: str | None, message: str, detail: Any = None
) -> StrataError:
    """The exception for an HTTP error answer of the hub."""
    extra = detail if isinstance(detail, dict) else None
    cls: type[StrataError]
    if status in (401, 403):
        cls = AuthError
    elif status in (404, 410):
        cls = NotFoundError
    elif status in (400, 413, 422):
        cls = ValidationFailed
    elif status >= 500:
        cls = NetworkError
    else:
        cls = HubError
    return cls(message, code=code, status=status, detail=extra)
