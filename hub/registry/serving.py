"""Serving a blob over HTTP: a redirect to a presigned URL, or a ranged stream.

Shared by the REST API and the Hugging Face routes. With S3 the bytes never pass
through Django; the local backend streams them with ``Range`` support (206 answers),
which Django's ``FileResponse`` lacks.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse

from hub.registry.models import Blob
from hub.registry.storage import _content_disposition, get_blob_store

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` for a single-range header; None means the whole file.

    Raises ValueError for an unsatisfiable range.
    """
    match = _RANGE_RE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= size or start >= end:
        raise ValueError("unsatisfiable range")
    return start, end


def blob_response(
    request: HttpRequest, blob: Blob, *, filename: str, headers: dict[str, str] | None = None
) -> HttpResponse | StreamingHttpResponse:
    """Answer a GET/HEAD for a blob. ``headers`` go on every answer, redirects included."""
    headers = {
        "ETag": f'"{blob.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": _content_disposition(filename),
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    store = get_blob_store()
    url = store.presign_get(
        blob.storage_key, filename=filename, expires=settings.PRESIGN_TTL_SECONDS
    )
    response: HttpResponse | StreamingHttpResponse
    if url is not None:
        response = HttpResponseRedirect(url)
    elif request.method == "HEAD":
        response = HttpResponse(status=200)
        response["Content-Length"] = str(blob.size)
    else:
        try:
            span = parse_range(request.headers.get("Range", ""), blob.size)
        except ValueError:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{blob.size}"
            return response
        start, end = span or (0, blob.size)
        response = StreamingHttpResponse(
            store.iter_chunks(blob.storage_key, start, end),
            status=206 if span else 200,
            content_type="application/octet-stream",
        )
        response["Content-Length"] = str(end - start)
        if span:
            response["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    for name, value in headers.items():
        response[name] = value
    return response
