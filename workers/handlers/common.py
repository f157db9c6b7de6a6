"""Helpers shared by handlers: readers over stored blobs, small-file reads."""

from __future__ import annotations

import json
from typing import Any

from hub.registry.models import Blob, Version
from hub.registry.storage import get_blob_store
from workers.runner import UserError
from workers.safetensors_io import RangeReader

#: Config-like files are read whole; anything larger than this is not a config.
MAX_SMALL_FILE = 4 * 1024 * 1024


def blob_reader(blob: Blob) -> RangeReader:
    store = get_blob_store()
    key = blob.storage_key

    def read(offset: int, length: int) -> bytes:
        return store.read_range(key, offset, length)

    return read


def read_small(blob: Blob) -> bytes:
    if blob.size > MAX_SMALL_FILE:
        raise UserError("file_too_large", f"A {blob.size}-byte config file is not plausible.")
    return get_blob_store().read_range(blob.storage_key, 0, blob.size)


def read_json_file(version: Version, path: str) -> dict[str, Any] | None:
    """A small JSON file of the version, or None if absent or not a JSON object."""
    found = version.files.select_related("blob").filter(path=path).first()
    if found is None:
        return None
    try:
        value = json.loads(read_small(found.blob))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
