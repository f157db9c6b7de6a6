"""Pushing through the Hub protocol: create_repo, upload_folder/file, LFS, tags, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hub.hfcompat import upload
from hub.registry.lineage import adapter_base
from hub.registry.models import Blob, Job, LineageEdge, Repository, UploadFile, Version
from hub.registry.storage import get_blob_store
from tests.factories import adapter_files, base_model_files
from tests.hfcompat.conftest import Hub, make_repo, publish

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LFS_UPLOAD = """
import hashlib
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download

api = HfApi()
url = api.create_repo("alice/corpus", repo_type="dataset")
again = api.create_repo("alice/corpus", repo_type="dataset", exist_ok=True)
first = api.upload_folder(folder_path=ARGS["folder"], repo_id="alice/corpus", repo_type="dataset")
# Nothing changed: the big file is skipped (same sha256), the README re-sent unchanged.
second = api.upload_folder(folder_path=ARGS["folder"], repo_id="alice/corpus", repo_type="dataset")
path = hf_hub_download("alice/corpus", "data/train.jsonl", repo_type="dataset", revision="main")
emit({
    "url": str(url),
    "again": str(again),
    "commit": first.oid,
    "second": second.oid,
    "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
    "snapshot": Path(path).parent.parent.name,
})
"""


def _jsonl(path: Path, size: int) -> str:
    """A dataset file of at least ``size`` bytes; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    with path.open("wb") as out:
        block = b"".join(
            json.dumps({"id": i, "text": f"sample {i} " + "lorem ipsum " * 8}).encode() + b"\n"
            for i in range(10_000)
        )
        while written < size:
            out.write(block)
            digest.update(block)
            written += len(block)
    return digest.hexdigest()


