"""End to end: every adapter push is validated by a real worker against its base."""

from __future__ import annotations

import json

import pytest
import requests

from hub.registry.models import Job, Version
from tests.conftest import wait_for
from tests.factories import adapter_files, base_model_files, make_token, make_user, requests_files

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def push(api: str, auth: dict[str, str], repo: str, files: dict[str, bytes], **meta: object):
    response = requests.post(
        f"{api}/repos/{repo}/versions",
        files=requests_files(files),
        data={"metadata": json.dumps(meta)},
        headers=auth,
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def finished(job_id: str) -> Job | None:
    return Job.objects.filter(pk=job_id, state__in=["succeeded", "failed"]).first()


def test_adapters_are_validated_against_their_base(live_server, celery_worker):
    make_user("alice")
    auth = {"Authorization": f"Bearer {make_token(make_user('bob'))}"}
    api = f"{live_server.url}/api/v1"
    for name, kind in (
        ("tiny-base", "base_model"),
        ("good-lora", "adapter"),
        ("bad-lora", "adapter"),
    ):
        created = requests.post(
            f"{api}/repos", json={"name": name, "kind": kind}, headers=auth, timeout=30
        )
        assert created.status_code == 201, created.text

    base = push(api, auth, "bob/tiny-base", base_model_files())
    wait_for(lambda: finished(base["jobs"][0]["id"]))

    good = push(
        api,
        auth,
        "bob/good-lora",
        adapter_files(base="/kaggle/input/some-local-copy"),
        base_model="bob/tiny-base",
    )
    broken_files = adapter_files(rank=4)
    config = json.loads(broken_files["adapter_config.json"])
    config["r"] = 8  # the tensors have rank 4
    broken_files["adapter_config.json"] = json.dumps(config).encode()
    bad = push(api, auth, "bob/bad-lora", broken_files, base_model="bob/tiny-base")

    good_job = wait_for(lambda: finished(good["jobs"][0]["id"]))
    bad_job = wait_for(lambda: finished(bad["jobs"][0]["id"]))
    assert good_job.state == bad_job.state == Job.State.SUCCEEDED, bad_job.error_message

    good_version = Version.objects.get(repository__name="good-lora", number=1)
    assert good_version.status == Version.Status.VALID
    assert good_version.report["facts"]["max_rank"] == 4
    # main follows the valid version, and the served config names the hub's base.
    main = requests.get(f"{api}/repos/bob/good-lora/versions/main", headers=auth, timeout=30)
    assert main.status_code == 200
    served = requests.get(
        f"{api}/repos/bob/good-lora/versions/main/files/adapter_config.json",
        headers=auth,
        timeout=30,
    )
    assert served.json()["base_model_name_or_path"] == "bob/tiny-base"

    bad_version = Version.objects.get(repository__name="bad-lora", number=1)
    assert bad_version.status == Version.Status.INVALID
    codes = {f["code"] for f in bad_version.report["findings"] if f["severity"] == "error"}
    assert codes == {"rank_mismatch"}, bad_version.report
    # An invalid version never becomes main, but its owner still sees the report.
    assert (
        requests.get(
            f"{api}/repos/bob/bad-lora/versions/main", headers=auth, timeout=30
        ).status_code
        == 404
    )
    detail = requests.get(f"{api}/repos/bob/bad-lora/versions/v1", headers=auth, timeout=30)
    assert detail.json()["report"]["status"] == "invalid"
    # Others do not see the invalid version at all.
    assert requests.get(f"{api}/repos/bob/bad-lora/versions/v1", timeout=30).status_code == 404
