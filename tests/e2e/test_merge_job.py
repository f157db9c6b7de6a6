"""End to end: a 2-adapter stack merged by a real worker, checked against PEFT."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from hub.registry.models import Job, Version
from tests.conftest import wait_for
from tests.factories import make_token, make_user, requests_files
from tests.workers.lora_fixtures import make_llama, make_lora, peft_merged

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.suffix != ".md"}


def push(api, auth, repo, files, **meta):
    response = requests.post(
        f"{api}/repos/{repo}/versions",
        files=requests_files(files),
        data={"metadata": json.dumps(meta)},
        headers=auth,
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def settled(job_id: str) -> Job | None:
    return Job.objects.filter(pk=job_id, state__in=["succeeded", "failed"]).first()


def test_a_stack_merges_once_and_matches_peft(live_server, celery_worker, tmp_path):
    base_dir = make_llama(tmp_path / "base")
    first = make_lora(base_dir, tmp_path / "a1", seed=1, target_modules=["q_proj", "v_proj"])
    second = make_lora(
        base_dir, tmp_path / "a2", seed=2, target_modules=["q_proj", "down_proj"], r=2
    )
    token = make_token(make_user("carol"))
    auth = {"Authorization": f"Bearer {token}"}
    api = f"{live_server.url}/api/v1"
    for name, kind in (("llama", "base_model"), ("first", "adapter"), ("second", "adapter")):
        response = requests.post(
            f"{api}/repos", json={"name": name, "kind": kind}, headers=auth, timeout=30
        )
        assert response.status_code == 201

    base = push(api, auth, "carol/llama", folder(base_dir))
    wait_for(lambda: settled(base["jobs"][0]["id"]))
    one = push(api, auth, "carol/first", folder(first), base_model="carol/llama@v1")
    two = push(
        api,
        auth,
        "carol/second",
        folder(second),
        base_model="carol/llama@v1",
        stacked_on=["carol/first@v1"],
    )
    for pushed in (one, two):
        job = wait_for(lambda pushed=pushed: settled(pushed["jobs"][0]["id"]))
        assert job.state == "succeeded", job.error_message
    assert Version.objects.get(repository__name="second").status == "valid"

    # Ten simultaneous requests make one job.
    def ask() -> requests.Response:
        return requests.post(
            f"{api}/repos/carol/second/versions/v1/merge", headers=auth, timeout=30
        )

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: ask(), range(10)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["job"]["id"] for a in answers}) == 1
    job = wait_for(lambda: settled(answers[0].json()["job"]["id"]), timeout=180)
    assert job.state == "succeeded", (job.error_code, job.error_message, job.log_tail)

    merged = Version.objects.get(repository__name="second", number=1, variant="merged")
    assert merged.label == "v1-merged"
    parity = merged.report["parity"]
    assert parity["max_abs_diff"] < 1e-4
    assert ask().json()["version"]["label"] == "v1-merged"

    # The merged weights, pulled like any revision, equal PEFT's merge of the stack.
    from safetensors.torch import load

    weights = requests.get(
        f"{api}/repos/carol/second/versions/v1-merged/files/model.safetensors",
        headers=auth,
        timeout=60,
    )
    assert weights.status_code == 200
    ours = load(weights.content)
    reference = peft_merged(base_dir, [first, second], dtype=torch.float32)
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-6, atol=1e-7)
    files = {
        f["path"]
        for f in requests.get(
            f"{api}/repos/carol/second/versions/v1-merged/files", headers=auth, timeout=30
        ).json()
    }
    assert {"model.safetensors", "config.json"} <= files


def test_composing_a_stack_publishes_a_validated_adapter_with_its_recipe(
    live_server, celery_worker, tmp_path
):
    base_dir = make_llama(tmp_path / "base")
    first = make_lora(base_dir, tmp_path / "a1", seed=1, target_modules=["q_proj", "v_proj"])
    second = make_lora(base_dir, tmp_path / "a2", seed=2, target_modules=["q_proj"], r=2)
    auth = {"Authorization": f"Bearer {make_token(make_user('erin'))}"}
    api = f"{live_server.url}/api/v1"
    for name, kind in (
        ("llama", "base_model"),
        ("first", "adapter"),
        ("second", "adapter"),
        ("both", "adapter"),
    ):
        response = requests.post(
            f"{api}/repos", json={"name": name, "kind": kind}, headers=auth, timeout=30
        )
        assert response.status_code == 201
    base = push(api, auth, "erin/llama", folder(base_dir))
    wait_for(lambda: settled(base["jobs"][0]["id"]))
    for name, path in (("first", first), ("second", second)):
        pushed = push(api, auth, f"erin/{name}", folder(path), base_model="erin/llama@v1")
        assert wait_for(lambda p=pushed: settled(p["jobs"][0]["id"])).state == "succeeded"

    asked = requests.post(
        f"{api}/compose",
        json={
            "inputs": [{"repo": "erin/first", "revision": "v1"}, {"repo": "erin/second"}],
            "method": "exact",
            "target": "erin/both",
        },
        headers=auth,
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    job = wait_for(lambda: settled(asked.json()["job"]["id"]), timeout=120)
    assert job.state == "succeeded", (job.error_code, job.error_message)

    composed = Version.objects.get(repository__name="both", number=1)
    recipe = composed.metadata["recipe"]
    assert recipe["method"] == "exact"
    assert [i["repo"] for i in recipe["inputs"]] == ["erin/first", "erin/second"]
    assert composed.metadata["compose"]["total_error"] == 0.0
    edges = composed.parent_edges.filter(kind="composed_from").order_by("position")
    assert [e.parent.repository.name for e in edges] == ["first", "second"]
    # The composed adapter is validated like any upload, and its rank is the sum.
    validation = wait_for(
        lambda: Job.objects.filter(version=composed, kind="validate", state="succeeded").first()
    )
    composed.refresh_from_db()
    assert validation is not None
    assert composed.status == "valid", composed.report
    assert composed.report["facts"]["max_rank"] == 4 + 2
