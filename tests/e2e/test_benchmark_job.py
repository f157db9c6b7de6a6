"""End to end: a LoRA fine-tuned on SmolLM2-135M is pushed and benchmarked by a worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from hub.registry.models import BenchmarkResult, Job
from tests.conftest import wait_for
from tests.factories import make_token, make_user, requests_files
from tests.workers.test_smollm import TRAIN, _cache_root, _train_lora
from workers.smollm import smollm2_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def folder(path: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in path.iterdir()
        # The conversion marker is the cache's own bookkeeping, not part of the model.
        if p.is_file() and not p.name.startswith(".") and p.name != "strata-conversion.json"
    }


def settled(job_id: str) -> Job | None:
    return Job.objects.filter(pk=job_id, state__in=["succeeded", "failed"]).first()


def test_a_finetuned_adapter_beats_its_base_on_its_own_text(live_server, celery_worker, tmp_path):
    base_dir = smollm2_dir(_cache_root())
    adapter_dir = _train_lora(base_dir, tmp_path / "lighthouse")
    token = make_token(make_user("dora"))
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{live_server.url}/api/v1"
    for name, kind in (
        ("smollm2", "base_model"),
        ("lighthouse", "dataset"),
        ("lh-lora", "adapter"),
    ):
        created = requests.post(
            f"{api}/repos", json={"name": name, "kind": kind}, headers=auth, timeout=30
        )
        assert created.status_code == 201, created.text

    def push(repo: str, files: dict[str, bytes], **meta: object) -> dict:
        response = requests.post(
            f"{api}/repos/{repo}/versions",
            files=requests_files(files),
            data={"metadata": json.dumps(meta)},
            headers=auth,
            timeout=300,
        )
        assert response.status_code == 201, response.text
        return response.json()

    evals = "".join(json.dumps({"text": t}) + "\n" for t in TRAIN).encode()
    push("dora/lighthouse", {"lighthouse.jsonl": evals})
    base = push("dora/smollm2", folder(base_dir), eval_sets=["dora/lighthouse@v1"])
    assert wait_for(lambda: settled(base["jobs"][0]["id"]), timeout=120).state == "succeeded"

    adapter = push("dora/lh-lora", folder(adapter_dir), base_model="dora/smollm2@v1")
    validated = wait_for(lambda: settled(adapter["jobs"][0]["id"]), timeout=120)
    assert validated.state == "succeeded", validated.error_message

    # Validation queued a benchmark on the base's default eval set.
    job = wait_for(
        lambda: Job.objects.filter(kind="benchmark", state__in=["succeeded", "failed"]).first(),
        timeout=400,
    )
    assert job.state == "succeeded", (job.error_code, job.error_message, job.log_tail)
    result = BenchmarkResult.objects.get(version__repository__name="lh-lora")
    assert result.metric == "perplexity"
    assert result.adapter_value < result.base_value
    assert result.result["adapter"]["loss"] < result.result["base"]["loss"]
    assert result.device

    listed = requests.get(
        f"{api}/repos/dora/lh-lora/versions/v1/benchmarks", headers=auth, timeout=30
    ).json()
    assert listed[0]["delta"] < 0
    board = requests.get(f"{api}/leaderboards/dora/smollm2", headers=auth, timeout=30).json()
    assert board["leaderboards"][0]["entries"][0]["version"]["repo"] == "dora/lh-lora"
