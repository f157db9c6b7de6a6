"""Pages render what the domain holds: home, search, repository, base model, compare, jobs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hub.registry import services
from hub.registry.jobs import job_request
from hub.registry.models import Job, Version
from tests.factories import make_user
from tests.web.hubdata import HubData, add_merged, quick_adapter

pytestmark = pytest.mark.django_db

ClientFor = Callable[[User | None], Client]


def text(response: Any) -> str:
    """The page's visible text, roughly: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    html = re.sub(r"</?(?:span|a|code|strong|em|time)\b[^>]*>", "", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- Home ----------------------------------------------------------------------------------


def test_home_lists_recent_and_popular_adapters_and_base_models_with_counts(
    hub: HubData, client_for: ClientFor
) -> None:
    page = client_for(None).get("/")
    assert page.status_code == 200
    body = text(page)
    assert "Recently updated adapters" in body
    for name in ("acme/instruct-lora", "acme/dialogue-lora", "alice/sts-lora"):
        assert name in body
    # Most downloaded: instruct (1,234) before dialogue (87).
    popular = body[body.index("Most downloaded") :]
    assert popular.index("acme/instruct-lora") < popular.index("acme/dialogue-lora")
    assert "acme/tiny-llama 3 adapters" in body  # the private one is not counted
    assert "3 adapters" in body
    assert "1 base model" in body


# --- Search --------------------------------------------------------------------------------


def result_names(page: Any) -> list[str]:
    return re.findall(r'class="card-title"><a href="/([^"]+)"', page.content.decode())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=adapter", {"acme/instruct-lora", "acme/dialogue-lora", "alice/sts-lora"}),
        ("kind=base_model", {"acme/tiny-llama"}),
        ("q=dialogue", {"acme/dialogue-lora"}),
        ("tag=chat", {"acme/instruct-lora", "acme/dialogue-lora"}),
        ("license=mit", {"alice/sts-lora"}),
        ("owner=alice", {"alice/sts-lora"}),
        ("base=acme/tiny-llama", {"acme/instruct-lora", "acme/dialogue-lora", "alice/sts-lora"}),
        ("rank_min=16", {"acme/dialogue-lora"}),
        ("rank_max=8&kind=adapter", {"acme/instruct-lora", "alice/sts-lora"}),
        ("status=valid&kind=dataset", {"acme/eval-set"}),
        ("rank_min=abc&kind=base_model", {"acme/tiny-llama"}),  # a bad value is ignored
    ],
)
def test_search_filters(
    hub: HubData, client_for: ClientFor, query: str, expected: set[str]
) -> None:
    page = client_for(None).get(f"/search?{query}")
    assert page.status_code == 200
    assert set(result_names(page)) == expected


def test_models_is_the_same_search(hub: HubData, client_for: ClientFor) -> None:
    page = client_for(None).get("/models?q=sts")
    assert result_names(page) == ["alice/sts-lora"]


def test_search_status_pending_finds_versions_awaiting_validation(
    hub: HubData, client_for: ClientFor
) -> None:
    quick_adapter(hub.alice, "fresh-lora", rank=None)
    page = client_for(None).get("/search?status=pending")
    assert result_names(page) == ["alice/fresh-lora"]
    assert "pending" in text(page)


def test_search_sorts_and_pages(hub: HubData, client_for: ClientFor) -> None:
    for i in range(22):
        quick_adapter(hub.bob, f"bulk-{i:02d}", n=10 + i)
    by_downloads = client_for(None).get("/search?kind=adapter")
    assert result_names(by_downloads)[:2] == ["acme/instruct-lora", "acme/dialogue-lora"]
    assert "Page 1 of 2" in text(by_downloads)
    by_name = client_for(None).get("/search?kind=adapter&sort=name&page=2")
    names = result_names(by_name)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert "Page 2 of 2" in text(by_name)
    recent = client_for(None).get("/search?kind=adapter&sort=recent")
    assert result_names(recent)[0] == "bob/bulk-21"


