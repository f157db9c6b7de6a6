"""The blob store: a narrow interface over S3 (boto3) or a local directory.

Keys always derive from a sha256 (``blobs/ab/cd/<sha256>``) or from a server-made
upload id (``uploads/<uuid>/<n>``), never from user input. Provider errors become
:class:`StorageUnavailable` (ours, retried) or :class:`BlobMissing`. Callers must not
hold a database transaction open around these calls.

This module has no Django imports apart from :func:`get_blob_store`, so workers and
benchmarks can build a store from plain values.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlencode

CHUNK_SIZE = 8 * 1024 * 1024


class StorageError(Exception):
    """Base class for blob store errors."""


class StorageUnavailable(StorageError):
    """Object storage failed or could not be reached. Ours to retry, never the user's fault."""


class BlobMissing(StorageError):
    """No object under the key."""


class UploadRejected(StorageError):
    """S3 refused what a client uploaded (parts too small, wrong ETag, bad digest)."""


#: S3 answers caused by what the client sent, not by our infrastructure.
_CLIENT_ERROR_CODES = frozenset(
    {"EntityTooSmall", "InvalidPart", "InvalidPartOrder", "BadDigest", "InvalidDigest"}
)


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    #: The sha256 the store verified on write (S3 single-part ChecksumSHA256), if any.
    sha256: str | None = None


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    started: datetime


@dataclass(frozen=True)
class PresignedPut:
    """Where and how a client uploads one object: PUT ``url`` with these ``headers``."""

    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class UploadedPart:
    part_number: int
    etag: str


