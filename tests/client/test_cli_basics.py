"""Usage, login, auth failures and exit codes; retries and job requests against a stub hub."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Hub, write_files
from tests.factories import adapter_files, make_token, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_strata(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strata", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=False)
def test_help_version_and_usage_errors() -> None:
    helped = run_strata("--help")
    assert helped.returncode == 0
    for command in ("login", "push", "pull", "lineage", "merge", "compose", "benchmark", "jobs"):
        assert command in helped.stdout
    assert run_strata("--version").stdout.startswith("strata-client ")
    missing = run_strata("pull")
    assert missing.returncode == 2
    assert "required: ref" in missing.stderr
    bad = run_strata("pull", "not-a-reference", "--json")
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_reference"
    assert run_strata("ls", "--sort", "sideways").returncode == 2


def test_login_whoami_logout(hub: Hub) -> None:
    config = hub.config / "config.toml"
    # A bad token is refused and nothing is stored.
    refused = hub.cli("login", "--token", "strata_not-a-real-token", STRATA_TOKEN=None)
    assert refused.returncode == 3
    assert "[invalid_token]" in refused.stderr
    assert "strata_not-a-real-token" not in refused.stdout + refused.stderr
    assert not config.exists()

    logged = hub.cli("login", "--token", hub.token, STRATA_TOKEN=None)
    assert logged.returncode == 0, logged.stderr
    assert "as alice" in logged.stdout
    assert hub.token not in logged.stdout + logged.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert hub.token in config.read_text()

    # The stored token is used when STRATA_TOKEN is not set.
    me = hub.cli_json("whoami", STRATA_TOKEN=None)
    assert me["username"] == "alice"
    assert me["endpoint"] == hub.url
    assert "token" not in me

    # From stdin, for scripts that must not put the token on a command line.
    again = hub.cli("login", "--token", "-", input=hub.token + "\n", STRATA_TOKEN=None)
    assert again.returncode == 0, again.stderr

    out = hub.cli("logout", STRATA_TOKEN=None)
    assert out.returncode == 0
    assert hub.token not in config.read_text()
    gone = hub.cli("whoami", STRATA_TOKEN=None)
    assert gone.returncode == 3
    assert "strata login" in gone.stderr


def test_exit_codes_and_error_messages(hub: Hub) -> None:
    bad = hub.cli("whoami", "--json", STRATA_TOKEN="strata_wrong")
    assert bad.returncode == 3
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_token"

    missing = hub.cli("info", "alice/nothing-here")
    assert missing.returncode == 4
    assert "[repo_not_found]" in missing.stderr or "[not_found]" in missing.stderr

    folder = write_files(hub.tmp / "adapter", adapter_files())
    # An adapter must name its base: the hub refuses the push (validation, 5).
    refused = hub.cli("push", str(folder), "alice/no-base", "--json")
    assert refused.returncode == 5
    assert json.loads(refused.stdout)["error"]["code"] == "base_required"
    # A reference to nothing is refused too.
    dangling = hub.cli("push", str(folder), "alice/no-base", "--base", "alice/ghost")
    assert dangling.returncode == 5
    assert "[reference_not_found]" in dangling.stderr

    # A revision that does not exist.
    data = write_files(hub.tmp / "data", {"rows.jsonl": b'{"a": 1}\n'})
    assert hub.cli("push", str(data), "alice/rows", "--kind", "dataset").returncode == 0
    nope = hub.cli("pull", "alice/rows@v9", "--json")
    assert nope.returncode == 4
    assert json.loads(nope.stdout)["error"]["code"] == "revision_not_found"

    # Someone else's private repository does not exist for alice; a read token cannot push.
    bob = make_user("bob")
    bob_token = make_token(bob)
    private = write_files(hub.tmp / "private", {"secret.jsonl": b"{}\n"})
    pushed = hub.cli(
        "push", str(private), "bob/secret", "--kind", "dataset", "--private", STRATA_TOKEN=bob_token
    )
    assert pushed.returncode == 0, pushed.stderr
    assert hub.cli("pull", "bob/secret").returncode == 4
    assert hub.cli("pull", "bob/secret", STRATA_TOKEN=bob_token).returncode == 0
    reader = make_token(make_user("carol"), scope="read")
    denied = hub.cli("push", str(data), "carol/rows", "--kind", "dataset", STRATA_TOKEN=reader)
    assert denied.returncode == 3

    # Nothing listening: a network error, after the configured retries.
    started = time.monotonic()
    down = hub.cli(
        "pull", "alice/rows", STRATA_ENDPOINT="http://127.0.0.1:9", STRATA_MAX_RETRIES="1"
    )
    assert down.returncode == 6
    assert "Could not reach http://127.0.0.1:9" in down.stderr
    assert time.monotonic() - started < 30

    # No accepted file in the folder: a usage error before anything is sent.
    junk = write_files(hub.tmp / "junk", {"weights.bin": b"pickle"})
    assert hub.cli("push", str(junk), "alice/junk").returncode == 2


# --- a stub hub: retries, job requests, merged pulls -----------------------------------


class Stub:
    """A scripted hub: answers from ``routes``, records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.routes: dict[tuple[str, str], list[tuple[int, dict[str, str], Any]]] = {}
        self.files: dict[str, bytes] = {}

    def add(self, method: str, path: str, status: int, body: Any = None, **headers: str) -> None:
        self.routes.setdefault((method, path), []).append((status, headers, body))

    def answer(self, method: str, path: str) -> tuple[int, dict[str, str], Any]:
        queue = self.routes.get((method, path))
        if not queue:
            return 404, {}, {"error": {"code": "not_found", "message": f"{path} not stubbed"}}
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = self.path.split("?", 1)[0]
            state.requests.append((method, path, dict(self.headers), body))
            if path.startswith("/blob/"):
                data = state.files[path]
                start, end = 0, len(data)
                status = 200
                if self.headers.get("Range"):
                    first, _, last = self.headers["Range"].removeprefix("bytes=").partition("-")
                    start, end, status = int(first), int(last) + 1 if last else len(data), 206
                self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                self.wfile.write(data[start:end])
                return
            status, headers, payload = state.answer(method, path)
            encoded = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=False)
