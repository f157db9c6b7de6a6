"""Workers that die, or run out of disk or memory, in the middle of a merge.

Real worker processes on real PostgreSQL, Redis and S3 (moto). A worker killed with
SIGKILL leaves a running job whose heartbeat stops; the reaper puts it back in the queue
and another worker finishes it. A worker that cannot write a file (RLIMIT_FSIZE) or
allocate memory (RLIMIT_AS set on its live pool process) fails the attempt as an
infrastructure error; the job is retried on another worker and the adapter keeps its
verdict. Every time exactly one merged revision appears, and every stored object is
whole and accounted for.
"""

from __future__ import annotations

import hashlib
import resource
from pathlib import Path
from typing import Any

import psutil
import pytest

from hub.registry.jobs import jobs_reap_stale, jobs_resend_unsent
from hub.registry.models import Blob, Job, Version
from hub.registry.storage import S3BlobStore, get_blob_store
from tests.factories import make_token, make_user, multipart
from tests.faults.conftest import StartWorker, wait_until
from tests.worker_process import WorkerProcess
from tests.workers.lora_fixtures import make_llama, make_lora

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.suffix != ".md"}


def settled(job: Job) -> Job | None:
    return Job.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first()


@pytest.fixture
def valid_adapter(api: Any, tmp_path: Path) -> Any:
    """``valid_adapter(worker)``: a two-shard tiny Llama and a LoRA on it, validated by
    ``worker``. Returns the API client and the adapter version."""

    def make(worker: Any) -> tuple[Any, Version]:
        base_dir = make_llama(tmp_path / "base", shards=2)
        lora_dir = make_lora(base_dir, tmp_path / "lora", seed=3, target_modules=["q_proj"])
        client = api(make_token(make_user("mallory")))
        for name, kind in (("llama", "base_model"), ("lora", "adapter")):
            made = client.post("/api/v1/repos", {"name": name, "kind": kind}, format="json")
            assert made.status_code == 201, made.content
        base = client.post("/api/v1/repos/mallory/llama/versions", multipart(folder(base_dir)))
        assert base.status_code == 201, base.content
        pushed = client.post(
            "/api/v1/repos/mallory/lora/versions",
            multipart(folder(lora_dir), {"base_model": "mallory/llama@v1"}),
        )
        assert pushed.status_code == 201, pushed.content
        adapter = Version.objects.get(repository__name="lora", number=1)
        wait_until(
            lambda: Version.objects.filter(pk=adapter.pk, status="valid").exists(),
            workers=(worker,),
        )
        return client, adapter

    return make


def request_merge(client: Any) -> Job:
    asked = client.post("/api/v1/repos/mallory/lora/versions/v1/merge")
    assert asked.status_code == 202, asked.content
    return Job.objects.get(pk=asked.json()["job"]["id"])


def bucket_objects() -> dict[str, int]:
    store = get_blob_store()
    assert isinstance(store, S3BlobStore)
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix="blobs/"
    )
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def assert_one_whole_merged_revision(adapter: Version, objects_before: dict[str, int]) -> None:
    """One merged revision, its bytes intact; every blob row has its whole object, and
    every object this test wrote has a row (none is partial or unaccounted for)."""
    merged = Version.objects.filter(repository=adapter.repository, variant="merged")
    assert merged.count() == 1
    store = get_blob_store()
    for vf in merged.get().files.select_related("blob"):
        data = b"".join(store.iter_chunks(vf.blob.storage_key))
        assert hashlib.sha256(data).hexdigest() == vf.blob.sha256, vf.path
    objects = bucket_objects()
    recorded = dict(Blob.objects.values_list("storage_key", "size"))
    assert {key: objects.get(key) for key in recorded} == recorded
    written = {key: size for key, size in objects.items() if key not in objects_before}
    assert written.keys() <= recorded.keys()


