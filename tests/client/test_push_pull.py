"""Push and pull round trips through the CLI and the Python API, against a live hub.

Adapter versions may be validated by a worker while these run (which can rewrite their
adapter_config.json), so byte-for-byte and cache-reuse checks use datasets and weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.client.conftest import Hub, set_valid, write_files
from tests.factories import adapter_files, base_model_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_dataset_round_trip_cache_reuse_and_dedupe(hub: Hub) -> None:
    rows = b"".join(b'{"q": "select %d"}\n' % i for i in range(20_000))
    files = {"train.jsonl": rows, "README.md": b"# SQL pairs\n", "eval/dev.jsonl": rows[:999]}
    folder = write_files(hub.tmp / "ds", files)
    pushed = hub.cli_json("push", str(folder), "alice/sql-data", "--kind", "dataset", "-m", "v1")
    assert pushed["label"] == "v1"
    assert pushed["status"] == "valid"  # datasets need no validation
    assert pushed["uploaded_files"] == 3
    assert pushed["url"] == f"{hub.url}/alice/sql-data/v/v1"
    assert pushed["api_url"] == f"{hub.url}/api/v1/repos/alice/sql-data/versions/v1"

    out = hub.tmp / "out"
    pulled = hub.cli_json("pull", "alice/sql-data@v1", "-o", str(out))
    assert pulled["stats"]["bytes_downloaded"] == sum(len(b) for b in files.values())
    assert pulled["stats"]["files_downloaded"] == 3
    assert pulled["path"] == str(out)
    for path, content in files.items():
        assert (out / path).read_bytes() == content
        # The folder is made of hard links into the content-addressed cache.
        assert os.path.samefile(out / path, hub.cache / "blobs" / _sha(content))

    # A second pull transfers nothing; the plain output is the folder, without bars.
    second = hub.cli_json("pull", "alice/sql-data")
    assert second["stats"]["bytes_downloaded"] == 0
    assert second["stats"]["files_cached"] == 3
    assert second["label"] == "v1"
    plain = hub.cli("pull", "alice/sql-data@v1")
    assert plain.returncode == 0
    assert plain.stdout.strip() == second["path"]
    assert (Path(second["path"]) / "eval" / "dev.jsonl").read_bytes() == rows[:999]
    assert "%|" not in plain.stderr
    assert "from cache" in plain.stderr
    assert "from cache" not in hub.cli("pull", "alice/sql-data@v1", "-q").stderr

    # Pushing the same folder again repeats v1 and uploads nothing.
    again = hub.cli_json("push", str(folder), "alice/sql-data", "--kind", "dataset", "-m", "v1")
    assert again["label"] == "v1"
    assert (again["uploaded_files"], again["reused_files"], again["bytes_uploaded"]) == (0, 3, 0)

    # Another repository with the same files: nothing is uploaded or downloaded again.
    copy = hub.cli_json("push", str(folder), "alice/sql-data-copy", "--kind", "dataset")
    assert copy["uploaded_files"] == 0
    assert copy["created_repo"] is True
    assert hub.cli_json("pull", "alice/sql-data-copy")["stats"]["bytes_downloaded"] == 0

    # A changed file makes v2; only that file travels, both ways.
    (folder / "README.md").write_bytes(b"# SQL pairs, v2\n")
    v2 = hub.cli_json("push", str(folder), "alice/sql-data", "--kind", "dataset", "-m", "v2")
    assert (v2["label"], v2["uploaded_files"], v2["reused_files"]) == ("v2", 1, 2)
    pulled_v2 = hub.cli_json("pull", "alice/sql-data")
    assert pulled_v2["label"] == "v2"
    assert pulled_v2["stats"]["bytes_downloaded"] == len(b"# SQL pairs, v2\n")

    versions = hub.cli_json("versions", "alice/sql-data")
    assert [v["label"] for v in versions] == ["v2", "v1"]
    listed = hub.cli_json("files", "alice/sql-data@v1")
    assert {f["path"]: f["sha256"] for f in listed} == {p: _sha(c) for p, c in files.items()}
    table = hub.cli("versions", "alice/sql-data")
    assert table.stdout.splitlines()[0].split()[:3] == ["VERSION", "STATUS", "SIZE"]


def test_adapter_push_with_lineage_and_reading_commands(hub: Hub) -> None:
    base = write_files(hub.tmp / "base", base_model_files())
    pushed = hub.cli_json("push", str(base), "alice/tiny-base", "--kind", "base_model")
    assert pushed["created_repo"] is True
    set_valid("alice/tiny-base")

    files = adapter_files(base="alice/tiny-base")
    folder = write_files(hub.tmp / "adapter", files)
    # Files the hub refuses are left out with a note, not sent; hidden files are ignored.
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / ".hidden").write_text("x")
    (folder / "optimizer.pt").write_bytes(b"pickle")
    result = hub.cli(
        "push",
        str(folder),
        "alice/sql-lora",
        "--base",
        "alice/tiny-base",
        "-m",
        "first adapter",
        "--dataset",
        "https://example.com/data.jsonl",
        "--training-params",
        json.dumps({"lr": 1e-4, "epochs": 2}),
        "--exclude",
        "optimizer.pt",
    )
    assert result.returncode == 0, result.stderr
    assert "Pushed alice/sql-lora@v1 (pending)" in result.stdout
    assert f"url: {hub.url}/alice/sql-lora/v/v1" in result.stdout
    assert "skipped training_args.bin: pickle-based format" in result.stderr
    assert "optimizer.pt" not in result.stderr  # excluded on purpose: no note
    assert hub.token not in result.stdout + result.stderr

    version = hub.client().version("alice/sql-lora@v1")
    assert version["message"] == "first adapter"
    assert version["metadata"]["training_params"] == {"lr": 1e-4, "epochs": 2}
    assert {f["path"] for f in version["files"]} == set(files)
    assert {e["kind"] for e in version["lineage"]} == {"adapter_of", "trained_on"}

    out = hub.tmp / "out"
    pulled = hub.cli_json("pull", "alice/sql-lora@v1", "-o", str(out), "--copy")
    weights = files["adapter_model.safetensors"]
    assert (out / "adapter_model.safetensors").read_bytes() == weights
    assert not os.path.samefile(
        out / "adapter_model.safetensors", hub.cache / "blobs" / _sha(weights)
    )
    for entry in pulled["files"]:
        assert _sha((out / entry["path"]).read_bytes()) == entry["sha256"]
    assert not (out / "training_args.bin").exists()

    set_valid("alice/sql-lora")
    info = hub.cli_json("info", "alice/sql-lora")
    assert info["base_model"] == "alice/tiny-base"
    assert info["main"]["label"] == "v1"
    readable = hub.cli("info", "alice/sql-lora").stdout
    assert "base model:  alice/tiny-base" in readable

    listed = hub.cli_json("ls", "--kind", "adapter", "--base", "alice/tiny-base")
    assert [r["id"] for r in listed] == ["alice/sql-lora"]
    assert [r["id"] for r in hub.cli_json("search", "sql", "--status", "valid")] == [
        "alice/sql-lora"
    ]
    assert hub.cli_json("ls", "--owner", "nobody") == []
    assert [r["id"] for r in hub.cli_json("ls", "--sort", "name", "--limit", "1")] == [
        "alice/sql-lora"
    ]
    table = hub.cli("ls")
    assert "alice/tiny-base" in table.stdout
    assert table.stdout.startswith("REPO")

    tree = hub.cli("lineage", "alice/sql-lora@v1")
    assert tree.returncode == 0, tree.stderr
    assert "alice/sql-lora@v1 (adapter, valid)" in tree.stdout
    assert "adapter_of: alice/tiny-base@v1 (base_model, valid)" in tree.stdout
    assert "trained_on: https://example.com/data.jsonl" in tree.stdout
    assert "Stack (apply in order): alice/tiny-base@v1 -> alice/sql-lora@v1" in tree.stdout
    upward = hub.cli("lineage", "alice/tiny-base@v1").stdout
    assert "Built on this version:" in upward
    assert "adapter_of: alice/sql-lora@v1" in upward

    jobs = hub.cli_json("jobs")
    assert {j["kind"] for j in jobs} >= {"validate", "manifest"}
    job = hub.cli_json("jobs", jobs[0]["id"])
    assert job["id"] == jobs[0]["id"]


def test_python_api(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    import strata

    monkeypatch.setenv("STRATA_ENDPOINT", hub.url)
    monkeypatch.setenv("STRATA_TOKEN", hub.token)
    data = b"".join(b'{"text": "row %d"}\n' % i for i in range(1000))
    folder = write_files(hub.tmp / "ds", {"train.jsonl": data})
    result = strata.push(folder, "alice/api-data", kind="dataset", message="rows", private=True)
    assert (result.label, result.status, result.created_repo) == ("v1", "valid", True)
    assert strata.info("alice/api-data")["visibility"] == "private"

    path = strata.snapshot("alice/api-data")  # main
    assert (path / "train.jsonl").read_bytes() == data
    assert strata.snapshot("alice/api-data@v1") == path
    assert strata.files("alice/api-data@v1") == [
        {"path": "train.jsonl", "size": len(data), "sha256": _sha(data), "uploaded_sha256": None}
    ]
    assert strata.whoami()["username"] == "alice"
    assert [r["id"] for r in strata.list_repos(owner="alice")] == ["alice/api-data"]
    assert strata.versions("alice/api-data")[0]["label"] == "v1"

    with pytest.raises(strata.NotFoundError) as missing:
        strata.pull("alice/api-data@v7")
    assert missing.value.code == "revision_not_found"
    assert missing.value.exit_code == 4
    with pytest.raises(strata.UsageError):
        strata.pull("no-namespace")
