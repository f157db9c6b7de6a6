"""Streaming upload handling: hash and size-check each file while Django spools it to disk."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from hub.registry.errors import PayloadTooLarge


class HashingUploadHandler(TemporaryFileUploadHandler):
    """Spools to a temp file (never memory), computing sha256 and enforcing the size limit
    in the same pass, so a too-large file is refused as soon as it crosses the limit."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._digest = hashlib.sha256()
        self._size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self._size += len(raw_data)
        if self._size > settings.MAX_FILE_BYTES:
            self.file.close()
            raise PayloadTooLarge(
                "file_too_large",
                f"{self.file_name} is larger than the {settings.MAX_FILE_BYTES}-byte limit.",
            )
        self._digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> TemporaryUploadedFile:
        uploaded = super().file_complete(file_size)
        assert isinstance(uploaded, TemporaryUploadedFile)
        uploaded.sha256 = self._digest.hexdigest()  # type: ignore[attr-defined]
        return uploaded