def test_upload_folder_sends_a_large_file_through_lfs(hub: Hub, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    sha = _jsonl(folder / "data" / "train.jsonl", 101 * 1024 * 1024)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# A corpus\n")
    # Inline ("regular"), but larger than DATA_UPLOAD_MAX_MEMORY_SIZE: the commit is streamed.
    extra = _jsonl(folder / "data" / "extra.jsonl", 6 * 1024 * 1024)
    out = hub.run(LFS_UPLOAD, args={"folder": str(folder)}, env={"HF_HUB_DISABLE_XET": "1"})

    assert out["url"] == out["again"] == f"{hub.endpoint}/datasets/alice/corpus"
    assert out["sha256"] == sha
    assert out["second"] == out["commit"]
    version = Version.objects.get(commit_id=out["commit"])
    assert version.label == "v1"
    assert version.status == Version.Status.VALID  # datasets need no checks
    stored = version.files.get(path="data/train.jsonl").blob
    assert stored.sha256 == sha
    assert version.files.get(path="data/extra.jsonl").blob.sha256 == extra
    assert stored.size == (folder / "data" / "train.jsonl").stat().st_size
    assert get_blob_store().head(stored.storage_key) is not None
    # It went up in parts (the Hub's multipart LFS convention), then was hashed here.
    staged = UploadFile.objects.get(path=sha, sha256=sha)
    assert staged.part_size > 0
    assert staged.size == stored.size


LOCAL_LFS = """
import hashlib
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download

api = HfApi()
api.create_repo("alice/shards", repo_type="dataset")
out = {}
for name in ("single.jsonl", "parts.jsonl"):
    info = api.upload_file(
        path_or_fileobj=ARGS[name], path_in_repo=name, repo_id="alice/shards", repo_type="dataset"
    )
    path = hf_hub_download("alice/shards", name, repo_type="dataset", revision=info.oid)
    out[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
emit(out)
"""


def test_lfs_on_the_local_backend_single_and_multipart(
    hub: Hub, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STORAGE_BACKEND = "local"
    settings.BLOB_DIR = tmp_path / "blobs"
    get_blob_store.cache_clear()
    # Small thresholds so small files take the LFS paths: one PUT, then four parts.
    monkeypatch.setattr(upload, "REGULAR_MAX_BYTES", 512 * 1024)
    settings.MULTIPART_THRESHOLD_BYTES = 2 * 1024 * 1024
    settings.MULTIPART_PART_BYTES = 1024 * 1024
    single = _jsonl(tmp_path / "single.jsonl", 1024 * 1024)
    parts = _jsonl(tmp_path / "parts.jsonl", 3 * 1024 * 1024)
    args = {name: str(tmp_path / name) for name in ("single.jsonl", "parts.jsonl")}
    out = hub.run(LOCAL_LFS, args=args, env={"HF_HUB_DISABLE_XET": "1"})
    assert out == {"single.jsonl": single, "parts.jsonl": parts}
    assert Blob.objects.filter(sha256__in=[single, parts]).count() == 2


COMMITS = """
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import BadRequestError, HfHubHTTPError

api = HfApi()
out = {}

def outcome(fn):
    try:
        result = fn()
        return ["ok", getattr(result, "oid", None)]
    except BadRequestError as exc:
        headers = exc.response.headers
        return ["BadRequestError", exc.response.status_code, headers.get("X-Error-Message")]
    except HfHubHTTPError as exc:
        headers = exc.response.headers
        return ["HfHubHTTPError", exc.response.status_code, headers.get("X-Error-Code")]

out["create"] = str(api.create_repo("alice/notes-lora"))
out["create_again"] = outcome(lambda: api.create_repo("alice/notes-lora"))
out["v1"] = outcome(
    lambda: api.upload_folder(folder_path=ARGS["adapter"], repo_id="alice/notes-lora")
)
out["v2"] = outcome(lambda: api.upload_file(
    path_or_fileobj=b"some notes", path_in_repo="docs/notes.txt", repo_id="alice/notes-lora"
))
out["v3"] = outcome(lambda: api.delete_file("docs/notes.txt", repo_id="alice/notes-lora"))
out["stale"] = outcome(lambda: api.create_commit(
    "alice/notes-lora",
    operations=[CommitOperationAdd("docs/late.txt", b"late")],
    commit_message="stale",
    parent_commit=out["v1"][1],
))
out["pickle"] = outcome(lambda: api.upload_file(
    path_or_fileobj=b"not really", path_in_repo="model.bin", repo_id="alice/notes-lora"
))
out["branch"] = outcome(lambda: api.upload_file(
    path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/notes-lora", revision="dev"
))
out["missing_delete"] = outcome(lambda: api.delete_file("nothing.txt", repo_id="alice/notes-lora"))
api.create_tag("alice/notes-lora", tag="stable", revision="v1")
out["tag_again"] = outcome(lambda: api.create_tag("alice/notes-lora", tag="stable", revision="v2"))
out["tagged"] = open(
    hf_hub_download("alice/notes-lora", "README.md", revision="stable")
).read()
api.delete_tag("alice/notes-lora", tag="stable")
out["tags"] = [t.name for t in api.list_repo_refs("alice/notes-lora").tags]

api.create_repo("alice/orphan")
out["orphan"] = outcome(
    lambda: api.upload_folder(folder_path=ARGS["orphan"], repo_id="alice/orphan")
)
api.create_repo("alice/hf-base", private=True)
out["base"] = outcome(lambda: api.upload_folder(folder_path=ARGS["base"], repo_id="alice/hf-base"))
# Without HF_HUB_DISABLE_XET, clients >= 1.x try xet for "lfs" files (hf_xet asks for a
# token itself and reports only the status): the hub refuses with 501.
try:
    api.upload_file(
        path_or_fileobj=ARGS["big"], path_in_repo="big.jsonl", repo_id="alice/corpus",
        repo_type="dataset",
    )
    out["xet"] = "uploaded"
except Exception as exc:
    out["xet"] = "501" in str(exc) and "xet-write-token" in str(exc)
emit(out)
"""

CARD = """---
library_name: peft
base_model: alice/tiny-base@v1
datasets:
- imdb
- alice/corpus
strata:
  training_params:
    epochs: 3
---
# Notes adapter
"""


def _write(folder: Path, files: dict[str, bytes]) -> str:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return str(folder)


def test_commits_tags_and_refusals(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload, "REGULAR_MAX_BYTES", 512 * 1024)
    tiny = make_repo(hub.owner, "tiny-base", Repository.Kind.BASE_MODEL)
    base_v1 = publish(tiny, base_model_files())
    publish(tiny, base_model_files(seed=3))  # v2 is main; the card pins v1
    corpus = make_repo(hub.owner, "corpus", Repository.Kind.DATASET)
    corpus_v1 = publish(corpus, {"train.jsonl": b'{"text": "hi"}\n'}, valid=False)
    args = {
        # adapter_config.json names a local folder: the model card must supply the base.
        "adapter": _write(
            tmp_path / "adapter",
            {**adapter_files(base="/home/me/tiny-base"), "README.md": CARD.encode()},
        ),
        "orphan": _write(tmp_path / "orphan", adapter_files(base="/home/me/tiny-base")),
        "base": _write(tmp_path / "base", base_model_files(seed=5)),
        "big": str(tmp_path / "big.jsonl"),
    }
    _jsonl(tmp_path / "big.jsonl", 600 * 1024)
    out = hub.run(COMMITS, args=args)

    assert out["create"] == f"{hub.endpoint}/alice/notes-lora"
    assert out["create_again"] == ["HfHubHTTPError", 409, "RepoExists"]
    versions = {
        v.label: v for v in Version.objects.filter(repository__name="notes-lora", variant="")
    }
    assert sorted(versions) == ["v1", "v2", "v3"]
    for label in ("v1", "v2", "v3"):
        assert out[label] == ["ok", versions[label].commit_id]
    # Each commit applies on top of the previous version's files.
    paths = {label: set(v.files.values_list("path", flat=True)) for label, v in versions.items()}
    adapter = {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert paths == {"v1": adapter, "v2": adapter | {"docs/notes.txt"}, "v3": adapter}
    # Lineage from the model card: the pinned base, a hub dataset and a Hub dataset id.
    v3 = versions["v3"]
    base_of = adapter_base(v3)
    assert base_of is not None
    assert base_of.pk == base_v1.pk
    trained = list(v3.parent_edges.filter(kind=LineageEdge.Kind.TRAINED_ON).order_by("position"))
    assert [(e.parent_id, e.external_uri) for e in trained] == [
        (None, "https://huggingface.co/datasets/imdb"),
        (corpus_v1.pk, ""),
    ]
    assert v3.metadata["training_params"] == {"epochs": 3}

    assert out["stale"] == ["HfHubHTTPError", 412, "PreconditionFailed"]
    assert out["pickle"][:2] == ["BadRequestError", 400]
    assert "pickle" in out["pickle"][2]
    assert out["branch"][:2] == ["BadRequestError", 400]
    assert out["missing_delete"] == ["HfHubHTTPError", 404, "EntryNotFound"]
    assert out["tag_again"] == ["HfHubHTTPError", 409, "TagExists"]
    assert out["tagged"] == CARD
    assert "stable" not in out["tags"]

    assert out["orphan"][:2] == ["BadRequestError", 400]
    assert "base_model" in out["orphan"][2]
    assert not Version.objects.filter(repository__name="orphan").exists()

    # A model repo whose first commit is full weights becomes a base model.
    assert out["base"][0] == "ok"
    hf_base = Repository.objects.get(name="hf-base")
    assert hf_base.kind == Repository.Kind.BASE_MODEL
    assert hf_base.is_private
    assert Job.objects.filter(version__repository=hf_base, kind=Job.Kind.MANIFEST).exists()
    assert out["xet"] is True
