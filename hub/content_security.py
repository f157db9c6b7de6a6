"""Content-Security-Policy for HTML pages: a second line of defence behind sanitizing.

Model cards and metadata are user content; nh3 strips scripts from them, and this policy
makes sure that, should anything slip through, the browser still runs only the hub's own
scripts. Styles may be inline (bar widths, the lineage SVG); images may come from any
https host (badges in model cards). Browser uploads PUT straight to object storage, so
its public origin is allowed for ``connect-src``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def _storage_origin() -> str:
    endpoint = settings.S3_PUBLIC_ENDPOINT_URL or settings.S3_ENDPOINT_URL
    if settings.STORAGE_BACKEND != "s3":
        return ""  # the local backend receives uploads on the hub itself
    if not endpoint:
        return "https://*.amazonaws.com"
    parts = urlsplit(endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    if settings.S3_ADDRESSING_STYLE != "path":
        # Virtual-hosted URLs put the bucket in the host name: bucket.host.
        return f"{origin} {parts.scheme}://*.{parts.netloc}"
    return origin


def content_security_policy() -> str:
    connect = " ".join(filter(None, ["'self'", _storage_origin()]))
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' https: data:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", self.policy)
        return response
