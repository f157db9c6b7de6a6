"""Model cards and small JSON files read from storage, rendered for pages.

Blobs are immutable and keyed by sha256, so what is rendered from one is cached under
that hash forever. Reads are bounded: a page never pulls more than a few hundred KB.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import markdown
import nh3
from django.core.cache import cache
from django.utils.safestring import SafeString, mark_safe

from hub.registry.models import Blob
from hub.registry.storage import StorageError, get_blob_store

log = logging.getLogger(__name__)

#: The most of a README.md a page renders.
CARD_LIMIT_BYTES = 256 * 1024
#: The most of a JSON config (adapter_config.json, config.json) a page parses.
JSON_LIMIT_BYTES = 64 * 1024
_RENDER_VERSION = 3

_TAGS = set(nh3.ALLOWED_TAGS) - {"area", "map", "center", "acronym", "tt", "strike"}
_ATTRIBUTES: dict[str, set[str]] = {
    **{k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "code": {"class"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "td": {"align", "colspan", "rowspan"},
}
_URL_SCHEMES = {"http", "https", "mailto"}
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n(?:---|\.\.\.)\s*(?:\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"<(/?)h([1-6])>")


def sanitize(html: str) -> str:
    """Allow formatting only: no script, no event handlers, no javascript: URLs."""
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow ugc",
        # Code blocks and tables scroll sideways on narrow screens: keyboards must reach them.
        set_tag_attribute_values={"pre": {"tabindex": "0"}, "table": {"tabindex": "0"}},
    )


def render_markdown(text: str) -> SafeString:
    """Markdown (with a Hugging Face style YAML header stripped) as sanitized HTML.

    Headings move one level down so a card's ``#`` title sits under the page's ``<h1>``.
    """
    text = _FRONT_MATTER.sub("", text, count=1)
    html = markdown.markdown(
        text,
        extensions=["fenced_code", "tables", "sane_lists"],
        output_format="html",
    )
    cleaned = sanitize(html)
    shifted = _HEADING.sub(lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + 1)}>", cleaned)
    return mark_safe(shifted)  # noqa: S308 - sanitized by nh3 just above


def front_matter(text: str) -> dict[str, Any]:
    """The YAML header of a model card (license, tags, ...), or {} when absent or broken."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    import yaml

    try:
        data = yaml.safe_load(match.group(0).strip().strip("-").strip("."))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def read_head(blob: Blob, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes from the start of a blob, and whether it was cut short."""
    length = min(blob.size, limit)
    if length <= 0:
        return b"", False
    data = get_blob_store().read_range(blob.storage_key, 0, length)
    return data, blob.size > limit


@dataclass(frozen=True)
class RenderedCard:
    html: SafeString
    truncated: bool
    error: str = ""


def model_card(blob: Blob) -> RenderedCard:
    """The README.md of a version, rendered (cached by its sha256)."""
    key = f"web:card:{_RENDER_VERSION}:{blob.sha256}"
    cached = cache.get(key)
    if cached is not None:
        html, truncated = cached
        return RenderedCard(mark_safe(html), truncated)  # noqa: S308 - cached sanitized HTML
    try:
        data, truncated = read_head(blob, CARD_LIMIT_BYTES)
    except StorageError:
        log.warning("could not read model card %s", blob.sha256, exc_info=True)
        return RenderedCard(mark_safe(""), False, "The model card could not be loaded just now.")
    html = render_markdown(data.decode("utf-8", errors="replace"))
    cache.set(key, (str(html), truncated), timeout=None)
    return RenderedCard(html, truncated)


def json_file(blob: Blob) -> tuple[dict[str, Any] | None, str]:
    """A small JSON object file (cached by sha256); ``(None, reason)`` when unusable."""
    key = f"web:json:{blob.sha256}"
    cached = cache.get(key)
    if cached is not None:
        return cached, ""
    if blob.size > JSON_LIMIT_BYTES:
        return None, f"The file is larger than {JSON_LIMIT_BYTES // 1024} KB; not shown."
    try:
        data, _ = read_head(blob, JSON_LIMIT_BYTES)
    except StorageError:
        log.warning("could not read %s", blob.sha256, exc_info=True)
        return None, "The file could not be read just now."
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None, "The file is not valid JSON."
    if not isinstance(value, dict):
        return None, "The file is not a JSON object."
    cache.set(key, value, timeout=None)
    return value, ""
