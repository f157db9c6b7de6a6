"""Errors on the Hub routes: every failure carries ``X-Error-Code`` and ``X-Error-Message``.

``huggingface_hub`` picks its exception class from the ``X-Error-Code`` header, not from
the status or the body (see docs/HF_COMPAT.md §8), so domain error codes are translated
to the Hub's names where one exists and passed through otherwise. :func:`hub_view` wraps
every view: CSRF exemption (token auth only), method check, error mapping, and draining
the request body so a keep-alive connection never sees leftovers of an unread body.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from hub.api.throttles import hub_route_retry_after
from hub.registry.errors import DomainError
from hub.registry.storage import StorageUnavailable

log = logging.getLogger(__name__)

#: Strata error codes that have a Hub counterpart the client understands.
HUB_CODES = {
    "repo_not_found": "RepoNotFound",
    "revision_not_found": "RevisionNotFound",
    "entry_not_found": "EntryNotFound",
}
#: The exact message the client uses to tell a bad token from a missing repository.
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

View = Callable[..., HttpResponseBase]


class HubError(Exception):
    """An error answer with a Hub error code and optional extra headers."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _header_safe(text: str) -> str:
    # Header values must be one line of latin-1; file paths may hold anything.
    one_line = " ".join(text.split())
    return one_line.encode("ascii", "replace").decode("ascii")[:1000]


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> HttpResponse:
    """A JSON error ``{"error": message, ...body}`` with the Hub's error headers."""
    response = JsonResponse({"error": message, "code": code, **(body or {})}, status=status)
    response["X-Error-Code"] = code
    response["X-Error-Message"] = _header_safe(message)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def domain_error_response(exc: DomainError) -> HttpResponse:
    code = HUB_CODES.get(exc.code, exc.code)
    headers = {"WWW-Authenticate": 'Bearer realm="strata"'} if exc.status == 401 else None
    return error_response(exc.status, code, exc.message, headers=headers)


def drain(request: HttpRequest) -> None:
    """Read and drop whatever the view left of the request body."""
    try:
        while request.read(1024 * 1024):
            pass
    except Exception:
        log.debug("could not drain the request body", exc_info=True)


def hub_view(*methods: str) -> Callable[[View], View]:
    """Turn a function into a Hub route answering ``methods`` (HEAD implies nothing)."""
    allowed = {m.upper() for m in methods}

    def decorate(fn: View) -> View:
        @functools.wraps(fn)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            try:
                if request.method not in allowed:
                    return error_response(
                        405,
                        "MethodNotAllowed",
                        f"{request.method} is not allowed here.",
                        headers={"Allow": ", ".join(sorted(allowed))},
                    )
                wait = hub_route_retry_after(request)
                if wait is not None:
                    return error_response(
                        429,
                        "RateLimited",
                        f"Too many requests; retry in {wait} s.",
                        headers={"Retry-After": str(wait)},
                    )
                return fn(request, *args, **kwargs)
            except HubError as exc:
                return error_response(exc.status, exc.code, exc.message, headers=exc.headers)
            except DomainError as exc:
                return domain_error_response(exc)
            except DataError:
                # A value the request carried that the database refuses (a NUL
                # character, an over-long string): the caller's, not an outage.
                return error_response(
                    400,
                    "invalid_value",
                    "The request holds a value that cannot be stored (a NUL character or "
                    "an over-long string).",
                )
            except (StorageUnavailable, DatabaseError):
                log.exception("Hub route %s failed on storage or the database", request.path)
                return error_response(
                    503,
                    "ServiceUnavailable",
                    "Storage or the database is unavailable right now; nothing was saved. "
                    "Retry shortly.",
                    headers={"Retry-After": "5"},
                )
            finally:
                drain(request)

        # Token-authenticated API: no cookies are read, so CSRF does not apply.
        return csrf_exempt(view)

    return decorate


ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@hub_view(*ALL_METHODS)
def xet_unsupported(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Clients 1.x and later upload "lfs" files with xet unless told not to."""
    return error_response(
        501,
        "XetNotSupported",
        "Strata does not speak the xet protocol. Set HF_HUB_DISABLE_XET=1 so large files "
        "are uploaded through Git LFS.",
    )


@hub_view(*ALL_METHODS)
def not_found(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Anything else under the Hub prefix: a 404 the client can classify."""
    return error_response(404, "NotFound", f"{request.path} is not part of Strata's Hub API.")
