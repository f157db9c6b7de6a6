"""Both blob stores, for real: S3BlobStore against the moto server the test command
starts (over HTTP, in a bucket of its own) and LocalBlobStore in a temporary directory.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from django.conf import settings

from hub.registry.storage import (
    CHUNK_SIZE,
    BlobMissing,
    LocalBlobStore,
    S3BlobStore,
    SignedUrlCache,
    StorageError,
    StorageUnavailable,
    UploadedPart,
    blob_key,
)

MIB = 1024 * 1024
#: S3's smallest part (every part but the last).
MIN_PART = 5 * MIB
DATA = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_key() -> str:
    return f"uploads/{uuid.uuid4().hex}/0"


# --- S3 (moto server) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> S3BlobStore:
    if not settings.S3_ENDPOINT_URL:
        pytest.skip("no S3_ENDPOINT_URL: run through scripts/run_tests.py, which starts moto")
    store = S3BlobStore(
        bucket="strata-storage-test",
        endpoint_url=settings.S3_ENDPOINT_URL,
        region=settings.S3_REGION,
        access_key_id=settings.S3_ACCESS_KEY_ID,
        secret_access_key=settings.S3_SECRET_ACCESS_KEY,
        addressing_style=settings.S3_ADDRESSING_STYLE,
        # The multipart threshold of put_file: small, so a 6 MiB file goes multipart.
        part_size=MIN_PART,
    )
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    return store


def test_s3_put_file_round_trips_through_head_read_range_and_iter_chunks(
    s3: S3BlobStore,
) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))

    info = s3.head(key)
    assert info is not None
    assert info.size == len(DATA)
    assert s3.read_range(key, 0, 5) == DATA[:5]
    assert s3.read_range(key, 1000, 300) == DATA[1000:1300]
    assert s3.read_range(key, 7, 0) == b""
    assert b"".join(s3.iter_chunks(key)) == DATA
    assert b"".join(s3.iter_chunks(key, 4000)) == DATA[4000:]
    assert b"".join(s3.iter_chunks(key, 100, 2100)) == DATA[100:2100]


def test_s3_head_returns_the_sha256_of_a_single_part_put(s3: S3BlobStore) -> None:
    key = blob_key(sha(DATA))
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA), sha256=sha(DATA))

    info = s3.head(key)
    assert info is not None
    assert info.sha256 == sha(DATA)


def test_s3_head_has_no_sha256_when_none_was_sent(s3: S3BlobStore) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))

    info = s3.head(key)
    assert info is not None
    assert info.sha256 is None


def test_s3_a_large_put_file_goes_multipart_and_head_claims_no_sha256(s3: S3BlobStore) -> None:
    data = b"\x01" * MIN_PART + b"tail"
    key = new_key()
    s3.put_file(key, io.BytesIO(data), size=len(data), sha256=sha(data))

    info = s3.head(key)
    assert info is not None
    assert info.size == len(data)
    # A multipart object's checksum is not the file's sha256; head() must not offer one.
    assert info.sha256 is None
    assert s3.read_range(key, MIN_PART - 2, 6) == b"\x01\x01tail"


def test_moto_does_not_verify_a_wrong_sha256_and_head_echoes_the_claim(s3: S3BlobStore) -> None:
    """What the test server really does with a checksum that does not match the bytes.

    AWS S3 refuses such a PUT (BadDigest; put_file would raise StorageUnavailable). moto
    5.2 stores the object and reports the *claimed* checksum, so under moto head().sha256
    is an unverified claim. This test pins that, so a change of moto's behaviour shows.
    """
    wrong = sha(b"something else")
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA), sha256=wrong)

    info = s3.head(key)
    assert info is not None
    assert info.sha256 == wrong
    # A partial GET carries no checksum, so nothing notices.
    assert s3.read_range(key, 0, 100) == DATA[:100]


def test_s3_an_error_while_reading_the_body_is_storage_unavailable(s3: S3BlobStore) -> None:
    key = new_key()
    # moto keeps the wrong checksum; botocore checks it when a GET covers the whole object.
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA), sha256=sha(b"something else"))
    with pytest.raises(StorageUnavailable):
        s3.read_range(key, 0, len(DATA))


def test_s3_presigned_put_accepts_the_bytes_with_the_given_headers(s3: S3BlobStore) -> None:
    key = new_key()
    put = s3.presign_put(key, size=len(DATA), sha256=sha(DATA), expires=300)
    assert put.headers == {"x-amz-checksum-sha256": put.headers["x-amz-checksum-sha256"]}
    query = parse_qs(urlsplit(put.url).query)
    # The size and the checksum are signed into the URL, not merely suggested.
    assert query["X-Amz-SignedHeaders"] == ["content-length;host;x-amz-checksum-sha256"]

    response = requests.put(put.url, data=DATA, headers=put.headers, timeout=30)

    assert response.status_code == 200, response.text
    info = s3.head(key)
    assert info is not None
    assert info.size == len(DATA)
    # AWS S3 verifies the signed checksum and reports it. moto records a checksum only
    # when the SDK's x-amz-sdk-checksum-algorithm header comes too, so head() has none
    # and the hub hashes the object itself: never a different value.
    assert info.sha256 in (None, sha(DATA))
    assert s3.read_range(key, 0, len(DATA)) == DATA


def test_s3_presigned_put_without_a_sha256_needs_no_headers(s3: S3BlobStore) -> None:
    key = new_key()
    put = s3.presign_put(key, size=len(DATA), sha256=None, expires=300)
    assert put.headers == {}

    response = requests.put(put.url, data=DATA, timeout=30)

    assert response.status_code == 200, response.text
    assert s3.read_range(key, 0, len(DATA)) == DATA


def test_s3_presigned_get_serves_a_range_as_206_with_the_filename(s3: S3BlobStore) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))
    url = s3.presign_get(key, filename="adapter model.safetensors", expires=300)

    whole = requests.get(url, timeout=30)
    ranged = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=30)

    assert whole.status_code == 200
    assert whole.content == DATA
    assert ranged.status_code == 206
    assert ranged.content == DATA[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"
    assert ranged.headers["Content-Disposition"] == (
        "attachment; filename*=UTF-8''adapter%20model.safetensors"
    )


def test_s3_presigned_gets_are_reused_for_half_their_lifetime_and_then_signed_anew(
    s3: S3BlobStore,
) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))
    first = s3.presign_get(key, filename="a.bin", expires=2)

    assert s3.presign_get(key, filename="a.bin", expires=2) == first
    # Another file name means another Content-Disposition, so another URL.
    assert s3.presign_get(key, filename="b.bin", expires=2) != first
    time.sleep(1.1)  # past half of the 2 s lifetime: X-Amz-Date moves on
    renewed = s3.presign_get(key, filename="a.bin", expires=2)

    assert renewed != first
    assert requests.get(renewed, timeout=30).content == DATA


def test_the_signed_url_cache_stays_bounded() -> None:
    cache = SignedUrlCache(max_entries=4)
    for n in range(10):
        cache.put((f"k{n}", "f", 60), f"url{n}", valid_for=60)

    assert len(cache._urls) <= 4
    assert cache.get(("k9", "f", 60)) == "url9"  # the newest survive
    assert cache.get(("k0", "f", 60)) is None


def test_s3_multipart_via_presigned_parts_assembles_the_parts_in_order(s3: S3BlobStore) -> None:
    key = new_key()
    first, second, last = b"a" * MIN_PART, b"b" * MIN_PART, b"the end"
    upload_id = s3.create_multipart(key)
    parts = []
    # Sent out of order, as parallel clients do; completion orders them by number.
    for number, body in ((3, last), (1, first), (2, second)):
        url = s3.presign_part(key, upload_id, number, expires=300)
        response = requests.put(url, data=body, timeout=60)
        assert response.status_code == 200, response.text
        parts.append(UploadedPart(part_number=number, etag=response.headers["ETag"]))

    s3.complete_multipart(key, upload_id, parts)

    info = s3.head(key)
    assert info is not None
    assert info.size == 2 * MIN_PART + len(last)
    assert info.sha256 is None
    digest = hashlib.sha256()
    for chunk in s3.iter_chunks(key):
        digest.update(chunk)
    assert digest.hexdigest() == sha(first + second + last)


def test_s3_refuses_to_complete_a_multipart_upload_with_a_small_first_part(
    s3: S3BlobStore,
) -> None:
    key = new_key()
    upload_id = s3.create_multipart(key)
    parts = []
    for number in (1, 2):
        url = s3.presign_part(key, upload_id, number, expires=300)
        response = requests.put(url, data=b"tiny", timeout=30)
        parts.append(UploadedPart(part_number=number, etag=response.headers["ETag"]))

    with pytest.raises(StorageError, match="EntityTooSmall"):
        s3.complete_multipart(key, upload_id, parts)
    s3.abort_multipart(key, upload_id)
    s3.abort_multipart(key, upload_id)  # aborting twice is not an error
    assert s3.head(key) is None


def test_s3_a_missing_key_is_blob_missing_or_none(s3: S3BlobStore) -> None:
    key = new_key()
    assert s3.head(key) is None
    with pytest.raises(BlobMissing):
        s3.read_range(key, 0, 10)
    with pytest.raises(BlobMissing):
        list(s3.iter_chunks(key))
    with pytest.raises(BlobMissing):
        s3.copy(key, new_key())


def test_s3_delete_is_idempotent(s3: S3BlobStore) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))

    s3.delete(key)
    s3.delete(key)

    assert s3.head(key) is None


def test_s3_copy_duplicates_the_object(s3: S3BlobStore) -> None:
    src, dst = new_key(), blob_key(sha(DATA + b"copy"))
    s3.put_file(src, io.BytesIO(DATA + b"copy"), size=len(DATA) + 4)

    s3.copy(src, dst)
    s3.delete(src)

    assert s3.read_range(dst, 0, len(DATA) + 4) == DATA + b"copy"


def unreachable_store(*, fast: bool) -> S3BlobStore:
    store = S3BlobStore(
        bucket="strata-storage-test",
        endpoint_url="http://127.0.0.1:1",
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    if fast:
        # Same store, but one attempt per call instead of five: the errors are the same.
        store.client = boto3.session.Session().client(
            "s3",
            endpoint_url="http://127.0.0.1:1",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=1,
                s3={"addressing_style": "path"},
            ),
        )
    return store


def test_an_unreachable_s3_endpoint_raises_storage_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        unreachable_store(fast=False).head("blobs/x")
    # Connection refused is retried (5 attempts) but never waits out a timeout.
    assert time.monotonic() - started < 10


def test_every_s3_operation_turns_an_unreachable_endpoint_into_storage_unavailable() -> None:
    store = unreachable_store(fast=True)
    with pytest.raises(StorageUnavailable):
        store.ensure_bucket()
    with pytest.raises(StorageUnavailable):
        store.read_range("blobs/x", 0, 1)
    with pytest.raises(StorageUnavailable):
        list(store.iter_chunks("blobs/x"))
    with pytest.raises(StorageUnavailable):
        store.put_file("blobs/x", io.BytesIO(DATA), size=len(DATA), sha256=sha(DATA))
    with pytest.raises(StorageUnavailable):
        store.put_file("blobs/x", io.BytesIO(DATA), size=len(DATA))
    with pytest.raises(StorageUnavailable):
        store.copy("blobs/x", "blobs/y")
    with pytest.raises(StorageUnavailable):
        store.delete("blobs/x")
    with pytest.raises(StorageUnavailable):
        store.create_multipart("blobs/x")


def test_s3_an_empty_range_streams_nothing(s3: S3BlobStore) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(DATA), size=len(DATA))
    assert b"".join(s3.iter_chunks(key, 5, 5)) == b""


def test_s3_an_empty_object_streams_as_nothing(s3: S3BlobStore) -> None:
    key = new_key()
    s3.put_file(key, io.BytesIO(b""), size=0)
    assert b"".join(s3.iter_chunks(key)) == b""


def test_s3_ensure_bucket_works_outside_us_east_1(s3: S3BlobStore) -> None:
    assert settings.S3_ENDPOINT_URL
    store = S3BlobStore(
        bucket=f"strata-eu-{uuid.uuid4().hex[:8]}",
        endpoint_url=settings.S3_ENDPOINT_URL,
        region="eu-west-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    store.ensure_bucket()


# --- Local directory ------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(
        tmp_path / "blobs", secret="test-signing-secret", base_url="https://hub.example.org/"
    )


def test_local_put_file_round_trips_through_head_read_range_and_iter_chunks(
    local: LocalBlobStore,
) -> None:
    data = DATA * 1000  # 10 MB: more than one CHUNK_SIZE
    assert len(data) > CHUNK_SIZE
    key = blob_key(sha(data))
    local.put_file(key, io.BytesIO(data), size=len(data), sha256=sha(data))

    info = local.head(key)
    assert info is not None
    assert info.size == len(data)
    assert info.sha256 is None  # the local store verifies nothing itself
    assert local.read_range(key, 0, 5) == data[:5]
    assert local.read_range(key, CHUNK_SIZE - 3, 6) == data[CHUNK_SIZE - 3 : CHUNK_SIZE + 3]
    assert local.read_range(key, 9, 0) == b""
    assert b"".join(local.iter_chunks(key)) == data
    assert b"".join(local.iter_chunks(key, 12345)) == data[12345:]
    assert b"".join(local.iter_chunks(key, 100, CHUNK_SIZE + 100)) == data[100 : CHUNK_SIZE + 100]
    assert b"".join(local.iter_chunks(key, 5, 5)) == b""


def test_local_a_short_read_is_storage_unavailable(local: LocalBlobStore) -> None:
    key = new_key()
    local.put_file(key, io.BytesIO(DATA), size=len(DATA))
    with pytest.raises(StorageUnavailable, match="short read"):
        local.read_range(key, len(DATA) - 2, 10)


@pytest.mark.parametrize(
    "key", ["../outside", "blobs/../../outside", "/etc/passwd", "uploads/x/../../../outside"]
)
def test_local_keys_cannot_escape_the_root(local: LocalBlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="escapes the blob root"):
        local.put_file(key, io.BytesIO(b"x"), size=1)
    with pytest.raises(ValueError, match="escapes the blob root"):
        local.read_range(key, 0, 1)
    with pytest.raises(ValueError, match="escapes the blob root"):
        local.head(key)
    with pytest.raises(ValueError, match="escapes the blob root"):
        local.delete(key)
    assert not (local.root.parent / "outside").exists()


def test_local_a_missing_key_is_blob_missing_or_none(local: LocalBlobStore) -> None:
    key = new_key()
    assert local.head(key) is None
    with pytest.raises(BlobMissing):
        local.read_range(key, 0, 1)
    with pytest.raises(BlobMissing):
        list(local.iter_chunks(key))
    with pytest.raises(BlobMissing):
        local.copy(key, new_key())


def test_local_delete_is_idempotent_and_copy_duplicates(local: LocalBlobStore) -> None:
    src, dst = new_key(), blob_key(sha(DATA))
    local.put_file(src, io.BytesIO(DATA), size=len(DATA))

    local.copy(src, dst)
    local.delete(src)
    local.delete(src)

    assert local.head(src) is None
    assert local.read_range(dst, 0, len(DATA)) == DATA


def test_local_presign_get_leaves_serving_to_the_hub(local: LocalBlobStore) -> None:
    assert local.presign_get(new_key(), filename="x", expires=60) is None


def signed(url: str) -> tuple[str, int, str]:
    """(key, expires_at, signature) of a local presigned URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/blobs/"), int(query["exp"][0]), query["sig"][0]


