"""Refuse request paths and query strings that no name, revision or search can contain.

PostgreSQL text cannot hold NUL, so ``?q=%00`` or ``/hf/.../resolve/v1/a%00b`` used to
reach a query, fail there, and be answered as an outage (503 "retry shortly", or a 500
page on the web). They are the caller's mistake: a 400 with the stable code
``invalid_characters``, in the error format of the door they knocked on.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase, JsonResponse

CODE = "invalid_characters"
MESSAGE = "The request path or query string contains a NUL character."


def has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path:
        return True
    return any(
        "\x00" in key or any("\x00" in value for value in values)
        for key, values in request.GET.lists()
    )


def refusal(request: HttpRequest) -> HttpResponseBase:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": CODE, "message": MESSAGE}}, status=400)
    if request.path.startswith("/hf/"):
        from hub.hfcompat.errors import error_response

        return error_response(400, CODE, MESSAGE)
    from hub.web.views.common import error_page

    return error_page(request, 400, "Bad request", MESSAGE)


class InputGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if has_nul(request):
            return refusal(request)
        return self.get_response(request)
