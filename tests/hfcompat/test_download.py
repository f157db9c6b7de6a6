"""Pulling through the Hub protocol with the real huggingface_hub client."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

from hub.hfcompat import revisions
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.models import Repository, Version
from hub.registry.storage import LocalBlobStore, get_blob_store
from tests.factories import adapter_files, base_model_files
from tests.hfcompat.conftest import Hub, make_repo, publish, publish_merged

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def lora(hub: Hub) -> dict[str, Any]:
    """``alice/lora``: v1 (alias ``stable``), v2 (= main) with nested files, v1-merged."""
    base = make_repo(hub.owner, "tiny-base", Repository.Kind.BASE_MODEL)
    publish(base, base_model_files())
    repo = make_repo(hub.owner, "lora", Repository.Kind.ADAPTER)
    meta = {"base_model": "alice/tiny-base"}
    v1_files = adapter_files(seed=1, base="alice/tiny-base")
    v1 = publish(repo, v1_files, meta={**meta, "message": "first"})
    v2_files = {
        **adapter_files(seed=2, base="alice/tiny-base"),
        "docs/notes.txt": b"notes\n",
        "docs/deep/more.txt": b"more\n",
    }
    v2 = publish(repo, v2_files, meta={**meta, "message": "second"})
    services.alias_set(actor=Actor(user=hub.owner), repository=repo, name="stable", version=v1)
    merged_files = base_model_files(seed=7)
    merged = publish_merged(v1, merged_files)
    return {
        "repo": repo,
        "v1": v1,
        "v2": v2,
        "merged": merged,
        "v1_files": v1_files,
        "v2_files": v2_files,
        "merged_files": merged_files,
    }


DOWNLOADS = """
import hashlib
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

api = HfApi()
out = {"files": {}, "snapshots": {}}
for rev in ("v1", "stable", ARGS["v2"], "main", "v1-merged"):
    name = "model.safetensors" if rev.endswith("merged") else "adapter_model.safetensors"
    path = hf_hub_download("alice/lora", name, revision=rev)
    out["files"][rev] = [digest(path), Path(path).parent.name]
for rev in ("v2", "stable", ARGS["v1"]):
    folder = Path(snapshot_download("alice/lora", revision=rev))
    out["snapshots"][rev] = {
        str(p.relative_to(folder)): digest(p) for p in folder.rglob("*") if p.is_file()
    }
