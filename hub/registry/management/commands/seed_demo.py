"""Seed a demo hub: the real MiniLM base model, datasets and a few adapters with lineage."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from hub.accounts.models import Namespace
from hub.accounts.services import organization_create, user_create
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.lineage import DatasetRef, LineageSpec, Ref
from hub.registry.models import Repository

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
BASE = "sentence-transformers/all-MiniLM-L6-v2"


def push_folder(
    actor: Actor, repo: Repository, folder: Path, paths: list[str], **kwargs: Any
) -> services.Published:
    files = []
    for path in paths:
        with (folder / path).open("rb") as fh:
            sha, size = services.hash_stream(fh, limit=2**40)
            fh.seek(0)
            files.append((path, services.blob_ingest(services.IncomingFile(path, size, sha, fh))))
    return services.version_publish(actor=actor, repository=repo, files=files, **kwargs)


class Command(BaseCommand):
    help = "Create demo users, the MiniLM base model, datasets and stacked adapters."

    def handle(self, *args: Any, **options: Any) -> None:
        if Namespace.objects.filter(name="acme").exists():
            self.stdout.write("demo already seeded")
            return
        from workers.demo import build_minilm_lora
        from workers.packaged_models import BASE_MODEL_FILES, minilm_dir

        demo = user_create(username="demo", password="demo-password")  # noqa: S106
        demo.is_staff = demo.is_superuser = True
        demo.save()
        actor = Actor.of(User.objects.get(pk=demo.pk))
        organization_create(actor=demo, name="sentence-transformers")
        organization_create(actor=demo, name="acme", display_name="Acme Research")

        base = services.repository_create(
            actor=actor,
            namespace="sentence-transformers",
            name="all-MiniLM-L6-v2",
            kind="base_model",
            description="A 6-layer, 384-dimension BERT sentence encoder (22.7M parameters).",
            license="apache-2.0",
            tags=["sentence-similarity", "encoder"],
        )
        push_folder(actor, base, minilm_dir(), list(BASE_MODEL_FILES), message="Upstream weights")

        datasets = {}
        for name, filename, description in [
            ("eval-sentences", "eval-sentences.jsonl", "Short English texts for drift checks."),
            ("sts-pairs", "sts-pairs.jsonl", "Sentence pairs with similarity scores (0-5)."),
        ]:
            repo = services.repository_create(
                actor=actor, namespace="acme", name=name, kind="dataset", description=description
            )
            push_folder(actor, repo, DEMO_DIR, [filename], message="Written for the Strata demo")
            datasets[name] = f"acme/{name}@v1"

        evals = [DatasetRef(ref=Ref.parse(datasets["sts-pairs"]))]
        adapter_files = ["adapter_config.json", "adapter_model.safetensors"]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            instruct = services.repository_create(
                actor=actor,
                namespace="acme",
                name="minilm-instruct-lora",
                kind="adapter",
                description="Instruction-style retrieval adapter on query/value projections.",
                license="apache-2.0",
                tags=["retrieval", "instruction"],
            )
            push_folder(
                actor,
                instruct,
                build_minilm_lora(work / "instruct", rank=8, targets=["query", "value"], seed=1),
                adapter_files,
                spec=LineageSpec(base=Ref(BASE, "v1"), evaluated_on=evals),
                message="Rank 8 on query/value",
                metadata={"training_params": {"lr": 2e-4, "epochs": 3, "rank": 8}},
            )
            dialogue = services.repository_create(
                actor=actor,
                namespace="acme",
                name="minilm-dialogue-lora",
                kind="adapter",
                description="Dialogue adapter trained on top of the instruct adapter.",
                license="apache-2.0",
                tags=["dialogue"],
            )
            push_folder(
                actor,
                dialogue,
                build_minilm_lora(
                    work / "dialogue", rank=4, targets=["query", "key", "value"], seed=2
                ),
                adapter_files,
                spec=LineageSpec(
                    base=Ref(BASE, "v1"),
                    stacked_on=[Ref("acme/minilm-instruct-lora", "v1")],
                    trained_on=[DatasetRef(uri="https://example.org/datasets/dialogue-mix")],
                    evaluated_on=evals,
                ),
                message="Rank 4, stacked on minilm-instruct-lora v1",
            )
            sts = services.repository_create(
                actor=actor,
                namespace="demo",
                name="minilm-sts-lora",
                kind="adapter",
                description="Semantic similarity adapter; v2 continues training from v1.",
                tags=["sentence-similarity"],
            )
            for number, seed in ((1, 3), (2, 4)):
                push_folder(
                    actor,
                    sts,
                    build_minilm_lora(
                        work / f"sts{number}", rank=8, targets=["query", "value"], seed=seed
                    ),
                    adapter_files,
                    spec=LineageSpec(
                        base=Ref(BASE, "v1"),
                        finetuned_from=Ref("demo/minilm-sts-lora", "v1") if number == 2 else None,
                        evaluated_on=evals,
                    ),
                    message=f"Epoch {number}",
                )
        self.stdout.write(self.style.SUCCESS("demo seeded: sign in as demo / demo-password"))
