"""Fixtures for the Hub-protocol tests: a live hub, real clients in subprocesses, models.

The clients (huggingface_hub, peft, transformers) read HF_ENDPOINT when they are
imported, so every scenario runs in a fresh Python process with its own environment and
cache (HF_HOME), and reports back one JSON line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import spec_from_metadata
from hub.registry.models import Repository, Version, VersionFile
from hub.registry.storage import get_blob_store
from tests.factories import make_token, make_user

ROOT = Path(__file__).resolve().parents[2]
PREAMBLE = """\
import json, os, sys
ARGS = json.loads(os.environ.get("TEST_ARGS", "{}"))
def emit(value):
    print("RESULT:" + json.dumps(value), flush=True)
"""


@dataclass
class Hub:
    """A live hub with an owner (alice) and an outsider (bob), and a way to run clients."""

    url: str
    owner: User
    token: str
    outsider_token: str
    home: Path

    @property
    def endpoint(self) -> str:
        return f"{self.url}/hf"

    def run(
        self,
        code: str,
        *,
        token: str | None = "owner",
        args: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 240,
    ) -> Any:
        """Run ``code`` with the clients pointed at this hub; return what it ``emit``-ed."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        environ.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(self.home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONPATH=str(ROOT),
            TEST_ARGS=json.dumps(args or {}),
        )
        if token is not None:
            environ["HF_TOKEN"] = self.token if token == "owner" else token
        environ.update(env or {})
        proc = subprocess.run(
            [sys.executable, "-c", PREAMBLE + textwrap.dedent(code)],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT:")]
        if proc.returncode != 0 or not results:
            pytest.fail(
                f"client exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                f"\n--- stderr\n{proc.stderr[-6000:]}"
            )
        return json.loads(results[-1][len("RESULT:") :])


@pytest.fixture
def hub(live_server: Any, settings: Any, tmp_path: Path) -> Iterator[Hub]:
    # Returned URLs must name the host the clients use (they compare it with HF_ENDPOINT).
    settings.PUBLIC_BASE_URL = live_server.url
    get_blob_store.cache_clear()  # a local store bakes the base URL into its signed URLs
    owner = make_user("alice")
    outsider = make_user("bob")
    yield Hub(
        url=live_server.url,
        owner=owner,
        token=make_token(owner),
        outsider_token=make_token(outsider),
        home=tmp_path / "hf-home",
    )
    get_blob_store.cache_clear()


# --- Publishing through the domain services (what the REST push does) -----------------------


def make_repo(owner: User, name: str, kind: str, *, visibility: str = "public") -> Repository:
    return services.repository_create(
        actor=Actor(user=owner),
        namespace=owner.username,
        name=name,
        kind=kind,
        visibility=visibility,
    )


def folder_files(folder: Path, names: list[str] | None = None) -> dict[str, bytes]:
    paths = [folder / n for n in names] if names else sorted(folder.iterdir())
    return {p.name: p.read_bytes() for p in paths if p.is_file()}


def _blobs(files: dict[str, bytes]) -> list[tuple[str, Any]]:
    return [
        (
            path,
            services.blob_ingest(
                services.IncomingFile(
                    path, len(data), hashlib.sha256(data).hexdigest(), io.BytesIO(data)
                )
            ),
        )
        for path, data in files.items()
    ]


def publish(
    repo: Repository,
    files: dict[str, bytes],
    *,
    meta: dict[str, Any] | None = None,
    valid: bool = True,
) -> Version:
    """Publish a version as its owner; ``valid`` stands in for the validation worker."""
    owner = repo.namespace.user
    assert owner is not None
    version = services.version_publish(
        actor=Actor(user=owner),
        repository=repo,
        files=_blobs(files),
        spec=spec_from_metadata(meta or {}),
        message=(meta or {}).get("message", ""),
    ).version
    if valid:
        services.version_set_status(version=version, status=Version.Status.VALID)
        version.refresh_from_db()
    return version


def publish_merged(version: Version, files: dict[str, bytes]) -> Version:
    """What the merge worker will publish: revision ``vN-merged`` with full weights."""
    blobs = _blobs(files)
    commit = hashlib.sha1(f"merged:{version.commit_id}".encode(), usedforsecurity=False)
    merged = Version.objects.create(
        repository=version.repository,
        number=version.number,
        variant=Version.Variant.MERGED,
        commit_id=commit.hexdigest(),
        status=Version.Status.VALID,
        message=f"{version.label} merged into its base",
        total_size=sum(b.size for _, b in blobs),
    )
    VersionFile.objects.bulk_create(VersionFile(version=merged, path=p, blob=b) for p, b in blobs)
    return merged


def adapter_files(folder: Path, base: str) -> dict[str, bytes]:
    """A saved PEFT adapter whose config names its base as loaded from this hub."""
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": (folder / "adapter_model.safetensors").read_bytes(),
    }


# --- Models (built once per session, on the CPU) ---------------------------------------------

TINY_LLAMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 96,
    "max_position_embeddings": 64,
}


@dataclass(frozen=True)
class Models:
    llama_base: Path
    llama_adapter: Path
    llama_merged: Path
    minilm_base: Path
    minilm_adapter: Path


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import BertModel, LlamaConfig, LlamaForCausalLM

    from workers.packaged_models import minilm_dir

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).save_pretrained(root / "llama-base")
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(LlamaForCausalLM.from_pretrained(root / "llama-base"), lora)
    peft_model.save_pretrained(root / "llama-adapter")
    peft_model.merge_and_unload().save_pretrained(root / "llama-merged")

    minilm = minilm_dir()
    bert_lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False
    )
    get_peft_model(BertModel.from_pretrained(minilm), bert_lora).save_pretrained(
        root / "minilm-adapter"
    )
    return Models(
        llama_base=root / "llama-base",
        llama_adapter=root / "llama-adapter",
        llama_merged=root / "llama-merged",
        minilm_base=minilm,
        minilm_adapter=root / "minilm-adapter",
    )


def publish_llama(hub: Hub, models: Models, *, adapter: str = "llama-lora") -> Version:
    """``alice/tiny-llama`` v1 (valid) and an adapter of it, ``alice/<adapter>`` v1 (valid)."""
    base = make_repo(hub.owner, "tiny-llama", Repository.Kind.BASE_MODEL)
    publish(base, folder_files(models.llama_base))
    repo = make_repo(hub.owner, adapter, Repository.Kind.ADAPTER)
    return publish(
        repo,
        adapter_files(models.llama_adapter, "alice/tiny-llama"),
        meta={"base_model": "alice/tiny-llama", "message": "first adapter"},
    )