info = api.model_info("alice/lora")
detailed = api.model_info("alice/lora", revision="v1", files_metadata=True)
out["info"] = {
    "id": info.id,
    "sha": info.sha,
    "private": info.private,
    "last_modified": info.last_modified.isoformat(),
    "siblings": sorted(s.rfilename for s in info.siblings),
    "v1_sha": detailed.sha,
    "v1_lfs": {s.rfilename: [s.size, s.lfs.sha256] for s in detailed.siblings},
}
out["resolved"] = api.resolve_revision("alice/lora", revision="stable").resolved
out["list_files"] = api.list_repo_files("alice/lora", revision="v2")
out["docs"] = [
    [type(e).__name__, e.path] for e in api.list_repo_tree("alice/lora", "docs", revision="v2")
]
out["expanded"] = {
    e.path: e.last_commit.oid
    for e in api.list_repo_tree("alice/lora", revision="v2", recursive=True, expand=True)
}
refs = api.list_repo_refs("alice/lora")
out["refs"] = {
    "branches": [[b.name, b.target_commit] for b in refs.branches],
    "tags": sorted(t.name for t in refs.tags),
}
out["commits"] = [c.commit_id for c in api.list_repo_commits("alice/lora", revision="v2")]
out["readme_exists"] = api.file_exists("alice/lora", "README.md")
out["config_exists"] = api.file_exists("alice/lora", "adapter_config.json", revision="v1")
out["whoami"] = api.whoami()["name"]
emit(out)
"""


def test_hf_hub_download_and_snapshot_by_label_alias_and_commit(
    hub: Hub, lora: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pages: the client must follow the tree's Link: rel="next" headers.
    monkeypatch.setattr(revisions, "PAGE_SIZE", 2)
    v1: Version = lora["v1"]
    v2: Version = lora["v2"]
    merged: Version = lora["merged"]
    out = hub.run(DOWNLOADS, args={"v1": v1.commit_id, "v2": v2.commit_id})

    w1 = sha(lora["v1_files"]["adapter_model.safetensors"])
    w2 = sha(lora["v2_files"]["adapter_model.safetensors"])
    assert out["files"] == {
        "v1": [w1, v1.commit_id],
        "stable": [w1, v1.commit_id],
        v2.commit_id: [w2, v2.commit_id],
        "main": [w2, v2.commit_id],
        "v1-merged": [sha(lora["merged_files"]["model.safetensors"]), merged.commit_id],
    }
    assert out["snapshots"]["v2"] == {p: sha(d) for p, d in lora["v2_files"].items()}
    assert out["snapshots"][v1.commit_id] == {p: sha(d) for p, d in lora["v1_files"].items()}
    assert out["snapshots"]["stable"] == out["snapshots"][v1.commit_id]

    info = out["info"]
    assert info["id"] == "alice/lora"
    assert info["sha"] == v2.commit_id
    assert info["private"] is False
    assert info["siblings"] == sorted(lora["v2_files"])
    assert info["v1_sha"] == v1.commit_id
    assert info["v1_lfs"] == {p: [len(d), sha(d)] for p, d in lora["v1_files"].items()}
    assert out["resolved"] == v1.commit_id
    assert sorted(out["list_files"]) == sorted(lora["v2_files"])
    assert out["docs"] == [["RepoFolder", "docs/deep"], ["RepoFile", "docs/notes.txt"]]
    # The config did not change between v1 and v2 only if the bytes are equal; the notes
    # appeared in v2. lastCommit names the version that last changed each file.
    assert out["expanded"]["docs/notes.txt"] == v2.commit_id
    same_config = lora["v1_files"]["adapter_config.json"] == lora["v2_files"]["adapter_config.json"]
    assert out["expanded"]["adapter_config.json"] == (v1 if same_config else v2).commit_id
    assert out["refs"]["branches"] == [["main", v2.commit_id]]
    assert out["refs"]["tags"] == ["stable", "v1", "v1-merged", "v2"]
    assert out["commits"] == [v2.commit_id, v1.commit_id]
    assert out["readme_exists"] is False
    assert out["config_exists"] is True
    assert out["whoami"] == "alice"


ERRORS = """
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
)

api = HfApi()
attempts = {
    "missing_repo": lambda: hf_hub_download("alice/missing", "adapter_config.json"),
    "missing_revision": lambda: hf_hub_download("alice/lora", "adapter_config.json", revision="v9"),
    "missing_file": lambda: hf_hub_download("alice/lora", "nope.safetensors"),
    "info_missing_repo": lambda: api.model_info("alice/missing"),
    "info_missing_revision": lambda: api.model_info("alice/lora", revision="nope"),
    "tree_missing_folder": lambda: list(api.list_repo_tree("alice/lora", "nowhere")),
    "model_is_not_a_dataset": lambda: api.dataset_info("alice/lora"),
}
out = {}
for name, attempt in attempts.items():
    try:
        attempt()
        out[name] = "no error"
    except Exception as exc:
        kinds = (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)
        out[name] = next((k.__name__ for k in kinds if isinstance(exc, k)), repr(exc))
