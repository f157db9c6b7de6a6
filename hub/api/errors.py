"""One JSON error shape for the REST API: ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, DataError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from hub.registry.errors import DomainError
from hub.registry.storage import StorageUnavailable

_DRF_CODES = {
    exceptions.NotAuthenticated: "auth_required",
    exceptions.AuthenticationFailed: "invalid_token",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "malformed_request",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_request",
}


def error_response(code: str, message: str, http_status: int, **detail: Any) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail:
        body["detail"] = detail
    return Response({"error": body}, status=http_status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        response = error_response(exc.code, exc.message, exc.status, **exc.detail)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="strata"'
        return response
    if isinstance(exc, RecursionError):
        # json.loads raises RecursionError, not the ValueError DRF's JSONParser turns
        # into a 400, for bodies nested a few thousand levels deep (it used to be a 500).
        return error_response(
            "malformed_request", "The request body nests too deeply.", status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, DataError):
        # The database refused a value the request carried (a NUL character, a string
        # longer than its column): the caller's to fix, not an outage to retry.
        return error_response(
            "invalid_value",
            "The request holds a value that cannot be stored (a NUL character or an "
            "over-long string).",
            status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, StorageUnavailable | DatabaseError):
        # Ours, not the caller's: say so and invite a retry.
        response = error_response(
            "service_unavailable",
            "Storage or the database is unavailable right now; nothing was saved. Retry shortly.",
            status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        response["Retry-After"] = "5"
        return response
    drf_response = drf_exception_handler(exc, context)
    if drf_response is None:
        return None
    response = drf_response
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        return error_response(
            code, "The request is not valid.", response.status_code, fields=response.data
        )
    message = str(getattr(exc, "detail", exc))
    new = error_response(code, message, response.status_code)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            new[header] = response[header]
    return new


@csrf_exempt
def not_found(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    """Any path under the API that no route matches (``/jobs/not-a-uuid``, a revision
    with characters no label has): the API's 404, not the web's HTML page."""
    return JsonResponse(
        {"error": {"code": "not_found", "message": f"{request.path} is not part of the API."}},
        status=404,
    )