def test_local_a_fresh_signature_verifies(local: LocalBlobStore) -> None:
    key = new_key()
    put = local.presign_put(key, size=10, sha256=None, expires=300)
    assert put.url.startswith(f"https://hub.example.org/blobs/{key}?")
    assert put.headers == {}
    assert parse_qs(urlsplit(put.url).query)["size"] == ["10"]

    url_key, expires_at, signature = signed(put.url)

    assert url_key == key
    assert local.verify_signature("PUT", key, expires_at, signature, "10")
    # The size is part of what is signed: a stretched URL is refused.
    assert not local.verify_signature("PUT", key, expires_at, signature, "11")
    assert not local.verify_signature("PUT", key, expires_at, signature)


def test_local_a_tampered_signature_is_refused(local: LocalBlobStore) -> None:
    key = new_key()
    _, expires_at, signature = signed(local.presign_put(key, size=10, sha256=None, expires=300).url)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    assert local.verify_signature("PUT", key, expires_at, signature, "10")
    assert not local.verify_signature("PUT", key, expires_at, flipped, "10")
    assert not local.verify_signature("PUT", new_key(), expires_at, signature)
    assert not local.verify_signature("GET", key, expires_at, signature)
    assert not local.verify_signature("PUT", key, expires_at + 3600, signature)
    other = LocalBlobStore(local.root, secret="another-secret", base_url=local.base_url)
    assert not other.verify_signature("PUT", key, expires_at, signature)