emit(out)
"""


def test_errors_map_to_the_client_exceptions(hub: Hub, lora: dict[str, Any]) -> None:
    assert hub.run(ERRORS) == {
        "missing_repo": "RepositoryNotFoundError",
        "missing_revision": "RevisionNotFoundError",
        "missing_file": "EntryNotFoundError",
        "info_missing_repo": "RepositoryNotFoundError",
        "info_missing_revision": "RevisionNotFoundError",
        "tree_missing_folder": "EntryNotFoundError",
        "model_is_not_a_dataset": "RepositoryNotFoundError",
    }


def test_resolve_headers_redirects_and_download_counts(hub: Hub, lora: dict[str, Any]) -> None:
    v2: Version = lora["v2"]
    weights = lora["v2_files"]["adapter_model.safetensors"]
    url = f"{hub.endpoint}/alice/lora/resolve/main/adapter_model.safetensors"
    head = requests.head(url, allow_redirects=False, timeout=30)
    on_s3 = not isinstance(get_blob_store(), LocalBlobStore)
    assert head.status_code == (302 if on_s3 else 200)
    # The metadata rides on the redirect itself: the client does not follow it on HEAD.
    assert head.headers["X-Repo-Commit"] == v2.commit_id
    assert head.headers["X-Linked-Etag"] == head.headers["ETag"] == f'"{sha(weights)}"'
    assert head.headers["X-Linked-Size"] == str(len(weights))
    assert head.headers["Accept-Ranges"] == "bytes"
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]
    assert "Link" not in head.headers
    if on_s3:
        assert not head.headers["Location"].startswith(hub.url)
        assert requests.get(head.headers["Location"], timeout=30).content == weights

    missing = requests.head(url.replace("adapter_model", "nothing"), timeout=30)
    assert missing.status_code == 404
    assert missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == v2.commit_id
    assert (
        requests.head(url.replace("/main/", "/v7/"), timeout=30).headers["X-Error-Code"]
        == "RevisionNotFound"
    )
    assert (
        requests.head(url.replace("/lora/", "/nope/"), timeout=30).headers["X-Error-Code"]
        == "RepoNotFound"
    )
    bad_token = requests.get(
        f"{hub.endpoint}/api/models/alice/lora",
        headers={"Authorization": "Bearer strata_wrong"},
        timeout=30,
    )
    assert bad_token.status_code == 401
    assert bad_token.headers["X-Error-Message"] == "Invalid credentials in Authorization header"

    info = requests.get(f"{hub.endpoint}/api/models/alice/lora", timeout=30).json()
    assert info["lastModified"].endswith("Z")
    assert info["createdAt"].endswith("Z")
    assert info["strata"] == {
        "kind": "adapter",
        "version": "v2",
        "status": "valid",
        "baseModel": "alice/tiny-base@v1",
    }
    tree = requests.get(
        f"{hub.endpoint}/api/models/alice/lora/tree/v2",
        params={"recursive": "true", "limit": "2"},
        timeout=30,
    )
    assert 'rel="next"' in tree.headers["Link"]
    assert len(tree.json()) == 2
    assert not any("xetHash" in entry for entry in tree.json())

    # A flagged HEAD (huggingface_hub, before each download) and a plain GET count; the
    # flagged GET after a flagged HEAD, ranged GETs and non-weight files do not.
    repo: Repository = lora["repo"]
    before = Repository.objects.get(pk=repo.pk).downloads
    counter = {"X-HF-Download-Counter": "1"}
    requests.head(url, headers=counter, timeout=30)
    requests.get(url, allow_redirects=False, timeout=30)
    requests.get(url, headers=counter, allow_redirects=False, timeout=30)
    requests.get(url, headers={"Range": "bytes=0-9"}, allow_redirects=False, timeout=30)
    requests.head(
        url.replace("adapter_model.safetensors", "adapter_config.json"), headers=counter, timeout=30
    )
    assert Repository.objects.get(pk=repo.pk).downloads == before + 2
    assert Version.objects.get(pk=v2.pk).downloads == 2


def test_small_routes(hub: Hub, lora: dict[str, Any]) -> None:
    checked = requests.post(
        f"{hub.endpoint}/api/validate-yaml",
        json={"content": "---\nlicense: mit\n---\n# card", "repoType": "model"},
        timeout=30,
    )
    assert checked.json() == {"errors": [], "warnings": []}
    broken = requests.post(
        f"{hub.endpoint}/api/validate-yaml", json={"content": "---\na: [\n---\n"}, timeout=30
    )
    assert broken.status_code == 400
    assert broken.json()["errors"]
    assert requests.get(f"{hub.endpoint}/api/agent-harnesses", timeout=30).json() == {
        "standardEnvVars": [],
        "harnesses": {},
    }
    whoami = requests.get(
        f"{hub.endpoint}/api/whoami-v2",
        headers={"Authorization": f"Bearer {hub.token}"},
        timeout=30,
    ).json()
    assert whoami["name"] == "alice"
    assert whoami["auth"]["accessToken"]["role"] == "write"
    assert requests.get(f"{hub.endpoint}/api/whoami-v2", timeout=30).status_code == 401
    paths = requests.post(
        f"{hub.endpoint}/api/models/alice/lora/paths-info/v2",
        data={"paths": ["docs", "adapter_config.json", "missing.txt"], "expand": "true"},
        timeout=30,
    ).json()
    assert [(e["type"], e["path"]) for e in paths] == [
        ("directory", "docs"),
        ("file", "adapter_config.json"),
    ]
    assert all(e["lastCommit"]["date"].endswith("Z") for e in paths)
    wrong_method = requests.delete(f"{hub.endpoint}/api/models/alice/lora", timeout=30)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["X-Error-Code"]


PRIVATE = """
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError

