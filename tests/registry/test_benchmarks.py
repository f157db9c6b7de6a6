"""Benchmark results, leaderboards and comparisons (results recorded directly)."""

from __future__ import annotations

import pytest

from hub.registry import benchmarks, services
from hub.registry.access import Actor
from hub.registry.lineage import DatasetRef, LineageSpec, Ref
from hub.registry.models import BenchmarkResult, Version
from tests.factories import adapter_files, base_model_files, make_token, make_user

pytestmark = pytest.mark.django_db


def publish(actor, repo, files, spec=None):
    import hashlib
    from io import BytesIO

    blobs = []
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        blobs.append(
            (path, services.blob_ingest(services.IncomingFile(path, len(data), sha, BytesIO(data))))
        )
    return services.version_publish(actor=actor, repository=repo, files=blobs, spec=spec).version


@pytest.fixture
def hub():
    owner = make_user("olga")
    actor = Actor.of(owner)
    base_repo = services.repository_create(
        actor=actor, namespace="olga", name="base", kind="base_model"
    )
    evals = services.repository_create(actor=actor, namespace="olga", name="evals", kind="dataset")
    eval_v1 = publish(actor, evals, {"texts.jsonl": b'{"text": "hello"}\n'})
    base = publish(
        actor,
        base_repo,
        base_model_files(),
        LineageSpec(evaluated_on=[DatasetRef(ref=Ref("olga/evals", "v1"))]),
    )
    services.version_set_status(version=base, status=Version.Status.VALID)
    adapters = []
    for name, private in (("good", False), ("better", False), ("secret", True)):
        repo = services.repository_create(
            actor=actor,
            namespace="olga",
            name=name,
            kind="adapter",
            visibility="private" if private else "public",
        )
        version = publish(actor, repo, adapter_files(), LineageSpec(base=Ref("olga/base", "v1")))
        services.version_set_status(version=version, status=Version.Status.VALID)
        version.refresh_from_db()
        adapters.append(version)
    return owner, base, eval_v1, adapters


def record(version, eval_set, base_value, adapter_value):
    return benchmarks.benchmark_record(
        version=version,
        eval_set=eval_set,
        code="test-1",
        metric="perplexity",
        base_value=base_value,
        adapter_value=adapter_value,
        device="cpu",
        result={"perplexity": adapter_value},
        job=None,
    )


def test_a_base_models_eval_sets_are_an_adapters_defaults(hub):
    _, _, eval_v1, adapters = hub
    assert benchmarks.eval_sets_for(adapters[0]) == [eval_v1]


def test_the_same_inputs_reuse_one_immutable_result(hub):
    _, _, eval_v1, adapters = hub
    first = record(adapters[0], eval_v1, 24.0, 20.0)
    again = record(adapters[0], eval_v1, 99.0, 99.0)
    assert again.pk == first.pk
    assert again.adapter_value == 20.0
    assert first.delta == pytest.approx(-4.0)
    assert BenchmarkResult.objects.count() == 1


def test_a_version_with_results_needs_no_new_job(hub):
    _, _, eval_v1, adapters = hub
    record(adapters[0], eval_v1, 24.0, 20.0)
    assert benchmarks.benchmark_request(actor=None, version=adapters[0]) is None


def test_the_leaderboard_ranks_lower_perplexity_first_and_hides_private_adapters(hub, api):
    owner, _, eval_v1, (good, better, secret) = hub
    record(good, eval_v1, 24.0, 22.0)
    record(better, eval_v1, 24.0, 18.0)
    record(secret, eval_v1, 24.0, 10.0)

    public = api().get("/api/v1/leaderboards/olga/base").json()
    (board,) = public["leaderboards"]
    assert board["lower_is_better"] is True
    assert [e["version"]["repo"] for e in board["entries"]] == ["olga/better", "olga/good"]
    assert board["entries"][0]["delta"] == pytest.approx(-6.0)

    mine = api(make_token(owner, "read")).get("/api/v1/leaderboards/olga/base").json()
    assert mine["leaderboards"][0]["entries"][0]["version"]["repo"] == "olga/secret"


def test_compare_shows_shared_benchmarks_side_by_side(hub, api):
    _, _, eval_v1, (good, better, _) = hub
    record(good, eval_v1, 24.0, 22.0)
    record(better, eval_v1, 24.0, 18.0)
    good.report = better.report = {"module_stats": [{"module": "q", "rank": 4, "delta_norm": 1.0}]}
    good.save()
    better.save()
    body = api().get("/api/v1/compare", {"a": "olga/good@v1", "b": "olga/better@v1"}).json()
    assert body["benchmarks"][0]["difference"] == pytest.approx(-4.0)
    assert body["modules"] == [
        {
            "module": "q",
            "rank_a": 4,
            "rank_b": 4,
            "delta_norm_a": 1.0,
            "delta_norm_b": 1.0,
            "change": "same rank",
        }
    ]


def test_an_invalid_version_is_never_benchmarked(hub):
    _, _, _, adapters = hub
    Version.objects.filter(pk=adapters[0].pk).update(status=Version.Status.INVALID)
    adapters[0].refresh_from_db()
    with pytest.raises(Exception, match="has not passed validation"):
        benchmarks.benchmark_request(actor=None, version=adapters[0])


def test_search_sorts_by_a_chosen_benchmark_score(hub, api):
    _, _, eval_v1, (good, better, secret) = hub
    record(good, eval_v1, 24.0, 22.0)
    record(better, eval_v1, 24.0, 18.0)
    record(secret, eval_v1, 24.0, 10.0)
    body = api().get("/api/v1/repos", {"sort": "score", "eval_set": "olga/evals"}).json()
    # Lower perplexity is better; the private adapter stays hidden; unscored repos drop out.
    assert [r["id"] for r in body["results"]] == ["olga/better", "olga/good"]
    missing = api().get("/api/v1/repos", {"sort": "score"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "eval_set_required"