def blob_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore(Protocol):
    """What the hub needs from object storage."""

    def put_file(self, key: str, fh: IO[bytes], *, size: int, sha256: str | None = None) -> None:
        """Store a seekable file's contents under ``key`` (multipart when large)."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset``."""

    def iter_chunks(self, key: str, offset: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream ``[offset, end)`` (to the end of the object when ``end`` is None)."""

    def head(self, key: str) -> ObjectInfo | None:
        """Size (and verified sha256, where the store has one), or None if absent."""

    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy, used to promote a verified upload to its sha256 key."""

    def presign_get(self, key: str, *, filename: str, expires: int) -> str | None:
        """A URL that serves the object without auth, or None if the hub must stream it."""

    def presign_put(self, key: str, *, size: int, sha256: str | None, expires: int) -> PresignedPut:
        """A URL a client can PUT exactly ``size`` bytes to (S3 also checks ``sha256``)."""

    def create_multipart(self, key: str) -> str:
        """Start a multipart upload; returns its id."""

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires: int) -> str:
        """A URL a client can PUT one part to; the response carries the part's ETag."""

    def complete_multipart(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        """Assemble the parts in order."""

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload and its parts."""

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``."""

    def list_pending_uploads(self) -> Iterator[PendingUpload]:
        """Multipart uploads started and never completed or aborted."""


# --- S3 -------------------------------------------------------------------------------


class SignedUrlCache:
    """Presigned GET URLs, reused while at least half their lifetime is left.

    Signing costs ~0.4 ms of botocore per call, a third of a whole download HEAD, and
    popular files are pulled over and over. Handing out a URL signed a little earlier
    grants nothing new: it names the same object, and everyone it is given to has
    passed the access check on this request. Any URL handed out still has at least half
    of ``PRESIGN_TTL_SECONDS`` to run.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._urls: dict[tuple[str, str, int], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int]) -> str | None:
        found = self._urls.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        return found[1]

    def put(self, key: tuple[str, str, int], url: str, *, valid_for: int) -> None:
        with self._lock:
            if len(self._urls) >= self.max_entries:
                # Drop the oldest half (dicts keep insertion order): cheap and rare.
                for stale in list(self._urls)[: self.max_entries // 2]:
                    del self._urls[stale]
            self._urls[key] = (time.monotonic() + valid_for / 2, url)


class S3BlobStore:
    """Blob store on S3 or an S3-compatible server (MinIO, moto)."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        addressing_style: str = "path",
        public_endpoint_url: str | None = None,
        part_size: int = 64 * 1024 * 1024,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            signature_version="s3v4",
        )
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": config,
        }
        self.bucket = bucket
        self.client = session.client("s3", endpoint_url=endpoint_url, **kwargs)
        # Presigned URLs embed the host; clients may reach storage by another name.
        self.presign_client = (
            session.client("s3", endpoint_url=public_endpoint_url, **kwargs)
            if public_endpoint_url
            else self.client
        )
        self.transfer_config = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=4
        )
        self._signed_gets = SignedUrlCache()

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
                raise BlobMissing(kwargs.get("Key", "")) from exc
            if code in _CLIENT_ERROR_CODES:
                raise UploadRejected(code) from exc
            raise StorageUnavailable(f"S3 {fn.__name__} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {fn.__name__} failed: {exc}") from exc

    def ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                # Every region but us-east-1 requires the location constraint.
                self._call(
                    self.client.create_bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},
                )
            else:
                self._call(self.client.create_bucket)
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 is unreachable: {exc}") from exc

    def put_file(self, key: str, fh: IO[bytes], *, size: int, sha256: str | None = None) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        extra: dict[str, Any] = {}
        if sha256 is not None and size < self.transfer_config.multipart_threshold:
            # S3 then verifies the bytes itself and remembers the checksum for head().
            import base64

            extra["ChecksumAlgorithm"] = "SHA256"
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
            try:
                self._call(self.client.put_object, Key=key, Body=fh, **extra)
            except StorageUnavailable:
                raise
            return
        path = getattr(fh, "name", None)
        try:
            if isinstance(path, str) and os.path.isfile(path) and os.path.getsize(path) == size:
                # By path, boto3 streams each part from disk; upload_fileobj would hold
                # whole parts in memory (a 1 GiB push peaked at ~770 MB RSS that way).
                self.client.upload_file(path, self.bucket, key, Config=self.transfer_config)
            else:
                self.client.upload_fileobj(fh, self.bucket, key, Config=self.transfer_config)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise StorageUnavailable(f"S3 upload failed: {exc}") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        resp = self._call(
            self.client.get_object, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
        )
        from botocore.exceptions import BotoCoreError

        try:
            data: bytes = resp["Body"].read()
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 read of {key} failed: {exc}") from exc
        if len(data) != length:
            raise StorageUnavailable(f"short read on {key}: {len(data)} of {length} bytes")
        return data

    def iter_chunks(self, key: str, offset: int = 0, end: int | None = None) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        if end is not None and end <= offset:
            return
        if offset == 0 and end is None:
            # No Range: S3 answers 416 to "bytes=0-" on an empty object.
            resp = self._call(self.client.get_object, Key=key)
        else:
            rng = f"bytes={offset}-" if end is None else f"bytes={offset}-{end - 1}"
            resp = self._call(self.client.get_object, Key=key, Range=rng)
        try:
            yield from resp["Body"].iter_chunks(CHUNK_SIZE)
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 read of {key} failed: {exc}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        import base64

        try:
            resp = self._call(self.client.head_object, Key=key, ChecksumMode="ENABLED")
        except BlobMissing:
            return None
        checksum = resp.get("ChecksumSHA256")
        sha = None
        # A multipart checksum ends in "-N" and is a checksum of checksums, not the file's.
        if (
            checksum
            and "-" not in checksum
            and resp.get("ChecksumType", "FULL_OBJECT") != "COMPOSITE"
        ):
            sha = base64.b64decode(checksum).hex()
        return ObjectInfo(size=int(resp["ContentLength"]), sha256=sha)

    def delete(self, key: str) -> None:
        with contextlib.suppress(BlobMissing):
            self._call(self.client.delete_object, Key=key)

    def copy(self, src: str, dst: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": src}, self.bucket, dst, Config=self.transfer_config
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobMissing(src) from exc
            raise StorageUnavailable(f"S3 copy failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 copy failed: {exc}") from exc

    def presign_get(self, key: str, *, filename: str, expires: int) -> str:
        found = self._signed_gets.get((key, filename, expires))
        if found is not None:
            return found
        url: str = self.presign_client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": _content_disposition(filename),
                # Never rendered by a browser, whatever the bytes look like (a card, an SVG).
                "ResponseContentType": "application/octet-stream",
            },
            ExpiresIn=expires,
        )
        self._signed_gets.put((key, filename, expires), url, valid_for=expires)
        return url

    def presign_put(self, key: str, *, size: int, sha256: str | None, expires: int) -> PresignedPut:
        import base64

        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentLength": size}
        headers: dict[str, str] = {}
        if sha256 is not None:
            # Signed into the URL: S3 refuses a body whose sha256 differs, and head()
            # reports the checksum afterwards, so the hub never rereads the object.
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        url: str = self.presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires
        )
        return PresignedPut(url=url, headers=headers)

    def create_multipart(self, key: str) -> str:
        resp = self._call(self.client.create_multipart_upload, Key=key)
        return str(resp["UploadId"])

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires: int) -> str:
        url: str = self.presign_client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": part_number,
            },
            ExpiresIn=expires,
        )
        return url

    def complete_multipart(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        self._call(
            self.client.complete_multipart_upload,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p.part_number, "ETag": p.etag}
                    for p in sorted(parts, key=lambda p: p.part_number)
                ]
            },
        )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(BlobMissing):
            self._call(self.client.abort_multipart_upload, Key=key, UploadId=upload_id)

    def _pages(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield from self.client.get_paginator(operation).paginate(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"S3 {operation} failed: {exc}") from exc

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        for page in self._pages("list_objects_v2", Prefix=prefix):
            for obj in page.get("Contents", []):
                yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"])

    def list_pending_uploads(self) -> Iterator[PendingUpload]:
        for page in self._pages("list_multipart_uploads"):
            for upload in page.get("Uploads", []):
                yield PendingUpload(upload["Key"], upload["UploadId"], upload["Initiated"])


# --- Local filesystem ------------------------------------------------------------------


class LocalBlobStore:
    """Blob store in a local directory, for the embedded hub and single-machine setups.

    Presigned URLs become hub URLs signed with an HMAC of the key, the method and the
    expiry; :func:`verify_signature` checks them in the hub's blob views.
    """

    def __init__(self, root: Path, *, secret: str, base_url: str) -> None:
        self.root = root
        self.secret = secret.encode()
        self.base_url = base_url.rstrip("/")
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key escapes the blob root: {key!r}")
        return path

    def write_stream(self, key: str, chunks: Iterator[bytes]) -> None:
        """Write an object from a stream of chunks; readers never see a partial object."""
        self._write_atomically(key, chunks)

    def _write_atomically(self, key: str, chunks: Iterator[bytes]) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers never see a partial blob.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageUnavailable(f"writing {key} failed: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, fh: IO[bytes], *, size: int, sha256: str | None = None) -> None:
        self._write_atomically(key, iter(lambda: fh.read(CHUNK_SIZE), b""))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            with self.path(key).open("rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"reading {key} failed: {exc}") from exc
        if len(data) != length:
            raise StorageUnavailable(f"short read on {key}: {len(data)} of {length} bytes")
        return data

    def iter_chunks(self, key: str, offset: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            fh = self.path(key).open("rb")
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc
        with fh:
            fh.seek(offset)
            remaining = None if end is None else end - offset
            while remaining is None or remaining > 0:
                chunk = fh.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def head(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(size=self.path(key).stat().st_size)
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def copy(self, src: str, dst: str) -> None:
        if not self.path(src).exists():
            raise BlobMissing(src)
        self._write_atomically(dst, self.iter_chunks(src))

    def sign(self, method: str, key: str, expires_at: int, size: str = "") -> str:
        # The size is signed too: a client may not stretch a URL to write more bytes.
        msg = f"{method}\n{key}\n{expires_at}\n{size}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def verify_signature(
        self, method: str, key: str, expires_at: int, signature: str, size: str = ""
    ) -> bool:
        if expires_at < time.time():
            return False
        return hmac.compare_digest(self.sign(method, key, expires_at, size), signature)

    def _signed_url(self, method: str, key: str, expires: int, size: str = "") -> str:
        expires_at = int(time.time()) + expires
        query = {"exp": str(expires_at), "sig": self.sign(method, key, expires_at, size)}
        if size:
            query["size"] = size
        return f"{self.base_url}/blobs/{key}?{urlencode(query)}"

    def presign_get(self, key: str, *, filename: str, expires: int) -> str | None:
        # The local backend streams through the hub itself (with Range support).
        return None

    def presign_put(self, key: str, *, size: int, sha256: str | None, expires: int) -> PresignedPut:
        return PresignedPut(url=self._signed_url("PUT", key, expires, str(size)), headers={})

    def create_multipart(self, key: str) -> str:
        upload_id = hashlib.sha256(f"{key}{time.time_ns()}".encode()).hexdigest()[:32]
        self.path(f"multipart/{upload_id}").mkdir(parents=True, exist_ok=True)
        return upload_id

    def presign_part(self, key: str, upload_id: str, part_number: int, *, expires: int) -> str:
        return self._signed_url("PUT", f"multipart/{upload_id}/{part_number:05d}", expires)

    def part_etag(self, part_key: str) -> str:
        """The ETag returned for a part PUT: the md5 of its bytes, as S3 does."""
        digest = hashlib.md5(usedforsecurity=False)
        for chunk in self.iter_chunks(part_key):
            digest.update(chunk)
        return f'"{digest.hexdigest()}"'

    def complete_multipart(self, key: str, upload_id: str, parts: list[UploadedPart]) -> None:
        part_dir = self.path(f"multipart/{upload_id}")

        def chunks() -> Iterator[bytes]:
            for part in sorted(parts, key=lambda p: p.part_number):
                part_key = f"multipart/{upload_id}/{part.part_number:05d}"
                if self.part_etag(part_key).strip('"') != part.etag.strip('"'):
                    raise BlobMissing(part_key)
                yield from self.iter_chunks(part_key)

        self._write_atomically(key, chunks())
        shutil.rmtree(part_dir, ignore_errors=True)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        shutil.rmtree(self.path(f"multipart/{upload_id}"), ignore_errors=True)

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        root = self.root.resolve()
        top = self.path(prefix.rpartition("/")[0]) if "/" in prefix else root
        for path in sorted(top.rglob("*")):
            key = path.relative_to(root).as_posix()
            # Skip directories and the temporary files of writes in progress.
            if key.startswith(prefix) and path.is_file() and not path.name.startswith(".tmp-"):
                stat = path.stat()
                yield StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def list_pending_uploads(self) -> Iterator[PendingUpload]:
        # Local uploads are directories of parts; the target key is not recorded.
        for part_dir in sorted(self.path("multipart").glob("*")):
            started = datetime.fromtimestamp(part_dir.stat().st_mtime, UTC)
            yield PendingUpload("", part_dir.name, started)


def _content_disposition(filename: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename*=UTF-8''{quote(filename)}"


@lru_cache(maxsize=1)
def get_blob_store() -> BlobStore:
    """The store configured in settings (one per process)."""
    from django.conf import settings

    if settings.STORAGE_BACKEND == "s3":
        return S3BlobStore(
            bucket=settings.S3_BUCKET,
            endpoint_url=settings.S3_ENDPOINT_URL,
            region=settings.S3_REGION,
            access_key_id=settings.S3_ACCESS_KEY_ID,
            secret_access_key=settings.S3_SECRET_ACCESS_KEY,
            addressing_style=settings.S3_ADDRESSING_STYLE,
            public_endpoint_url=settings.S3_PUBLIC_ENDPOINT_URL,
            part_size=settings.MULTIPART_PART_BYTES,
        )
    return LocalBlobStore(
        settings.BLOB_DIR, secret=settings.SECRET_KEY, base_url=settings.PUBLIC_BASE_URL
    )
