"""The last-resort error page, for failures no view turned into an answer of its own."""

from __future__ import annotations

import sys

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse

from hub.registry.storage import StorageUnavailable

# No template: the page must render with the database and the session unreachable.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · Strata</title></head>
<body style="font-family: system-ui, sans-serif; margin: 4rem auto; max-width: 36rem">
<h1>{title}</h1><p>{message}</p></body></html>
"""


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500. A database or storage outage is ours and temporary: answer
    503 with Retry-After (as the APIs do), so clients and load balancers retry."""
    exc = sys.exc_info()[1]
    if isinstance(exc, DatabaseError | StorageUnavailable):
        page = _PAGE.format(
            title="Temporarily unavailable",
            message="Storage or the database is unavailable right now. Retry shortly.",
        )
        response = HttpResponse(page, status=503)
        response["Retry-After"] = "5"
        return response
    page = _PAGE.format(
        title="Server error",
        message="Something went wrong on our side. It has been logged.",
    )
    return HttpResponse(page, status=500)
