"""Stack pulls (every adapter in order, plus stack.json) and offline mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.client.conftest import Hub, set_valid, write_files
from tests.factories import adapter_files, base_model_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _push_stack(hub: Hub) -> dict[str, dict[str, bytes]]:
    base = base_model_files()
    write_files(hub.tmp / "base", base)
    assert (
        hub.cli("push", str(hub.tmp / "base"), "alice/tiny-base", "--kind", "base_model").returncode
        == 0
    )
    set_valid("alice/tiny-base")
    a = adapter_files(seed=11, base="alice/tiny-base")
    b = adapter_files(seed=12, rank=2, base="alice/tiny-base")
    write_files(hub.tmp / "a", a)
    write_files(hub.tmp / "b", b)
    pushed_a = hub.cli("push", str(hub.tmp / "a"), "alice/sql-a", "--base", "alice/tiny-base")
    assert pushed_a.returncode == 0, pushed_a.stderr
    set_valid("alice/sql-a")
    pushed_b = hub.cli(
        "push",
        str(hub.tmp / "b"),
        "alice/sql-b",
        "--base",
        "alice/tiny-base",
        "--base-revision",
        "v1",
        "--parent",
        "alice/sql-a@v1",
    )
    assert pushed_b.returncode == 0, pushed_b.stderr
    set_valid("alice/sql-b")
    return {"base": base, "a": a, "b": b}


def test_stack_pull_and_offline_mode(hub: Hub) -> None:
    files = _push_stack(hub)

    out = hub.tmp / "stack"
    pulled = hub.cli_json("pull", "alice/sql-b@v1", "--stack", "-o", str(out), "--include-base")
    assert pulled["manifest"] == str(out / "stack.json")
    manifest = json.loads((out / "stack.json").read_text())
    assert manifest["format"] == "strata.stack/1"
    assert manifest["root"] == "alice/sql-b@v1"
    assert manifest["base"]["repo"] == "alice/tiny-base"
    assert manifest["base"]["revision"] == "v1"
    assert manifest["base"]["path"] == "base"
    assert [(s["repo"], s["revision"], s["path"]) for s in manifest["adapters"]] == [
        ("alice/sql-a", "v1", "01-alice--sql-a"),
        ("alice/sql-b", "v1", "02-alice--sql-b"),
    ]
    weights = "adapter_model.safetensors"
    assert (out / "01-alice--sql-a" / weights).read_bytes() == files["a"][weights]
    assert (out / "02-alice--sql-b" / weights).read_bytes() == files["b"][weights]
    assert (out / "01-alice--sql-a" / "adapter_config.json").exists()
    base_weights = (out / "base" / "model.safetensors").read_bytes()
    assert base_weights == files["base"]["model.safetensors"]
    assert pulled["stats"]["files_downloaded"] == 6

    # Without -o the stack lives in the cache; stack.json then holds absolute paths.
    cached = hub.cli_json("pull", "alice/sql-b", "--stack")
    assert cached["stats"]["bytes_downloaded"] == 0
    in_cache = json.loads(Path(cached["manifest"]).read_text())
    first = Path(in_cache["adapters"][0]["path"])
    assert first.is_absolute()
    assert (first / weights).read_bytes() == files["a"][weights]
    assert in_cache["base"]["path"] is None  # not pulled this time

    # A dataset or base model has no stack.
    assert hub.cli("pull", "alice/tiny-base", "--stack").returncode == 2

    # Offline: the hub is unreachable and never asked; everything comes from the cache.
    dead = {"STRATA_ENDPOINT": "http://127.0.0.1:9", "STRATA_OFFLINE": "1"}
    out2 = hub.tmp / "offline-stack"
    offline = hub.cli_json("pull", "alice/sql-b@v1", "--stack", "-o", str(out2), **dead)
    assert offline["offline"] is True
    assert [a["path"] for a in offline["stack"]] == [
        str(out2 / "01-alice--sql-a"),
        str(out2 / "02-alice--sql-b"),
    ]
    assert (out2 / "02-alice--sql-b" / weights).read_bytes() == files["b"][weights]
    # Revisions seen online resolve offline: labels, commit ids, and the main alias pulled.
    single = hub.cli("pull", "alice/sql-a@v1", **dead)
    assert single.returncode == 0, single.stderr
    assert (Path(single.stdout.strip()) / weights).read_bytes() == files["a"][weights]
    commit = offline["stack"][0]["commit_id"]
    assert hub.cli("pull", f"alice/sql-a@{commit}", **dead).returncode == 0
    assert hub.cli_json("pull", "alice/sql-b", **dead)["label"] == "v1"
    listed = hub.cli_json(
        "files", "alice/sql-a@v1", "--offline", STRATA_ENDPOINT="http://127.0.0.1:9"
    )
    assert {f["path"] for f in listed} == set(files["a"])
    # What was never pulled is a clear miss (not found), not a network error.
    miss = hub.cli("pull", "alice/sql-a", "--json", **dead)
    assert miss.returncode == 4
    assert json.loads(miss.stdout)["error"]["code"] == "not_cached"
    assert hub.cli("push", str(hub.tmp / "a"), "alice/sql-a", **dead).returncode == 2

    # Online but the hub is down: a cached version is still served, with a warning.
    fallback = hub.cli(
        "pull", "alice/sql-a@v1", STRATA_ENDPOINT="http://127.0.0.1:9", STRATA_MAX_RETRIES="0"
    )
    assert fallback.returncode == 0, fallback.stderr
    assert "unreachable" in fallback.stderr