def test_retries_honour_retry_after_and_give_up(stub: tuple[Stub, str], tmp_path: Path) -> None:
    from strata import Client, NetworkError

    state, url = stub
    state.add(
        "GET", "/api/v1/whoami", 503, {"error": {"code": "service_unavailable"}}, Retry_After="0"
    )
    state.add("GET", "/api/v1/whoami", 429, {"error": {"code": "rate_limited"}}, Retry_After="1")
    state.add("GET", "/api/v1/whoami", 200, {"username": "stub"})
    client = Client(url, "strata_stub", cache_dir=tmp_path, progress=False, max_retries=3)
    started = time.monotonic()
    assert client.whoami() == {"username": "stub"}
    assert time.monotonic() - started >= 1.0  # waited as Retry-After said
    assert [r[1] for r in state.requests] == ["/api/v1/whoami"] * 3
    assert state.requests[0][2]["Authorization"] == "Bearer strata_stub"

    state.add(
        "GET", "/api/v1/jobs", 500, {"error": {"code": "boom", "message": "down"}}, Retry_After="0"
    )
    with pytest.raises(NetworkError) as caught:
        client.jobs()
    assert caught.value.exit_code == 6
    assert caught.value.code == "boom"
    assert sum(1 for r in state.requests if r[1] == "/api/v1/jobs") == 4


def _job(state: str, **extra: Any) -> dict[str, Any]:
    return {"id": "11111111-2222-3333-4444-555555555555", "kind": "merge", "state": state, **extra}


@pytest.mark.django_db(transaction=False)
def test_job_requests_and_merged_pull(stub: tuple[Stub, str], tmp_path: Path) -> None:
    from strata import Client, JobFailed, NotFoundError

    state, url = stub
    job_path = "/api/v1/jobs/11111111-2222-3333-4444-555555555555"
    client = Client(url, "strata_stub", cache_dir=tmp_path / "cache", progress=False)

    # merge: 202 with a job, followed until it succeeds.
    state.add("POST", "/api/v1/repos/acme/sql/versions/v3/merge", 202, {"job": _job("queued")})
    state.add("GET", job_path, 200, _job("running", log_tail="merging layer 1"))
    state.add("GET", job_path, 200, _job("succeeded", result={"version": "v3-merged"}))
    answer = client.merge("acme/sql@v3", dtype="bfloat16", wait=True)
    assert answer["version"] == "v3-merged"
    assert answer["job"]["state"] == "succeeded"
    merge_request = next(r for r in state.requests if r[0] == "POST")
    assert merge_request[3] == {"dtype": "bf16"}

    # compose and benchmark send the documented bodies.
    state.add("POST", "/api/v1/compose", 202, {"job": _job("queued", kind="compose")})
    client.compose([("acme/a@v1", 0.7), ("acme/b", 0.3)], "acme/ab", method="svd", rank=8)
    compose_body = next(r for r in state.requests if r[1] == "/api/v1/compose")[3]
    assert compose_body == {
        "inputs": [
            {"repo": "acme/a", "revision": "v1", "weight": 0.7},
            {"repo": "acme/b", "revision": "main", "weight": 0.3},
        ],
        "method": "svd",
        "target": "acme/ab",
        "rank": 8,
    }
    state.add("POST", "/api/v1/repos/acme/sql/versions/v3/benchmark", 202, {"job": _job("queued")})
    client.benchmark("acme/sql@v3", eval_sets=["acme/evals@v1"])
    assert state.requests[-1][3] == {"eval_sets": ["acme/evals@v1"]}

    # A failed job is an error with the job's code.
    state.add("POST", "/api/v1/repos/acme/bad/versions/v1/merge", 202, {"job": _job("queued")})
    state.routes[("GET", job_path)] = [
        (200, {}, _job("failed", error_code="version_not_valid", error_message="v1 is invalid"))
    ]
    with pytest.raises(JobFailed) as failed:
        client.merge("acme/bad@v1", wait=True)
    assert failed.value.code == "version_not_valid"

    # pull --merged: missing at first; requested only when allowed; then pulled.
    weights = b"merged weights " * 1000
    sha = hashlib.sha256(weights).hexdigest()
    commit = "c" * 40
    state.files[f"/blob/{sha}"] = weights
    state.add(
        "GET",
        "/api/v1/repos/acme/sql/versions/main",
        200,
        {"repo": "acme/sql", "label": "v3", "commit_id": "a" * 40, "status": "valid", "files": []},
    )
    state.add(
        "GET",
        "/api/v1/repos/acme/sql/versions/v3-merged",
        404,
        {"error": {"code": "revision_not_found", "message": "no"}},
    )
    with pytest.raises(NotFoundError) as missing:
        client.pull("acme/sql", merged=True)
    assert missing.value.code == "merged_missing"
    assert "strata merge acme/sql@v3" in missing.value.message

    merged_version = {
        "repo": "acme/sql",
        "label": "v3-merged",
        "commit_id": commit,
        "status": "valid",
        "files": [{"path": "model.safetensors", "size": len(weights), "sha256": sha}],
    }
    state.routes[("GET", "/api/v1/repos/acme/sql/versions/v3-merged")] = [
        (404, {}, {"error": {"code": "revision_not_found", "message": "no"}}),
        (200, {}, merged_version),
    ]
    state.routes[("GET", job_path)] = [
        (200, {}, _job("succeeded", result={"version": "v3-merged"}))
    ]
    state.add("POST", "/api/v1/repos/acme/sql/versions/v3/merge", 202, {"job": _job("queued")})
    state.add(
        "GET",
        f"/api/v1/repos/acme/sql/versions/{commit}/files/model.safetensors",
        302,
        None,
        Location=f"/blob/{sha}",
    )
    result = client.pull("acme/sql", merged=True, request_merge=True, output_dir=tmp_path / "out")
    assert result.version.label == "v3-merged"
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights
    # The bytes came from the storage URL without the token.
    blob_request = next(r for r in state.requests if r[1].startswith("/blob/"))
    assert "Authorization" not in blob_request[2]