def test_local_an_expired_signature_is_refused(local: LocalBlobStore) -> None:
    key = new_key()
    expires_at = int(time.time()) - 1
    signature = local.sign("PUT", key, expires_at)

    assert not local.verify_signature("PUT", key, expires_at, signature)


def exploding(first: bytes, error: Exception) -> Iterator[bytes]:
    """A source that yields some bytes, then fails, like a client that disconnects."""
    yield first
    raise error


class ExplodingFile(io.RawIOBase):
    def __init__(self, first: bytes, error: Exception) -> None:
        self.chunks = exploding(first, error)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return next(self.chunks)


def test_local_a_write_that_fails_midway_leaves_no_partial_blob(local: LocalBlobStore) -> None:
    key = new_key()
    source = ExplodingFile(b"half of the bytes", OSError("connection reset"))

    with pytest.raises(StorageUnavailable, match="connection reset"):
        local.put_file(key, source, size=100)  # type: ignore[arg-type]

    assert local.head(key) is None
    assert [p for p in local.root.rglob("*") if p.is_file()] == []


def test_local_a_failed_overwrite_keeps_the_old_bytes(local: LocalBlobStore) -> None:
    key = new_key()
    local.put_file(key, io.BytesIO(DATA), size=len(DATA))

    with pytest.raises(StorageUnavailable):
        local.put_file(key, ExplodingFile(b"new", OSError("disk full")), size=100)  # type: ignore[arg-type]

    assert local.read_range(key, 0, len(DATA)) == DATA