out = {}
for who, token in (("anonymous", False), ("outsider", ARGS["outsider"]), ("owner", ARGS["owner"])):
    try:
        info = HfApi(token=token).model_info("alice/secret")
        path = hf_hub_download("alice/secret", "adapter_config.json", token=token)
        out[who] = ["ok", info.private, open(path).read()[:1]]
    except RepositoryNotFoundError as exc:
        out[who] = ["RepositoryNotFoundError", exc.response.headers.get("X-Error-Code")]
emit(out)
"""


def test_private_repositories_are_invisible_to_others(hub: Hub) -> None:
    base = make_repo(hub.owner, "tiny-base", Repository.Kind.BASE_MODEL)
    publish(base, base_model_files())
    secret = make_repo(hub.owner, "secret", Repository.Kind.ADAPTER, visibility="private")
    publish(secret, adapter_files(base="alice/tiny-base"), meta={"base_model": "alice/tiny-base"})
    out = hub.run(PRIVATE, token=None, args={"owner": hub.token, "outsider": hub.outsider_token})
    assert out == {
        "anonymous": ["RepositoryNotFoundError", "RepoNotFound"],
        "outsider": ["RepositoryNotFoundError", "RepoNotFound"],
        "owner": ["ok", True, "{"],
    }


LOCAL = """
import hashlib
from huggingface_hub import hf_hub_download
path = hf_hub_download("alice/data", "train.jsonl", repo_type="dataset", revision="v1")
emit(hashlib.sha256(open(path, "rb").read()).hexdigest())
"""


def test_local_backend_streams_with_ranges(hub: Hub, settings: Any, tmp_path: Any) -> None:
    settings.STORAGE_BACKEND = "local"
    settings.BLOB_DIR = tmp_path / "blobs"
    get_blob_store.cache_clear()
    repo = make_repo(hub.owner, "data", Repository.Kind.DATASET)
    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(5000))
    publish(repo, {"train.jsonl": data}, valid=False)  # datasets are valid at once
    url = f"{hub.endpoint}/datasets/alice/data/resolve/main/train.jsonl"
    head = requests.head(url, timeout=30)
    assert head.status_code == 200
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(data))
    ranged = requests.get(url, headers={"Range": "bytes=100-"}, timeout=30)
    assert ranged.status_code == 206
    assert ranged.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert ranged.content == data[100:]
    assert hub.run(LOCAL) == sha(data)
