"""Template helpers: URLs for versions, sizes, counts, status badges."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from hub.registry.models import Repository, Version
from hub.web.reports import human_bytes, human_count

register = template.Library()

_STATUS_LABELS = {
    "valid": "valid",
    "invalid": "invalid",
    "pending": "pending",
    "empty": "no versions",
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "private": "private",
}


@register.simple_tag
def badge(status: str, text: str = "") -> SafeString:
    """A status pill; colour is never the only signal (the word is always there)."""
    status = str(status or "empty")
    return format_html(
        '<span class="badge badge-{}">{}</span>', status, text or _STATUS_LABELS.get(status, status)
    )


@register.filter(name="bytes")
def bytes_(value: Any) -> str:
    return "—" if value in (None, "") else human_bytes(value)


@register.filter
def count(value: Any) -> str:
    return human_count(value)


@register.filter
def short_sha(value: Any, length: int = 12) -> str:
    return str(value or "")[:length]


@register.simple_tag
def version_url(version: Version, suffix: str = "") -> str:
    repo = version.repository
    name = "web:lineage" if suffix == "lineage" else "web:version"
    return reverse(name, args=[repo.namespace.name, repo.name, version.label])


@register.simple_tag
def repo_url(repo: Repository) -> str:
    return reverse("web:repo", args=[repo.namespace.name, repo.name])


@register.simple_tag
def file_url(version: Version, path: str) -> str:
    """The REST download URL of a file (a redirect to storage, or a ranged stream)."""
    repo = version.repository
    return f"/api/v1/repos/{repo.namespace.name}/{repo.name}/versions/{version.label}/files/{path}"


@register.filter
def kind_label(kind: str) -> str:
    try:
        return str(Repository.Kind(kind).label)
    except ValueError:
        return kind


@register.filter
def get(mapping: Any, key: Any) -> Any:
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def seconds(value: Any) -> str:
    """A duration: 850 ms, 12.3 s, 4 min 05 s, 2 h 10 min."""
    if value is None:
        return "—"
    s = float(value)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


@register.filter
def norm(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:.4g}"


@register.filter
def signed(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:+.3g}"