def test_a_worker_killed_mid_merge_loses_nothing_and_the_merge_happens_once(
    own_workers: StartWorker, valid_adapter: Any, settings: Any
) -> None:
    objects_before = bucket_objects()
    doomed = own_workers("doomed")
    client, adapter = valid_adapter(doomed)
    inputs = set(Blob.objects.values_list("sha256", flat=True))

    job = request_merge(client)
    # The first merged shard is stored; the second, the parity check against PEFT and the
    # publish are still to come. Kill the whole worker there, as a lost machine would.
    wait_until(
        lambda: Blob.objects.exclude(sha256__in=inputs).exists(),
        interval=0.01,
        workers=(doomed,),
    )
    doomed.kill()
    job.refresh_from_db()
    assert job.state == "running"
    assert not Version.objects.filter(variant="merged").exists()

    # Its heartbeat has stopped: the reaper (run by beat every minute) requeues it.
    settings.JOB_STALE_AFTER_SECONDS = 5
    wait_until(lambda: jobs_reap_stale()["requeued"] == 1, timeout=30, interval=0.5)
    rescuer = own_workers("rescuer")
    done = wait_until(lambda: settled(job), timeout=180, workers=(rescuer,))
    assert (done.state, done.attempts) == ("succeeded", 2), (done.error_code, done.log_tail)
    assert_one_whole_merged_revision(adapter, objects_before)
    # Asking again serves the merged revision; no second job, no second artifact.
    again = client.post("/api/v1/repos/mallory/lora/versions/v1/merge")
    assert again.status_code == 200, again.content
    assert again.json()["version"]["label"] == "v1-merged"
    assert Job.objects.filter(kind="merge").count() == 1


def test_a_worker_out_of_disk_fails_the_attempt_as_ours_and_another_worker_merges(
    own_workers: StartWorker, valid_adapter: Any
) -> None:
    # The merged shards are ~180 KB each; this worker cannot write a file past 64 KB.
    objects_before = bucket_objects()
    cramped = own_workers("cramped", file_size_limit=64 * 1024)
    client, adapter = valid_adapter(cramped)

    job = request_merge(client)
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, state="queued", attempts=1).exists(),
        workers=(cramped,),
    )
    job.refresh_from_db()
    assert "File too large" in job.error_message, job.error_message
    assert "infrastructure error" in job.log_tail
    assert job.error_code == ""  # not judged: no user-facing failure code
    # Only the retry is left; it waits for its countdown. The cramped worker leaves (a warm
    # shutdown hands back the retry it holds) and a healthy one takes over.
    cramped.stop()
    healthy = own_workers("healthy")
    done = wait_until(lambda: settled(job), timeout=180, workers=(healthy,))
    assert (done.state, done.attempts) == ("succeeded", 2), (done.error_code, done.log_tail)
    adapter.refresh_from_db()
    assert adapter.status == "valid"
    assert_one_whole_merged_revision(adapter, objects_before)


def starve(worker: WorkerProcess, *, headroom: int) -> None:
    """Cap the address space of the worker's pool process at what it uses now, plus
    ``headroom``: its next large allocations fail as on a host out of memory."""
    assert worker.proc is not None
    main = psutil.Process(worker.proc.pid)
    wait_until(lambda: main.children(), workers=(worker,))
    (child,) = main.children()
    wait_until(lambda: "ready." in worker.log_tail(), workers=(worker,))
    limit = child.memory_info().vms + headroom
    resource.prlimit(child.pid, resource.RLIMIT_AS, (limit, limit))


def test_a_worker_out_of_memory_fails_the_attempt_as_ours_and_another_worker_merges(
    own_workers: StartWorker, valid_adapter: Any
) -> None:
    objects_before = bucket_objects()
    validator = own_workers("validator")
    client, adapter = valid_adapter(validator)
    validator.stop()
    starved = own_workers("starved")
    starve(starved, headroom=64 * 1024**2)

    job = request_merge(client)
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, state="queued", attempts=1).exists(),
        workers=(starved,),
    )
    job.refresh_from_db()
    assert "infrastructure error" in job.log_tail, job.log_tail
    assert job.error_code == ""  # not judged: no user-facing failure code
    starved.stop()
    healthy = own_workers("healthy")
    # Starved, the worker may not even manage to queue its retry; the resender (a beat
    # task) sends what was never sent. A duplicate message would be skipped.
    jobs_resend_unsent(older_than_seconds=0)
    done = wait_until(lambda: settled(job), timeout=180, workers=(healthy,))
    assert (done.state, done.attempts) == ("succeeded", 2), (done.error_code, done.log_tail)
    adapter.refresh_from_db()
    assert adapter.status == "valid"
    assert_one_whole_merged_revision(adapter, objects_before)
