"""Download counts are gathered per web process and written together, exactly once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from hub.registry.downloads import flush_pending
from hub.registry.models import Repository, Version
from tests.factories import make_token, make_user, requests_files

pytestmark = pytest.mark.django_db(transaction=True)


def counts() -> tuple[int, int]:
    version = Version.objects.select_related("repository").get(repository__name="corpus")
    return version.downloads, version.repository.downloads


def test_pulls_are_counted_once_each_a_moment_later(live_server: Any, settings: Any) -> None:
    settings.DOWNLOAD_COUNT_FLUSH_SECONDS = 0.5
    auth = {"Authorization": f"Bearer {make_token(make_user('dana'))}"}
    api = f"{live_server.url}/api/v1"
    assert requests.post(
        f"{api}/repos", json={"name": "corpus", "kind": "dataset"}, headers=auth, timeout=30
    ).ok
    pushed = requests.post(
        f"{api}/repos/dana/corpus/versions",
        files=requests_files({"train.jsonl": b'{"text": "hi"}\n'}),
        headers=auth,
        timeout=30,
    )
    assert pushed.status_code == 201, pushed.text
    url = f"{live_server.url}/hf/datasets/dana/corpus/resolve/main/train.jsonl"

    def pull(_: int) -> int:
        # What huggingface_hub sends before each download: one counted HEAD.
        head = requests.head(
            url, headers={"X-HF-Download-Counter": "1"}, allow_redirects=False, timeout=30
        )
        return head.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(pull, range(40)))
    assert set(statuses) == {302}
    # Not written on the requests...
    assert counts() == (0, 0)
    # ...but together, shortly after, on the timer.
    deadline = time.monotonic() + 10
    while counts() != (40, 40) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert counts() == (40, 40)
    flush_pending()  # nothing left over to count twice
    time.sleep(1)
    assert counts() == (40, 40)
    assert Repository.objects.get(name="corpus").downloads == 40
