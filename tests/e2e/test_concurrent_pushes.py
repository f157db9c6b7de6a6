"""End to end over real HTTP: concurrent pushes and pushes cut off mid-upload.

A live server (threaded), PostgreSQL and S3 (moto). Versions appear whole or not at all:
concurrent pushes get distinct consecutive numbers, readers never see a version with
missing files, and a request body that stops early publishes nothing.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from hub.registry import services
from hub.registry.models import Blob, LineageEdge, Version, VersionFile
from hub.registry.storage import S3BlobStore, blob_key, get_blob_store
from tests.factories import adapter_files, base_model_files, make_token, make_user, requests_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PUSHES = 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub(live_server: Any, settings: Any) -> dict[str, Any]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    token = make_token(make_user("alice"))
    return {
        "api": f"{live_server.url}/api/v1",
        "auth": {"Authorization": f"Bearer {token}"},
        "token": token,
        "url": live_server.url,
    }


def create_repo(hub: dict[str, Any], name: str, kind: str) -> str:
    made = requests.post(
        f"{hub['api']}/repos", json={"name": name, "kind": kind}, headers=hub["auth"], timeout=30
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_twenty_concurrent_pushes_get_distinct_consecutive_numbers(hub):
    base = create_repo(hub, "tiny-base", "base_model")
    pushed = requests.post(
        f"{hub['api']}/repos/{base}/versions",
        files=requests_files(base_model_files()),
        headers=hub["auth"],
        timeout=60,
    )
    assert pushed.status_code == 201, pushed.text
    services.version_set_status(version=Version.objects.get(number=1), status="valid")
    repo = create_repo(hub, "busy-lora", "adapter")
    card = f"# shared card {uuid.uuid4()}\n".encode()  # the same bytes in every push
    payloads = [
        {**adapter_files(seed=100 + i, base=base), "README.md": card} for i in range(PUSHES)
    ]
    start = threading.Barrier(PUSHES)
    pushing = threading.Event()
    partial_sightings: list[Any] = []

    def push(i: int) -> requests.Response:
        start.wait(timeout=30)
        return requests.post(
            f"{hub['api']}/repos/{repo}/versions",
            files=requests_files(payloads[i]),
            data={"metadata": json.dumps({"base_model": base, "message": f"push {i}"})},
            headers=hub["auth"],
            timeout=180,
        )

    def watch() -> None:
        """Read versions while pushes land: each one must already have all its files."""
        while pushing.is_set():
            listed = requests.get(f"{hub['api']}/repos/{repo}/versions", timeout=30).json()
            for v in listed:
                files = requests.get(
                    f"{hub['api']}/repos/{repo}/versions/{v['label']}/files", timeout=30
                ).json()
                if len(files) != 3:
                    partial_sightings.append((v["label"], files))
            time.sleep(0.05)

    pushing.set()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(PUSHES) as pool:
            responses = list(pool.map(push, range(PUSHES)))
    finally:
        pushing.clear()
        watcher.join(60)

    assert [r.status_code for r in responses] == [201] * PUSHES, [r.text for r in responses]
    numbers = sorted(r.json()["number"] for r in responses)
    assert numbers == list(range(1, PUSHES + 1))
    assert partial_sightings == []
    versions = Version.objects.filter(repository__name="busy-lora")
    assert versions.count() == PUSHES
    assert len({v.commit_id for v in versions}) == PUSHES
    for response in responses:
        body = response.json()
        i = int(body["message"].split()[1])
        version = versions.get(number=body["number"])
        stored = dict(VersionFile.objects.filter(version=version).values_list("path", "blob_id"))
        assert stored == {path: sha(data) for path, data in payloads[i].items()}
        assert LineageEdge.objects.filter(child=version, kind="adapter_of").count() == 1
    # The shared card and config were stored once, however many pushes raced.
    assert Blob.objects.filter(sha256=sha(card)).count() == 1
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)
    keys = store.client.list_objects_v2(Bucket=store.bucket, Prefix=blob_key(sha(card)))
    assert keys["KeyCount"] == 1
    listed = requests.get(f"{hub['api']}/repos/{repo}/versions", timeout=30).json()
    assert [v["number"] for v in listed] == list(range(PUSHES, 0, -1))


def _multipart_body(files: dict[str, bytes], boundary: str) -> tuple[bytes, dict[str, int]]:
    """A multipart body and where each file's bytes start in it."""
    body = b""
    starts = {}
    for path, data in files.items():
        body += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{path}"; filename="{path}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        starts[path] = len(body)
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, starts


@pytest.mark.parametrize("ending", ["half-close", "close"])
def test_a_push_cut_off_mid_upload_publishes_nothing(hub, ending):
    repo = create_repo(hub, "corpus", "dataset")
    # A dataset: any subset of its files would make a valid version, so nothing but the
    # hub's own check stands between a cut-off push and a half-published one.
    run = uuid.uuid4().hex
    files = {
        "complete.jsonl": f'{{"run": "{run}", "part": 1}}\n'.encode(),
        "cut.jsonl": f'{{"run": "{run}"}}\n'.encode() * 40_000,
    }
    boundary = f"strata-{run}"
    body, starts = _multipart_body(files, boundary)
    cut_at = starts["cut.jsonl"] + len(files["cut.jsonl"]) // 2
    url = urlsplit(hub["url"])
    head = (
        f"POST /api/v1/repos/{repo}/versions HTTP/1.1\r\n"
        f"Host: {url.hostname}:{url.port}\r\n"
        f"Authorization: Bearer {hub['token']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + body[:cut_at])
        if ending == "half-close":
            # The client stops sending but still listens: the hub says what happened.
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            status_line, _, rest = answer.partition(b"\r\n")
            assert b" 400 " in status_line, answer[:500]
            error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
            assert error["code"] == "upload_incomplete"
    if ending == "close":
        time.sleep(1.5)  # the hub handles the broken request in its own thread

    assert Version.objects.count() == 0
    assert not Blob.objects.filter(sha256__in=[sha(d) for d in files.values()]).exists()
    store = get_blob_store()
    assert store.head(blob_key(sha(files["complete.jsonl"]))) is None
    # The repository is untouched: the same push, sent whole, becomes v1.
    whole = requests.post(
        f"{hub['api']}/repos/{repo}/versions",
        files=requests_files(files),
        headers=hub["auth"],
        timeout=60,
    )
    assert whole.status_code == 201, whole.text
    assert whole.json()["label"] == "v1"


def test_the_same_version_pushed_by_two_clients_at_once_is_stored_once(hub):
    """Two clients (say a CI retry and a person) push identical files at the same moment:
    one creates the version, the other is told it already exists; nothing is doubled."""
    repo = create_repo(hub, "twice", "dataset")
    files = {"train.jsonl": f'{{"run": "{uuid.uuid4()}"}}\n'.encode() * 1000}
    start = threading.Barrier(2)

    def push(_: int) -> requests.Response:
        with requests.Session() as session:  # one connection per client
            start.wait(timeout=30)
            return session.post(
                f"{hub['api']}/repos/{repo}/versions",
                files=requests_files(files),
                headers=hub["auth"],
                timeout=60,
            )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(push, range(2)))
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    assert {a.json()["label"] for a in answers} == {"v1"}
    assert {a.json()["commit_id"] for a in answers} == {answers[0].json()["commit_id"]}
    assert Version.objects.filter(repository__name="twice").count() == 1
    assert Blob.objects.filter(sha256=sha(files["train.jsonl"])).count() == 1
