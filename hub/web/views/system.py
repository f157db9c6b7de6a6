"""Plumbing routes: health check, and the local backend's presigned PUT receiver."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from hub.registry.storage import LocalBlobStore, get_blob_store


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_http_methods(["PUT"])
def signed_blob_put(request: HttpRequest, key: str) -> HttpResponse:
    """Receive a presigned PUT on the local backend (S3 receives them itself)."""
    store = get_blob_store()
    if not isinstance(store, LocalBlobStore):
        return HttpResponse(status=404)
    try:
        expires_at = int(request.GET.get("exp", "0"))
    except ValueError:
        return HttpResponse(status=403)
    size = request.GET.get("size", "")
    if not store.verify_signature("PUT", key, expires_at, request.GET.get("sig", ""), size):
        return HttpResponse("signature invalid or expired", status=403)
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return HttpResponse("bad Content-Length", status=400)
    # Multipart part URLs are not size-bound (parts vary); the commit checks the total.
    if size and int(size) != length:
        return HttpResponse("Content-Length does not match the signed size", status=400)
    store.write_stream(key, iter(lambda: request.read(1024 * 1024), b""))
    response = HttpResponse(status=200)
    if key.startswith("multipart/"):
        response["ETag"] = store.part_etag(key)
    return response