def test_search_shows_facets_with_counts_and_result_details(
    hub: HubData, client_for: ClientFor
) -> None:
    page = client_for(None).get("/search?kind=adapter")
    body = text(page)
    assert re.search(r"chat\s*2", body)
    assert re.search(r"acme/tiny-llama\s*3", body)
    assert re.search(r"apache-2\.0\s*2", body)
    # Each result: base model, status, rank, size, downloads, last update.
    card = body[body.index("acme/dialogue-lora") :]
    assert "base acme/tiny-llama" in card
    assert "valid" in card
    assert "rank 32" in card
    assert "size" in card
    assert "downloads 87" in card
    assert "updated" in card


# --- Repository pages ----------------------------------------------------------------------


def test_adapter_page_shows_card_files_versions_report_lineage_and_usage(
    hub: HubData, client_for: ClientFor
) -> None:
    page = client_for(None).get("/acme/instruct-lora")
    assert page.status_code == 200
    html = page.content.decode()
    body = text(page)
    # Model card: README.md rendered (its "# title" sits under the page's h1).
    assert "<h2>Instruct LoRA</h2>" in html
    assert "<table" in html
    assert "learning rate" in body
    assert "license: apache-2.0" not in body  # the YAML header is not shown
    # Files with size and sha256, downloading through the REST API.
    weights = hub.instruct_v1.files.get(path="adapter_model.safetensors").blob
    assert weights.sha256 in html
    assert (
        'href="/api/v1/repos/acme/instruct-lora/versions/v1/files/adapter_model.safetensors"'
        in html
    )
    assert "Rank 8 on q/v" in body
    # Report facts and serving compatibility.
    assert "No findings" in body
    assert "Rank 8 fits the default max_lora_rank 16" in body
    # Lineage: an SVG whose nodes link to versions.
    assert "<svg" in html
    assert 'href="/acme/tiny-llama/v/v1"' in html
    assert 'href="/acme/eval-set/v/v1"' in html
    assert 'href="/acme/dialogue-lora/v/v1"' in html  # a descendant
    # Usage snippets filled in for this adapter and version.
    assert "strata pull acme/instruct-lora@v1" in body
    assert "HF_ENDPOINT=http://127.0.0.1:8000/hf" in body
    assert (
        'hf_hub_download( repo_id="acme/instruct-lora", '
        'filename="adapter_model.safetensors", revision="v1" )' in body.replace("&quot;", '"')
    )
    assert 'PeftModel.from_pretrained(base, "acme/instruct-lora", revision="v1")' in html.replace(
        "&quot;", '"'
    )
    assert "AutoModelForCausalLM.from_pretrained(&quot;acme/tiny-llama&quot;" in html
    assert "--lora-modules instruct-lora=acme/instruct-lora" in body
    assert "lr" in body
    assert "0.0002" in body
    assert 'id="benchmarks"' not in html  # the hook renders nothing without data


def test_findings_rank_and_stack_are_shown(hub: HubData, client_for: ClientFor) -> None:
    body = text(client_for(None).get("/acme/dialogue-lora"))
    assert "1 warning" in body
    assert "1 note" in body
    assert "base_model_name_mismatch" in body
    assert "Rank 32: start vLLM with --max-lora-rank 32" in body
    assert "--max-lora-rank 32" in body
    assert "stacked on, applied in order" in body.lower()
    assert "https://example.org/datasets/dialogue-mix" in body
    assert "Stacked on acme/instruct-lora@v1" in body


def test_an_older_version_page_pins_its_revision(hub: HubData, client_for: ClientFor) -> None:
    page = client_for(None).get("/alice/sts-lora/v/v1")
    body = text(page)
    assert "Viewing v1" in body
    assert "strata pull alice/sts-lora@v1" in body
    # vLLM loads LoRA modules at their default revision: v1 (not main) is downloaded first.
    assert "hf download alice/sts-lora --revision v1 --local-dir ./sts-lora-v1" in body
    assert "Go to the current version" in body
    assert "Epoch 1" in body
    assert "Epoch 2, rank 8" in body


def test_merged_weights_are_listed_with_a_download_link(
    hub: HubData, client_for: ClientFor
) -> None:
    add_merged(hub.instruct_v1)
    html = client_for(None).get("/acme/instruct-lora").content.decode()
    assert 'href="/acme/instruct-lora/v/v1-merged"' in html
    assert "/api/v1/repos/acme/instruct-lora/versions/v1-merged/files/model.safetensors" in html
    merged = client_for(None).get("/acme/instruct-lora/v/v1-merged")
    assert merged.status_code == 200
    assert "Viewing v1-merged" in text(merged)


