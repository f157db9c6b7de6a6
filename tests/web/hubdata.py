"""Realistic hub content for the web tests, made through the services.

Validation reports have the shape ``workers.findings.Report.to_json`` writes (findings,
facts, module_stats, normalized_config); the base model's report and manifest have the
shape the manifest handler writes. Bytes are real safetensors files stored in S3 (moto).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from hub.accounts.services import membership_set, organization_create
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import DatasetRef, LineageSpec, Ref
from hub.registry.models import Blob, Job, Repository, Version, VersionFile
from tests.factories import TINY_BASE, adapter_files, base_model_files, make_user

MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj")

ADAPTER_CARD = """---
license: apache-2.0
tags: [dialogue]
---
# {title}

A LoRA adapter for **tiny-llama** that {what}.

## Training

| setting | value |
| --- | --- |
| rank | {rank} |
| learning rate | 2e-4 |
| epochs | 3 |

```python
from peft import PeftModel
model = PeftModel.from_pretrained(base, "{repo}")
```
"""


def push(
    actor: Actor,
    repo: Repository,
    files: dict[str, bytes],
    *,
    spec: LineageSpec | None = None,
    message: str = "",
    metadata: dict[str, Any] | None = None,
) -> Version:
    """Store the bytes and publish a version, as the REST push does."""
    stored = []
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        blob = services.blob_ingest(services.IncomingFile(path, len(data), sha, io.BytesIO(data)))
        stored.append((path, blob))
    return services.version_publish(
        actor=actor,
        repository=repo,
        files=stored,
        spec=spec,
        message=message,
        metadata=metadata,
    ).version


def base_report() -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = {
        name: {"dtype": "F32", "shape": list(shape), "file": "model.safetensors"}
        for name, shape in TINY_BASE.items()
    }
    facts = {
        "architecture": "TinyForCausalLM",
        "model_type": "tiny",
        "parameters": sum(a * b for a, b in TINY_BASE.values()),
        "tensors": len(TINY_BASE),
        "dtype": "F32",
        "dtypes": {"F32": len(TINY_BASE)},
        "quantized": False,
        "shards": 1,
    }
    return {"status": "valid", "findings": [], "facts": facts}, manifest


def adapter_report(
    rank: int,
    *,
    scale: float = 1.0,
    findings: list[dict[str, Any]] | None = None,
    modules: tuple[str, ...] = MODULES,
) -> dict[str, Any]:
    status = "invalid" if any(f["severity"] == "error" for f in findings or []) else "valid"
    facts = {
        "numeric_scan": True,
        "layout": "peft",
        "base_checked": True,
        "file_count": 1,
        "tensor_count": 2 * len(modules),
        "dtypes": ["F32"],
        "tensor_bytes": 2 * len(modules) * rank * 16 * 4,
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": sorted({m.rsplit(".", 1)[-1] for m in modules}),
        "modules_to_save": [],
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "lora_module_count": len(modules),
        "ranks": [rank],
        "max_rank": rank,
        "vllm_default_max_lora_rank": 16,
        "fits_vllm_default_rank": rank <= 16,
        "targeted_module_names": sorted({m.rsplit(".", 1)[-1] for m in modules}),
        "lora_on_embedding": False,
        "lora_on_lm_head": False,
        "zero_modules": 0,
    }
    stats = [
        {
            "module": m,
            "rank": rank,
            "alpha": 2.0 * rank,
            "scale": 2.0,
            "dtype": "F32",
            "a_norm": 3.1 * scale,
            "b_norm": 0.42 * scale * (i + 1),
            "delta_norm": round(0.91 * scale * (i + 1), 4),
            "zero": False,
        }
        for i, m in enumerate(modules)
    ]
    return {
        "status": status,
        "findings": findings or [],
        "facts": facts,
        "module_stats": stats,
        "normalized_config": None,
    }


def with_card(files: dict[str, bytes], card: str) -> dict[str, bytes]:
    return {**files, "README.md": card.encode()}


@dataclass
class HubData:
    alice: User
    bob: User
    carol: User
    base: Repository
    base_v1: Version
    instruct: Repository
    instruct_v1: Version
    dialogue: Repository
    dialogue_v1: Version
    sts: Repository
    sts_v1: Version
    sts_v2: Version
    secret: Repository
    secret_v1: Version
    dataset: Repository


def build() -> HubData:
    """alice owns acme (an org; bob writes, carol reads) and these repositories:

    acme/tiny-llama (base, valid) <- acme/instruct-lora v1 <- acme/dialogue-lora v1
    (stacked); alice/sts-lora v1 -> v2 (fine-tuned); acme/secret-lora (private);
    acme/eval-set (dataset).

    The reports above are written here, and their check jobs are recorded as done in
    the same transaction, so a running worker skips them (its messages go out on
    commit) and pages look the same with or without one.
    """
    with transaction.atomic():
        data = _build()
        Job.objects.filter(state=Job.State.QUEUED, version__isnull=False).update(
            state=Job.State.SUCCEEDED,
            attempts=1,
            started_at=timezone.now(),
            finished_at=timezone.now(),
            device="cpu",
            worker_host="test-data",
            log_tail="report written by tests/web/hubdata.py\n",
            result={"status": "recorded by the test data"},
        )
    return data


def _build() -> HubData:
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    actor = Actor(user=alice)
    acme = organization_create(actor=alice, name="acme", display_name="Acme Research")
    membership_set(actor=alice, org=acme, user=bob, role="write")
    membership_set(actor=alice, org=acme, user=carol, role="read")

    base = services.repository_create(
        actor=actor,
        namespace="acme",
        name="tiny-llama",
        kind="base_model",
        description="A two-layer test model small enough to check adapters in milliseconds.",
        license="apache-2.0",
        tags=["causal-lm", "tiny"],
    )
    base_v1 = push(actor, base, base_model_files(), message="Upstream weights")
    report, manifest = base_report()
    services.version_set_status(version=base_v1, status="valid", report=report, manifest=manifest)

    dataset = services.repository_create(
        actor=actor,
        namespace="acme",
        name="eval-set",
        kind="dataset",
        description="Held-out prompts for drift checks.",
        tags=["evaluation"],
    )
    push(actor, dataset, {"prompts.jsonl": b'{"text": "hello"}\n'}, message="First cut")

    instruct = services.repository_create(
        actor=actor,
        namespace="acme",
        name="instruct-lora",
        kind="adapter",
        description="Instruction following on the query and value projections.",
        license="apache-2.0",
        tags=["instruction", "chat"],
    )
    instruct_v1 = push(
        actor,
        instruct,
        with_card(
            adapter_files(rank=8, seed=1, base="acme/tiny-llama"),
            ADAPTER_CARD.format(
                title="Instruct LoRA",
                what="follows instructions",
                rank=8,
                repo="acme/instruct-lora",
            ),
        ),
        spec=LineageSpec(
            base=Ref("acme/tiny-llama", "v1"),
            evaluated_on=[DatasetRef(ref=Ref("acme/eval-set", "v1"))],
        ),
        message="Rank 8 on q/v",
        metadata={"training_params": {"lr": 0.0002, "epochs": 3, "rank": 8}},
    )
    services.version_set_status(version=instruct_v1, status="valid", report=adapter_report(8))

    dialogue = services.repository_create(
        actor=actor,
        namespace="acme",
        name="dialogue-lora",
        kind="adapter",
        description="Multi-turn dialogue, trained on top of instruct-lora.",
        license="apache-2.0",
        tags=["dialogue", "chat"],
    )
    dialogue_v1 = push(
        actor,
        dialogue,
        adapter_files(rank=32, seed=2, base="acme/tiny-llama"),
        spec=LineageSpec(
            base=Ref("acme/tiny-llama", "v1"),
            stacked_on=[Ref("acme/instruct-lora", "v1")],
            trained_on=[DatasetRef(uri="https://example.org/datasets/dialogue-mix")],
        ),
        message="Rank 32, stacked on instruct-lora v1",
    )
    services.version_set_status(
        version=dialogue_v1,
        status="valid",
        report=adapter_report(
            32,
            scale=1.7,
            findings=[
                {
                    "code": "rank_above_vllm_default",
                    "severity": "info",
                    "message": "The adapter's rank is 32; vLLM must be started with "
                    "--max-lora-rank 32 or more (its default is 16).",
                },
                {
                    "code": "base_model_name_mismatch",
                    "severity": "warning",
                    "message": "adapter_config.json names base 'llama-tiny' but the version "
                    "declares acme/tiny-llama.",
                },
            ],
        ),
    )

    sts = services.repository_create(
        actor=Actor(user=alice),
        namespace="alice",
        name="sts-lora",
        kind="adapter",
        description="Semantic similarity; v2 continues training from v1.",
        license="mit",
        tags=["sentence-similarity"],
    )
    sts_v1 = push(
        actor,
        sts,
        adapter_files(rank=4, seed=3, base="acme/tiny-llama"),
        spec=LineageSpec(base=Ref("acme/tiny-llama", "v1")),
        message="Epoch 1",
    )
    services.version_set_status(version=sts_v1, status="valid", report=adapter_report(4))
    v2_files = adapter_files(rank=8, seed=4, base="acme/tiny-llama")
    config = json.loads(v2_files["adapter_config.json"])
    config["lora_dropout"] = 0.05
    v2_files["adapter_config.json"] = json.dumps(config).encode()
    sts_v2 = push(
        actor,
        sts,
        v2_files,
        spec=LineageSpec(
            base=Ref("acme/tiny-llama", "v1"), finetuned_from=Ref("alice/sts-lora", "v1")
        ),
        message="Epoch 2, rank 8",
    )
    services.version_set_status(
        version=sts_v2,
        status="valid",
        report=adapter_report(8, scale=1.4, modules=(*MODULES, "model.layers.0.mlp.up_proj")),
    )

    secret = services.repository_create(
        actor=actor,
        namespace="acme",
        name="secret-lora",
        kind="adapter",
        visibility="private",
        description="Not for outsiders: codename nightingale.",
        tags=["confidential-tag"],
        license="proprietary-secret",
    )
    secret_v1 = push(
        actor,
        secret,
        adapter_files(rank=16, seed=5, base="acme/tiny-llama"),
        spec=LineageSpec(
            base=Ref("acme/tiny-llama", "v1"), stacked_on=[Ref("acme/instruct-lora", "v1")]
        ),
        message="Private experiment",
    )
    services.version_set_status(version=secret_v1, status="valid", report=adapter_report(16))
    Repository.objects.filter(pk=instruct.pk).update(downloads=1234)
    Repository.objects.filter(pk=dialogue.pk).update(downloads=87)
    Repository.objects.filter(pk=secret.pk).update(downloads=99999)
    for repo in (base, instruct, dialogue, sts, secret, dataset):
        repo.refresh_from_db()
    return HubData(
        alice=alice,
        bob=bob,
        carol=carol,
        base=base,
        base_v1=base_v1,
        instruct=instruct,
        instruct_v1=instruct_v1,
        dialogue=dialogue,
        dialogue_v1=dialogue_v1,
        sts=sts,
        sts_v1=sts_v1,
        sts_v2=sts_v2,
        secret=secret,
        secret_v1=secret_v1,
        dataset=dataset,
    )


def add_merged(version: Version) -> Version:
    """A ``vN-merged`` row as a merge job would leave it (no service makes one yet)."""
    merged = Version.objects.create(
        repository=version.repository,
        number=version.number,
        variant=Version.Variant.MERGED,
        commit_id=hashlib.sha1(f"merged:{version.pk}".encode(), usedforsecurity=False).hexdigest(),
        status=Version.Status.VALID,
        message=f"{version.label} merged into its base",
        total_size=version.total_size,
    )
    weights = version.files.get(path="adapter_model.safetensors").blob
    VersionFile.objects.create(version=merged, path="model.safetensors", blob=weights)
    return merged


def fake_blob(n: int) -> Blob:
    """A blob row without bytes: enough for pages that never read the file."""
    sha = hashlib.sha256(str(n).encode()).hexdigest()
    return Blob.objects.get_or_create(
        sha256=sha, defaults={"size": 1000 + n, "storage_key": f"blobs/{sha[:2]}/{sha[2:4]}/{sha}"}
    )[0]


def quick_adapter(
    owner: User,
    name: str,
    *,
    namespace: str | None = None,
    base: str = "acme/tiny-llama@v1",
    rank: int | None = 8,
    tags: tuple[str, ...] = ("chat",),
    stacked_on: tuple[str, ...] = (),
    visibility: str = "public",
    n: int = 0,
) -> tuple[Repository, Version]:
    """An adapter with one version (validated when ``rank`` is given), no bytes stored."""
    actor = Actor(user=owner)
    repo = services.repository_create(
        actor=actor,
        namespace=namespace or owner.username,
        name=name,
        kind="adapter",
        visibility=visibility,
        description=f"Adapter {name}",
        license="apache-2.0",
        tags=list(tags),
    )
    published = services.version_publish(
        actor=actor,
        repository=repo,
        files=[
            ("adapter_config.json", fake_blob(2 * n)),
            ("adapter_model.safetensors", fake_blob(2 * n + 1)),
        ],
        spec=LineageSpec(base=Ref.parse(base), stacked_on=[Ref.parse(s) for s in stacked_on]),
        message=f"first version of {name}",
    )
    if rank is not None:
        services.version_set_status(
            version=published.version, status="valid", report=adapter_report(rank)
        )
    return repo, published.version