@pytest.mark.django_db(transaction=False)
def test_corrupt_bytes_are_refused(stub: tuple[Stub, str], tmp_path: Path) -> None:
    from strata import Client, IntegrityError

    state, url = stub
    good, bad = b"right bytes " * 5000, b"wrong bytes " * 5000
    sha = hashlib.sha256(good).hexdigest()
    commit = "d" * 40
    state.files["/blob/tampered"] = bad
    state.add(
        "GET",
        "/api/v1/repos/acme/data/versions/v1",
        200,
        {
            "repo": "acme/data",
            "label": "v1",
            "commit_id": commit,
            "status": "valid",
            "files": [{"path": "rows.jsonl", "size": len(good), "sha256": sha}],
        },
    )
    state.add(
        "GET",
        f"/api/v1/repos/acme/data/versions/{commit}/files/rows.jsonl",
        302,
        None,
        Location="/blob/tampered",
    )
    cache = tmp_path / "cache"
    client = Client(url, None, cache_dir=cache, progress=False)
    with pytest.raises(IntegrityError) as caught:
        client.pull("acme/data@v1")
    assert caught.value.code == "sha256_mismatch"
    assert caught.value.exit_code == 1
    # Downloaded a second time before giving up; nothing unverified stays in the cache.
    assert sum(1 for r in state.requests if r[1] == "/blob/tampered") == 2
    assert not (cache / "blobs" / sha).exists()
    assert not (cache / "blobs" / f"{sha}.partial").exists()
    assert not (cache / "snapshots").exists()


@pytest.mark.django_db(transaction=False)
def test_a_file_replaced_after_listing_is_fetched_again(
    stub: tuple[Stub, str], tmp_path: Path
) -> None:
    """Validation may replace adapter_config.json of a published version in place."""
    from strata import Client

    state, url = stub
    old, new = b'{"r": 4}', b'{"r": 4, "base_model_name_or_path": "acme/base"}'
    commit = "e" * 40

    def listing(content: bytes) -> dict[str, Any]:
        entry = {"path": "adapter_config.json", "size": len(content)}
        entry["sha256"] = hashlib.sha256(content).hexdigest()
        return {
            "repo": "acme/a",
            "label": "v1",
            "commit_id": commit,
            "status": "valid",
            "files": [entry],
        }

    state.add("GET", "/api/v1/repos/acme/a/versions/v1", 200, listing(old))
    state.add("GET", f"/api/v1/repos/acme/a/versions/{commit}", 200, listing(new))
    state.files["/blob/config"] = new
    state.add(
        "GET",
        f"/api/v1/repos/acme/a/versions/{commit}/files/adapter_config.json",
        302,
        None,
        Location="/blob/config",
    )
    result = Client(url, None, cache_dir=tmp_path, progress=False).pull("acme/a@v1")
    assert (result.path / "adapter_config.json").read_bytes() == new
    assert result.version.files[0].sha256 == hashlib.sha256(new).hexdigest()