def test_unknown_repository_and_revision_are_404_pages(hub: HubData, client_for: ClientFor) -> None:
    assert client_for(None).get("/acme/nope").status_code == 404
    assert client_for(None).get("/acme/instruct-lora/v/v9").status_code == 404
    assert client_for(None).get("/nobody").status_code == 404
    missing = client_for(None).get("/acme/nope")
    assert "Not found" in text(missing)


def test_invalid_versions_show_to_writers_only(hub: HubData, client_for: ClientFor) -> None:
    bad = quick_adapter(hub.alice, "broken-lora", namespace="acme", rank=None)[1]
    services.version_set_status(
        version=bad,
        status="invalid",
        report={
            "status": "invalid",
            "findings": [
                {
                    "code": "shape_mismatch",
                    "severity": "error",
                    "message": "lora_B of q_proj is 17x4; the base layer needs 16 rows.",
                    "module": "model.layers.0.self_attn.q_proj",
                }
            ],
            "facts": {},
        },
    )
    writer = text(client_for(hub.bob).get("/acme/broken-lora"))
    assert "lora_B of q_proj is 17x4" in writer
    assert "1 error" in writer
    reader = client_for(hub.carol).get("/acme/broken-lora/v/v1")
    assert reader.status_code == 404
    assert "v1" not in re.findall(r'class="version-label"[^>]*>([^<]+)<', text(reader))


def test_a_repository_without_versions_invites_an_upload(
    hub: HubData, client_for: ClientFor
) -> None:
    from hub.registry.access import Actor

    services.repository_create(
        actor=Actor(user=hub.bob), namespace="bob", name="empty", kind="adapter"
    )
    owner = text(client_for(hub.bob).get("/bob/empty"))
    assert "No versions yet" in owner
    assert "Upload files" in owner
    other = text(client_for(None).get("/bob/empty"))
    assert "Nothing has been published here yet" in other


def test_base_model_page_shows_manifest_and_adapters(hub: HubData, client_for: ClientFor) -> None:
    body = text(client_for(None).get("/acme/tiny-llama"))
    assert "Manifest" in body
    assert "TinyForCausalLM" in body
    assert "1,024" in body
    assert "model.layers.0.mlp.up_proj.weight" in body
    assert re.search(r"Adapters built on tiny-llama\s+3", body)
    assert 'AutoModelForCausalLM.from_pretrained("acme/tiny-llama", revision="v1")' in body.replace(
        "&quot;", '"'
    )


def test_dataset_page(hub: HubData, client_for: ClientFor) -> None:
    body = text(client_for(None).get("/acme/eval-set"))
    assert "prompts.jsonl" in body
    assert 'repo_type="dataset"' in body.replace("&quot;", '"')


def test_lineage_page_orders_the_stack(hub: HubData, client_for: ClientFor) -> None:
    page = client_for(None).get("/acme/dialogue-lora/v/v1/lineage")
    assert page.status_code == 200
    body = text(page)
    order = [
        body.index(n)
        for n in (
            "base model acme/tiny-llama",
            "adapter acme/instruct-lora",
            "this adapter acme/dialogue-lora",
        )
    ]
    assert order == sorted(order)
    html = page.content.decode()
    assert 'aria-current="page"' in html
    assert "stacked #1" in html
    assert "trained on" in html


# --- Compare -------------------------------------------------------------------------------


def test_compare_shows_config_modules_and_norms(hub: HubData, client_for: ClientFor) -> None:
    page = client_for(None).get("/alice/sts-lora/compare/v1...v2")
    assert page.status_code == 200
    html = page.content.decode()
    body = text(page)
    assert "adapter_config.json" in body
    assert "3 changed keys" in body  # r, lora_alpha and the new lora_dropout
    assert re.search(r'row-changed"><th scope="row" class="mono">lora_dropout', html)
    assert "model.layers.0.mlp.up_proj" in body  # a module only v2 has
    assert "‖ΔW‖" in body
    assert "+0.364" in body
    assert "LoRA modules" in body