def test_local_a_source_error_propagates_without_a_partial_blob(local: LocalBlobStore) -> None:
    key = new_key()
    with pytest.raises(RuntimeError, match="parser failed"):
        local._write_atomically(key, exploding(b"half", RuntimeError("parser failed")))
    assert local.head(key) is None


def test_local_a_failed_write_leaves_no_temp_file(local: LocalBlobStore) -> None:
    key = new_key()
    with pytest.raises(RuntimeError):
        local._write_atomically(key, exploding(b"half", RuntimeError("parser failed")))
    assert [p.name for p in local.root.rglob(".tmp-*")] == []


def test_local_multipart_assembles_the_parts_in_order(local: LocalBlobStore) -> None:
    key = new_key()
    upload_id = local.create_multipart(key)
    bodies = {1: b"first-", 2: b"second-", 3: b"third"}
    parts = []
    for number in (3, 1, 2):
        url = local.presign_part(key, upload_id, number, expires=300)
        part_key, expires_at, signature = signed(url)
        assert local.verify_signature("PUT", part_key, expires_at, signature)
        # What the hub's signed-PUT view does with the body.
        local.put_file(part_key, io.BytesIO(bodies[number]), size=len(bodies[number]))
        parts.append(UploadedPart(number, local.part_etag(part_key)))

    local.complete_multipart(key, upload_id, parts)

    assert local.read_range(key, 0, 18) == b"first-second-third"
    assert not local.path(f"multipart/{upload_id}").exists()


def test_local_multipart_refuses_a_wrong_etag(local: LocalBlobStore) -> None:
    key = new_key()
    upload_id = local.create_multipart(key)
    part_key, _, _ = signed(local.presign_part(key, upload_id, 1, expires=300))
    local.put_file(part_key, io.BytesIO(b"part"), size=4)

    with pytest.raises(BlobMissing):
        local.complete_multipart(key, upload_id, [UploadedPart(1, '"0123456789abcdef"')])

    assert local.head(key) is None
    local.abort_multipart(key, upload_id)
    assert not local.path(f"multipart/{upload_id}").exists()