def test_compare_defaults_to_the_two_newest_and_accepts_query_parameters(
    hub: HubData, client_for: ClientFor
) -> None:
    redirect = client_for(None).get("/alice/sts-lora/compare")
    assert redirect.status_code == 302
    assert redirect["Location"] == "/alice/sts-lora/compare/v1...v2"
    swapped = client_for(None).get("/alice/sts-lora/compare?a=v2&b=v1")
    assert swapped.status_code == 200
    assert "Compare v2 and v1" in text(swapped)
    single = client_for(None).get("/acme/instruct-lora/compare")
    assert "needs two versions" in text(single)


def test_compare_says_when_reports_are_missing(hub: HubData, client_for: ClientFor) -> None:
    Version.objects.filter(pk=hub.sts_v1.pk).update(report=None)
    body = text(client_for(None).get("/alice/sts-lora/compare/v1...v2"))
    assert "No validation report yet for v1" in body


# --- Jobs ----------------------------------------------------------------------------------


def test_job_page_shows_state_timings_device_log_and_result(
    hub: HubData, client_for: ClientFor
) -> None:
    job = Job.objects.get(version=hub.instruct_v1, kind="validate")
    Job.objects.filter(pk=job.pk).update(
        state="failed",
        device="cpu",
        worker_host="worker-7",
        attempts=1,
        log_tail="reading adapter_model.safetensors\nfailed: no handler",
        error_code="unsupported_job",
        error_message="This hub cannot run validate jobs.",
        started_at=job.created_at,
        finished_at=job.created_at,
    )
    page = client_for(None).get(f"/jobs/{job.pk}")
    assert page.status_code == 200
    body = text(page)
    assert "Validate job" in body
    assert "failed" in body
    assert "This hub cannot run validate jobs." in body
    assert "unsupported_job" in body
    assert "worker-7" in body
    assert "reading adapter_model.safetensors" in body
    assert "data-job-live" not in page.content.decode()  # final: nothing to follow


def test_a_running_job_page_follows_the_job(hub: HubData, client_for: ClientFor) -> None:
    job = Job.objects.get(version=hub.base_v1)
    Job.objects.filter(pk=job.pk).update(state="running", finished_at=None)
    html = client_for(None).get(f"/jobs/{job.pk}").content.decode()
    assert f'data-job-live="/api/v1/jobs/{job.pk}"' in html


def test_job_list_is_per_user(hub: HubData, client_for: ClientFor) -> None:
    mine = text(client_for(hub.alice).get("/jobs"))
    assert "acme/instruct-lora v1" in mine
    assert "alice/sts-lora v2" in mine
    theirs = text(client_for(hub.bob).get("/jobs"))
    assert "No jobs yet" in theirs
    requested, _ = job_request(
        kind=Job.Kind.FINALIZE_UPLOAD,
        version=None,
        params={"repository": "bob/thing"},
        requested_by=hub.bob,
    )
    theirs = text(client_for(hub.bob).get("/jobs"))
    assert "bob/thing" in theirs
    assert client_for(hub.bob).get(f"/jobs/{requested.pk}").status_code == 200
    assert client_for(hub.carol).get(f"/jobs/{requested.pk}").status_code == 404
    assert client_for(None).get("/jobs").status_code == 302  # sign in first


# --- Autocomplete --------------------------------------------------------------------------


def test_autocomplete_lists_visible_repositories(hub: HubData, client_for: ClientFor) -> None:
    data = client_for(None).get("/-/complete?q=tiny").json()
    assert data["results"] == [
        {"id": "acme/tiny-llama", "description": hub.base.description[:120], "main": "v1"}
    ]
    adapters = client_for(None).get("/-/complete?kind=adapter&q=acme/").json()["results"]
    assert {r["id"] for r in adapters} == {"acme/instruct-lora", "acme/dialogue-lora"}
    assert client_for(None).get("/-/complete?kind=nonsense").status_code == 400


def test_signed_in_header_and_namespace_page(hub: HubData, client_for: ClientFor) -> None:
    page = client_for(hub.alice).get("/alice")
    body = text(page)
    assert "alice/sts-lora" in body
    assert "user" in body
    assert "Sign out" in body
    assert "API tokens" in body
    make_user("dave")
    assert "No repositories you can see" in text(client_for(None).get("/dave"))
