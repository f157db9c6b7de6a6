"""Publishing versions in one multipart request, and pulling them back.

Covers version numbering, dedupe, push metadata and lineage, aliases, the lineage
endpoint, downloads (S3 redirects and local ranged streams) and bad input: every refusal
is a JSON error with a stable code, and nothing is half-written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from rest_framework.test import APIClient

from hub.registry import services
from hub.registry.models import Alias, Blob, Job, Repository, Version, VersionFile
from hub.registry.storage import S3BlobStore, blob_key, get_blob_store
from tests.factories import adapter_files, base_model_files, make_token, make_user, multipart

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers --------------------------------------------------------------------------


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return str(body["error"]["code"])


def create_repo(client: APIClient, name: str, kind: str, **fields: Any) -> str:
    response = client.post(f"{API}/repos", {"name": name, "kind": kind, **fields}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def push(
    client: APIClient, repo: str, files: dict[str, bytes], metadata: dict[str, Any] | None = None
) -> Any:
    return client.post(f"{API}/repos/{repo}/versions", multipart(files, metadata))


def pushed(
    client: APIClient, repo: str, files: dict[str, bytes], metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = push(client, repo, files, metadata)
    assert response.status_code == 201, response.content
    return dict(response.json())


def mark(repo: str, label: str, status: str = Version.Status.VALID) -> Version:
    """Record a check outcome directly (validation itself runs in workers)."""
    ns, name = repo.split("/")
    version = Version.objects.get(
        repository__namespace__name=ns, repository__name=name, number=int(label[1:])
    )
    services.version_set_status(version=version, status=status)
    return version


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3() -> S3BlobStore:
    store = get_blob_store()
    assert isinstance(store, S3BlobStore), "these tests run against S3 (moto)"
    return store


def rows() -> tuple[int, set[str]]:
    """What a refused push must leave untouched: the versions and the stored blobs."""
    return Version.objects.count(), set(Blob.objects.values_list("sha256", flat=True))


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def alice(api: Callable[..., APIClient]) -> APIClient:
    return api(make_token(make_user("alice")))


@pytest.fixture
def bob(api: Callable[..., APIClient]) -> APIClient:
    return api(make_token(make_user("bob")))


@pytest.fixture
def base(alice: APIClient) -> str:
    """alice/tiny-base with a valid v1 (main)."""
    repo = create_repo(alice, "tiny-base", "base_model")
    pushed(alice, repo, base_model_files())
    mark(repo, "v1")
    return repo


# --- publishing -----------------------------------------------------------------------


def test_a_multipart_push_publishes_v1_with_each_files_size_and_sha256(alice, base):
    repo = create_repo(alice, "my-lora", "adapter", license="mit")
    files = adapter_files(base=base)
    body = pushed(alice, repo, files, {"base_model": base, "message": "first cut"})

    assert body["label"] == "v1"
    assert body["number"] == 1
    assert body["status"] == "pending"
    assert body["message"] == "first cut"
    assert len(body["commit_id"]) == 40
    expected = [
        {"path": p, "size": len(b), "sha256": sha(b), "uploaded_sha256": None}
        for p, b in sorted(files.items())
    ]
    assert sorted(body["files"], key=lambda f: f["path"]) == expected
    assert [j["kind"] for j in body["jobs"]] == ["validate"]
    listed = alice.get(f"{API}/repos/{repo}/versions/v1/files").json()
    assert listed == expected


def test_a_config_naming_a_local_base_is_served_naming_the_hubs_base(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(base="/kaggle/input/llama-local-copy")
    pushed(alice, repo, files, {"base_model": base})

    listed = {f["path"]: f for f in alice.get(f"{API}/repos/{repo}/versions/v1/files").json()}
    config = listed["adapter_config.json"]
    assert config["uploaded_sha256"] == sha(files["adapter_config.json"])
    location = alice.get(f"{API}/repos/{repo}/versions/v1/files/adapter_config.json")["Location"]
    served = requests.get(location, timeout=30).content
    assert sha(served) == config["sha256"]
    assert json.loads(served)["base_model_name_or_path"] == base
    # Pushing the original folder again is recognised as the same version.
    again = alice.post(f"{API}/repos/{repo}/versions", multipart(files, {"base_model": base}))
    assert again.status_code == 200, again.content


def test_version_numbers_increase_by_one_per_push(alice):
    repo = create_repo(alice, "corpus", "dataset")
    labels = [
        pushed(alice, repo, {"train.jsonl": f'{{"i": {i}}}\n'.encode()})["label"] for i in range(4)
    ]
    assert labels == ["v1", "v2", "v3", "v4"]
    listed = alice.get(f"{API}/repos/{repo}/versions").json()
    assert [v["label"] for v in listed] == ["v4", "v3", "v2", "v1"]


def test_repeating_the_newest_version_exactly_returns_it_without_a_copy(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files()
    first = pushed(alice, repo, files, {"base_model": base})

    again = push(alice, repo, files, {"base_model": base})

    assert again.status_code == 200, again.content
    assert again.json()["commit_id"] == first["commit_id"]
    assert Version.objects.filter(repository__name="my-lora").count() == 1


def test_the_same_files_with_other_lineage_or_training_params_make_a_new_version(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files()
    pushed(alice, repo, files, {"base_model": base, "message": "first"})

    # The message describes the push, not the content: still a repeat.
    assert push(alice, repo, files, {"base_model": base, "message": "again"}).status_code == 200
    with_data = push(alice, repo, files, {"base_model": base, "datasets": ["hf://org/chat"]})
    assert (with_data.status_code, with_data.json()["label"]) == (201, "v2")
    meta = {"base_model": base, "datasets": ["hf://org/chat"], "training_params": {"lr": 1e-4}}
    with_params = push(alice, repo, files, meta)
    assert (with_params.status_code, with_params.json()["label"]) == (201, "v3")
    repeat = push(alice, repo, files, meta)
    assert (repeat.status_code, repeat.json()["label"]) == (200, "v3")


def test_identical_bytes_are_stored_once(alice, base, monkeypatch):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files()
    pushed(alice, repo, files, {"base_model": base})
    other = create_repo(alice, "other-lora", "adapter")
    uploads: list[str] = []
    real_put = S3BlobStore.put_file

    def spy(self: S3BlobStore, key: str, *args: Any, **kwargs: Any) -> None:
        uploads.append(key)
        real_put(self, key, *args, **kwargs)

    monkeypatch.setattr(S3BlobStore, "put_file", spy)
    changed_config = {**files, "adapter_config.json": files["adapter_config.json"] + b" "}
    pushed(alice, other, changed_config, {"base_model": base})

    weights = sha(files["adapter_model.safetensors"])
    # Only the changed config went to storage; the weights were already there.
    assert uploads == [blob_key(sha(changed_config["adapter_config.json"]))]
    assert Blob.objects.filter(sha256=weights).count() == 1
    assert VersionFile.objects.filter(blob_id=weights).count() == 2
    listing = s3().client.list_objects_v2(Bucket=s3().bucket, Prefix=blob_key(weights))
    assert [o["Key"] for o in listing["Contents"]] == [blob_key(weights)]


def test_a_large_pushed_file_goes_to_s3_from_its_spool_file_by_path(alice, monkeypatch):
    """Above the multipart threshold the hub uploads the spooled temp file by its path:
    boto3's upload_fileobj would hold whole 64 MiB parts in the web worker's memory."""
    from boto3.s3.transfer import TransferConfig

    store = s3()
    mib = 1024 * 1024
    small_parts = TransferConfig(multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    monkeypatch.setattr(store, "transfer_config", small_parts)
    by_path: list[tuple[str, str]] = []
    real_upload_file = store.client.upload_file

    def upload_file(filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        by_path.append((filename, key))
        real_upload_file(filename, bucket, key, **kwargs)

    def no_fileobj(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a spooled file must not go through upload_fileobj")

    monkeypatch.setattr(store.client, "upload_file", upload_file)
    monkeypatch.setattr(store.client, "upload_fileobj", no_fileobj)
    repo = create_repo(alice, "corpus", "dataset")
    big = hashlib.sha256(b"big").digest() * (6 * mib // 32)

    body = pushed(alice, repo, {"train.jsonl": big})

    assert [key for _, key in by_path] == [blob_key(sha(big))]
    assert body["files"] == [
        {"path": "train.jsonl", "size": len(big), "sha256": sha(big), "uploaded_sha256": None}
    ]
    location = alice.get(f"{API}/repos/{repo}/versions/v1/files/train.jsonl")["Location"]
    assert sha(requests.get(location, timeout=60).content) == sha(big)


def test_a_dataset_version_is_valid_and_main_at_once(alice):
    repo = create_repo(alice, "corpus", "dataset")
    body = pushed(alice, repo, {"train.jsonl": b'{"a": 1}\n', "README.md": b"# data"})
    assert body["status"] == "valid"
    assert alice.get(f"{API}/repos/{repo}").json()["main"]["label"] == "v1"


# --- metadata and lineage --------------------------------------------------------------


def test_an_adapter_without_a_base_revision_pins_the_bases_current_main(alice, base):
    pushed(alice, base, base_model_files(seed=5))  # v2, pending: main stays v1
    repo = create_repo(alice, "my-lora", "adapter")

    body = pushed(alice, repo, adapter_files(), {"base_model": base})

    assert body["metadata"]["base_revision"] == "v1"
    (edge,) = body["lineage"]
    assert edge["kind"] == "adapter_of"
    assert edge["parent"]["repo"] == base
    assert edge["parent"]["label"] == "v1"
    mark(base, "v2")
    # Later pushes pin the new main; the first version keeps what it was built on.
    second = pushed(alice, repo, adapter_files(seed=2), {"base_model": base})
    assert second["metadata"]["base_revision"] == "v2"
    assert alice.get(f"{API}/repos/{repo}/versions/v1").json()["metadata"]["base_revision"] == "v1"


def test_an_adapter_may_name_an_exact_base_revision(alice, base):
    pushed(alice, base, base_model_files(seed=5))
    mark(base, "v2")
    repo = create_repo(alice, "my-lora", "adapter")
    body = pushed(alice, repo, adapter_files(), {"base_model": f"{base}@v1"})
    assert body["metadata"]["base_revision"] == "v1"
    assert alice.get(f"{API}/repos/{repo}").json()["base_model"] == base


def test_every_declared_relation_is_recorded(alice, base):
    corpus = create_repo(alice, "chat-data", "dataset")
    pushed(alice, corpus, {"data.jsonl": b'{"q": 1}\n'})
    evals = create_repo(alice, "evals", "dataset")
    pushed(alice, evals, {"eval.jsonl": b'{"q": 2}\n'})
    first = create_repo(alice, "style", "adapter")
    pushed(alice, first, adapter_files(seed=3), {"base_model": base})
    mark(first, "v1")  # named without a revision: resolved through main
    second = create_repo(alice, "tone", "adapter")
    pushed(alice, second, adapter_files(seed=4), {"base_model": base})  # pending, named @v1
    start = create_repo(alice, "draft", "adapter")
    pushed(alice, start, adapter_files(seed=5), {"base_model": base})
    mark(start, "v1")
    repo = create_repo(alice, "my-lora", "adapter")

    params = {"lr": 2e-4, "epochs": 3, "schedule": {"kind": "cosine", "warmup": 100}}
    body = pushed(
        alice,
        repo,
        adapter_files(),
        {
            "base_model": base,
            "stacked_on": [f"{second}@v1", first],
            "finetuned_from": start,
            "datasets": [corpus, "https://example.org/data/sft.parquet"],
            "eval_sets": [f"{evals}@v1"],
            "training_params": params,
            "message": "stacked on tone, then style",
        },
    )

    assert body["message"] == "stacked on tone, then style"
    assert body["metadata"] == {"training_params": params, "base_revision": "v1"}
    edges = [
        (e["kind"], e["position"], e["parent"]["repo"] if e["parent"] else e["external_uri"])
        for e in body["lineage"]
    ]
    assert sorted(edges) == sorted(
        [
            ("adapter_of", 0, base),
            ("stacked_on", 0, second),
            ("stacked_on", 1, first),
            ("finetuned_from", 0, start),
            ("trained_on", 0, corpus),
            ("trained_on", 1, "https://example.org/data/sft.parquet"),
            ("evaluated_on", 0, evals),
        ]
    )


def test_a_stack_whose_parents_have_another_base_is_refused(alice, base):
    other_base = create_repo(alice, "other-base", "base_model")
    pushed(alice, other_base, base_model_files(seed=9))
    mark(other_base, "v1")
    parent = create_repo(alice, "style", "adapter")
    pushed(alice, parent, adapter_files(seed=3), {"base_model": other_base})
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(seed=11)
    before = rows()

    response = push(alice, repo, files, {"base_model": base, "stacked_on": [f"{parent}@v1"]})

    assert response.status_code == 400
    assert error_code(response) == "stack_base_mismatch"
    assert other_base in response.json()["error"]["message"]
    assert rows() == before


def test_a_stack_on_another_revision_of_the_same_base_is_refused(alice, base):
    parent = create_repo(alice, "style", "adapter")
    pushed(alice, parent, adapter_files(seed=3), {"base_model": base})  # on v1
    pushed(alice, base, base_model_files(seed=5))
    mark(base, "v2")
    repo = create_repo(alice, "my-lora", "adapter")
    response = push(
        alice, repo, adapter_files(seed=11), {"base_model": base, "stacked_on": [f"{parent}@v1"]}
    )
    assert response.status_code == 400
    assert error_code(response) == "stack_base_mismatch"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_model", "alice/no-such-base"),
        ("base_model", "carol/private-base"),
        ("base_model", "alice/tiny-base@v9"),
        ("stacked_on", ["carol/private-lora"]),
        ("finetuned_from", "alice/missing-lora"),
        ("datasets", ["carol/private-data"]),
        ("eval_sets", ["nobody/nothing"]),
    ],
)
def test_a_reference_that_is_missing_or_private_to_others_is_refused(
    alice, base, api, field, value
):
    carol = api(make_token(make_user("carol")))
    private_base = create_repo(carol, "private-base", "base_model", visibility="private")
    pushed(carol, private_base, base_model_files(seed=4))
    mark(private_base, "v1")
    create_repo(carol, "private-lora", "adapter", visibility="private")
    private_data = create_repo(carol, "private-data", "dataset", visibility="private")
    pushed(carol, private_data, {"d.jsonl": b"{}\n"})
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(seed=21)
    metadata = {"base_model": base, field: value}
    before = rows()

    response = push(alice, repo, files, metadata)

    assert response.status_code == 400, response.content
    assert error_code(response) == "reference_not_found"
    assert rows() == before


def test_a_private_reference_reads_exactly_like_a_missing_one(alice, api):
    carol = api(make_token(make_user("carol")))
    create_repo(carol, "hidden", "base_model", visibility="private")
    repo = create_repo(alice, "my-lora", "adapter")
    private = push(alice, repo, adapter_files(), {"base_model": "carol/hidden"}).json()
    missing = push(alice, repo, adapter_files(), {"base_model": "carol/absent"}).json()
    assert private["error"]["message"].replace("hidden", "X") == missing["error"][
        "message"
    ].replace("absent", "X")


@pytest.mark.parametrize(
    ("field", "target"),
    [
        ("base_model", "alice/my-data"),
        ("stacked_on", ["alice/tiny-base"]),
        ("finetuned_from", "alice/my-data"),
        ("datasets", ["alice/tiny-base"]),
    ],
)
def test_a_reference_of_the_wrong_kind_is_refused(alice, base, field, target):
    data = create_repo(alice, "my-data", "dataset")
    pushed(alice, data, {"d.jsonl": b"{}\n"})
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files(seed=31)
    metadata: dict[str, Any] = {"base_model": base}
    metadata[field] = target
    before = rows()

    response = push(alice, repo, files, metadata)

    assert response.status_code == 400
    assert error_code(response) == "reference_wrong_kind"
    assert rows() == before


def test_an_adapter_must_declare_its_base(alice):
    repo = create_repo(alice, "my-lora", "adapter")
    response = push(alice, repo, adapter_files())
    assert response.status_code == 400
    assert error_code(response) == "base_required"


def test_a_base_without_a_valid_version_cannot_be_built_on(alice):
    base = create_repo(alice, "new-base", "base_model")
    pushed(alice, base, base_model_files())  # pending: no main yet
    repo = create_repo(alice, "my-lora", "adapter")
    response = push(alice, repo, adapter_files(), {"base_model": base})
    assert response.status_code == 400
    assert error_code(response) == "reference_not_found"
    assert "no valid version" in response.json()["error"]["message"]


# --- main and other aliases -------------------------------------------------------------


def test_main_follows_the_newest_valid_version(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")

    def main() -> str | None:
        m = alice.get(f"{API}/repos/{repo}").json()["main"]
        return m["label"] if m else None

    pushed(alice, repo, adapter_files(seed=1), {"base_model": base})
    assert main() is None  # pending versions are never main
    mark(repo, "v1")
    assert main() == "v1"
    pushed(alice, repo, adapter_files(seed=2), {"base_model": base})
    assert main() == "v1"
    pushed(alice, repo, adapter_files(seed=3), {"base_model": base})
    mark(repo, "v3")
    assert main() == "v3"
    mark(repo, "v2")  # an older version turning valid does not move main back
    assert main() == "v3"
    mark(repo, "v3", Version.Status.INVALID)
    assert main() == "v2"
    download = alice.get(f"{API}/repos/{repo}/versions/main/files/adapter_model.safetensors")
    assert (
        download["X-Strata-Commit"]
        == Version.objects.get(repository__name="my-lora", number=2).commit_id
    )


def test_owners_set_move_and_delete_aliases(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    for seed in (1, 2):
        pushed(alice, repo, adapter_files(seed=seed), {"base_model": base})
        mark(repo, f"v{seed}")

    created = alice.put(f"{API}/repos/{repo}/aliases/stable", {"version": "v1"}, format="json")
    assert created.status_code == 200, created.content
    assert created.json() == {"name": "stable", "version": "v1"}
    v2 = alice.get(f"{API}/repos/{repo}/versions/v2").json()["commit_id"]
    moved = alice.put(f"{API}/repos/{repo}/aliases/stable", {"version": v2}, format="json")
    assert moved.json()["version"] == "v2"
    chained = alice.put(f"{API}/repos/{repo}/aliases/prod", {"version": "stable"}, format="json")
    assert chained.json()["version"] == "v2"
    aliases = alice.get(f"{API}/repos/{repo}/aliases").json()
    assert [(a["name"], a["version"]) for a in aliases] == [
        ("main", "v2"),
        ("prod", "v2"),
        ("stable", "v2"),
    ]
    assert alice.get(f"{API}/repos/{repo}/versions/stable").json()["label"] == "v2"

    assert alice.delete(f"{API}/repos/{repo}/aliases/stable").status_code == 204
    gone = alice.get(f"{API}/repos/{repo}/versions/stable")
    assert gone.status_code == 404
    assert error_code(gone) == "revision_not_found"
    again = alice.delete(f"{API}/repos/{repo}/aliases/stable")
    assert again.status_code == 404
    assert error_code(again) == "alias_not_found"


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("main", "alias_reserved"),
        ("v3", "invalid_alias"),
        ("v12-merged", "invalid_alias"),
        ("0123456789abcdef0123456789abcdef01234567", "invalid_alias"),
        ("a" * 65, "invalid_alias"),
        ("-dash", "invalid_alias"),
    ],
)
def test_reserved_and_ambiguous_alias_names_are_refused(alice, base, alias, code):
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(alice, repo, adapter_files(), {"base_model": base})
    response = alice.put(f"{API}/repos/{repo}/aliases/{alias}", {"version": "v1"}, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert not Alias.objects.filter(repository__name="my-lora").exists()


def test_main_cannot_be_deleted_and_others_cannot_set_aliases(alice, bob, base):
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(alice, repo, adapter_files(), {"base_model": base})
    mark(repo, "v1")
    refused = alice.delete(f"{API}/repos/{repo}/aliases/main")
    assert refused.status_code == 400
    assert error_code(refused) == "alias_reserved"
    foreign = bob.put(f"{API}/repos/{repo}/aliases/stable", {"version": "v1"}, format="json")
    assert foreign.status_code == 403
    assert error_code(foreign) == "forbidden"
    assert bob.delete(f"{API}/repos/{repo}/aliases/main").status_code == 403


def test_an_alias_cannot_point_at_an_invalid_version(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(alice, repo, adapter_files(), {"base_model": base})
    mark(repo, "v1", Version.Status.INVALID)
    response = alice.put(f"{API}/repos/{repo}/aliases/stable", {"version": "v1"}, format="json")
    assert response.status_code == 400
    assert error_code(response) == "alias_invalid_version"


# --- lineage endpoint -----------------------------------------------------------------


def test_the_lineage_endpoint_returns_nodes_edges_and_the_stack(alice, base):
    corpus = create_repo(alice, "chat-data", "dataset")
    pushed(alice, corpus, {"data.jsonl": b'{"q": 1}\n'})
    parent = create_repo(alice, "style", "adapter")
    pushed(alice, parent, adapter_files(seed=3), {"base_model": base})
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(
        alice,
        repo,
        adapter_files(),
        {
            "base_model": base,
            "stacked_on": [f"{parent}@v1"],
            "datasets": [corpus, "s3://bucket/x.jsonl"],
        },
    )
    child = create_repo(alice, "child", "adapter")
    pushed(
        alice, child, adapter_files(seed=7), {"base_model": base, "finetuned_from": f"{repo}@v1"}
    )

    body = alice.get(f"{API}/repos/{repo}/versions/v1/lineage").json()

    assert body["root"]["repo"] == repo
    nodes = {n["id"]: n["repo"] for n in body["nodes"]}
    assert sorted(nodes.values()) == sorted([repo, base, parent, corpus, child])
    edges = {
        (nodes.get(e["child"]), e["kind"], nodes.get(e["parent"]) or e["external_uri"])
        for e in body["edges"]
    }
    assert edges == {
        (repo, "adapter_of", base),
        (repo, "stacked_on", parent),
        (repo, "trained_on", corpus),
        (repo, "trained_on", "s3://bucket/x.jsonl"),
        (parent, "adapter_of", base),
        (child, "finetuned_from", repo),  # descendants only, not their other parents
    }
    assert [s["repo"] for s in body["stack"]] == [base, parent, repo]


def test_the_lineage_endpoint_reads_a_level_at_a_time_whatever_its_width(alice, base):
    from django.db import connection

    def queries_for_lineage() -> int:
        count = [0]

        def counting(execute, *args):
            count[0] += 1
            return execute(*args)

        with connection.execute_wrapper(counting):
            answer = alice.get(f"{API}/repos/{base}/versions/v1/lineage")
        assert answer.status_code == 200
        return count[0]

    def add_adapters(first: int, last: int) -> None:
        for i in range(first, last):
            repo = create_repo(alice, f"on-base-{i}", "adapter")
            pushed(alice, repo, adapter_files(seed=40 + i), {"base_model": base})

    add_adapters(0, 2)
    narrow = queries_for_lineage()
    add_adapters(2, 10)
    wide = queries_for_lineage()
    assert len(alice.get(f"{API}/repos/{base}/versions/v1/lineage").json()["nodes"]) == 11
    assert wide == narrow


def test_private_lineage_nodes_are_hidden_from_others(alice, bob, base):
    secret = create_repo(alice, "secret-style", "adapter", visibility="private")
    pushed(alice, secret, adapter_files(seed=3), {"base_model": base})
    secret_data = create_repo(alice, "secret-data", "dataset", visibility="private")
    pushed(alice, secret_data, {"d.jsonl": b"{}\n"})
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(
        alice,
        repo,
        adapter_files(),
        {"base_model": base, "stacked_on": [f"{secret}@v1"], "datasets": [secret_data]},
    )
    secret_child = create_repo(alice, "secret-child", "adapter", visibility="private")
    pushed(
        alice,
        secret_child,
        adapter_files(seed=8),
        {"base_model": base, "finetuned_from": f"{repo}@v1"},
    )

    mine = alice.get(f"{API}/repos/{repo}/versions/v1/lineage").json()
    theirs = bob.get(f"{API}/repos/{repo}/versions/v1/lineage").json()
    anonymous = APIClient().get(f"{API}/repos/{repo}/versions/v1/lineage").json()

    assert {n["repo"] for n in mine["nodes"]} == {repo, base, secret, secret_data, secret_child}
    for view in (theirs, anonymous):
        assert {n["repo"] for n in view["nodes"]} == {repo, base}
        ids = {n["id"] for n in view["nodes"]}
        assert all(e["child"] in ids and e["parent"] in ids for e in view["edges"])
        assert [s["repo"] for s in view["stack"]] == [base, repo]
        assert "secret" not in json.dumps(view)
    detail = bob.get(f"{API}/repos/{repo}/versions/v1").json()
    assert "secret" not in json.dumps(detail)


# --- pulling --------------------------------------------------------------------------


def test_a_download_redirects_to_s3_and_serves_the_right_bytes_by_number_commit_or_alias(
    alice, base
):
    repo = create_repo(alice, "my-lora", "adapter")
    files = adapter_files()
    v1 = pushed(alice, repo, files, {"base_model": base})
    mark(repo, "v1")
    alice.put(f"{API}/repos/{repo}/aliases/stable", {"version": "v1"}, format="json")
    weights = files["adapter_model.safetensors"]

    for revision in ("v1", v1["commit_id"], "main", "stable"):
        response = APIClient().get(
            f"{API}/repos/{repo}/versions/{revision}/files/adapter_model.safetensors"
        )
        assert response.status_code == 302, (revision, response.content)
        assert response["ETag"] == f'"{sha(weights)}"'
        assert response["X-Strata-Commit"] == v1["commit_id"]
        served = requests.get(response["Location"], timeout=30)
        assert served.status_code == 200
        assert served.content == weights
        assert "adapter_model.safetensors" in served.headers["Content-Disposition"]

    # Files that ride along with every download (the config) do not count again.
    APIClient().get(f"{API}/repos/{repo}/versions/v1/files/adapter_config.json")
    assert Version.objects.get(commit_id=v1["commit_id"]).downloads == 4
    assert Repository.objects.get(name="my-lora").downloads == 4
    assert alice.get(f"{API}/repos/{repo}/versions/v1").json()["downloads"] == 4


def test_downloads_are_counted_per_version(alice):
    repo = create_repo(alice, "corpus", "dataset")
    pushed(alice, repo, {"a.jsonl": b"1\n"})
    pushed(alice, repo, {"a.jsonl": b"2\n"})
    for _ in range(3):
        alice.get(f"{API}/repos/{repo}/versions/v1/files/a.jsonl")
    alice.get(f"{API}/repos/{repo}/versions/v2/files/a.jsonl")
    counts = {v["label"]: v["downloads"] for v in alice.get(f"{API}/repos/{repo}/versions").json()}
    assert counts == {"v1": 3, "v2": 1}
    assert alice.get(f"{API}/repos/{repo}").json()["downloads"] == 4


def test_missing_revisions_and_files_are_404_with_a_code(alice):
    repo = create_repo(alice, "corpus", "dataset")
    pushed(alice, repo, {"a.jsonl": b"1\n"})
    for url, code in [
        (f"{API}/repos/{repo}/versions/v7", "revision_not_found"),
        (f"{API}/repos/{repo}/versions/{'0' * 40}/files", "revision_not_found"),
        (f"{API}/repos/{repo}/versions/nope/files/a.jsonl", "revision_not_found"),
        (f"{API}/repos/{repo}/versions/v1/files/b.jsonl", "entry_not_found"),
        (f"{API}/repos/alice/nothing/versions/v1", "repo_not_found"),
    ]:
        response = alice.get(url)
        assert response.status_code == 404, url
        assert error_code(response) == code


def test_invalid_versions_are_hidden_from_readers_but_shown_to_writers(alice, bob, base):
    repo = create_repo(alice, "my-lora", "adapter")
    pushed(alice, repo, adapter_files(), {"base_model": base})
    mark(repo, "v1", Version.Status.INVALID)
    assert alice.get(f"{API}/repos/{repo}/versions/v1").status_code == 200
    assert bob.get(f"{API}/repos/{repo}/versions/v1").status_code == 404
    assert bob.get(f"{API}/repos/{repo}/versions").json() == []


def test_the_local_backend_streams_downloads_with_range_support(alice, local_store):
    repo = create_repo(alice, "corpus", "dataset")
    data = bytes(range(256)) * 4000  # 1,024,000 bytes
    pushed(alice, repo, {"big.jsonl": data})
    url = f"{API}/repos/{repo}/versions/v1/files/big.jsonl"

    whole = alice.get(url)
    assert whole.status_code == 200
    assert whole["ETag"] == f'"{sha(data)}"'
    assert whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Length"] == str(len(data))
    assert b"".join(whole.streaming_content) == data

    part = alice.get(url, HTTP_RANGE="bytes=1000-1999")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert part["Content-Length"] == "1000"
    assert b"".join(part.streaming_content) == data[1000:2000]

    tail = alice.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206
    assert b"".join(tail.streaming_content) == data[-10:]
    open_ended = alice.get(url, HTTP_RANGE=f"bytes={len(data) - 5}-")
    assert b"".join(open_ended.streaming_content) == data[-5:]

    beyond = alice.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416
    assert beyond["Content-Range"] == f"bytes */{len(data)}"
    head = alice.head(url)
    assert head.status_code == 200
    assert head["Content-Length"] == str(len(data))
    # Whole downloads count; ranged reads (resumes) and HEAD do not.
    assert Version.objects.get(repository__name="corpus").downloads == 1


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("notes.docx", "file_type_refused"),
        ("model.onnx", "file_type_refused"),
        ("adapter_model.bin", "pickle_refused"),
        ("weights.pt", "pickle_refused"),
        ("weights.pth", "pickle_refused"),
        ("last.ckpt", "pickle_refused"),
        ("state.pkl", "pickle_refused"),
        ("Weights.PT", "pickle_refused"),
        ("modeling_custom.py", "remote_code_refused"),
        ("sub/handler.py", "remote_code_refused"),
        ("../escape.safetensors", "invalid_path"),
        ("a/../../b.safetensors", "invalid_path"),
        ("/etc/weights.safetensors", "invalid_path"),
        ("dir\\w.safetensors", "invalid_path"),
        ("a//b.safetensors", "invalid_path"),
        ("line\nbreak.safetensors", "invalid_path"),
        ("nul\x00.safetensors", "invalid_path"),
        ("rtl\u202egnp.safetensors", "invalid_path"),
        ("x" * 201 + ".safetensors", "invalid_path"),
    ],
)
def test_it_refuses_unsafe_or_unknown_file_names(alice, base, path, code):
    repo = create_repo(alice, "my-lora", "adapter")
    files = {**adapter_files(seed=41), path: b"payload " + path.encode("utf-8", "replace")}
    before = rows()

    response = push(alice, repo, files, {"base_model": base})

    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert rows() == before


def test_it_refuses_pickle_weights_and_points_to_safetensors(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = {
        "adapter_config.json": adapter_files()["adapter_config.json"],
        "adapter_model.bin": b"\x80\x04K\x01.",
    }
    before = rows()
    response = push(alice, repo, files, {"base_model": base})
    assert response.status_code == 400
    assert error_code(response) == "pickle_refused"
    assert "safetensors" in response.json()["error"]["message"]
    assert rows() == before


def test_an_adapter_without_its_config_is_refused_before_storing_anything(alice, base):
    repo = create_repo(alice, "my-lora", "adapter")
    files = {"adapter_model.safetensors": adapter_files(seed=51)["adapter_model.safetensors"]}
    before = rows()
    response = push(alice, repo, files, {"base_model": base})
    assert response.status_code == 400
    assert error_code(response) == "adapter_files_missing"
    assert rows() == before


def test_a_push_without_files_is_refused(alice):
    repo = create_repo(alice, "corpus", "dataset")
    response = alice.post(f"{API}/repos/{repo}/versions", {"metadata": "{}"})
    assert response.status_code == 400
    assert error_code(response) == "no_files"


@pytest.mark.parametrize(
    "name",
    [
        "double--dash",
        "dot..dot",
        "repo.git",
        "trailing.",
        "-leading",
        ".hidden",
        "has space",
        "slash/name",
        "caf\u00e9",
        "\uff4dy-lora",  # fullwidth m
        "my-l\u043era",  # Cyrillic o
        "x" * 97,
    ],
)
def test_it_refuses_invalid_repository_names(alice, name):
    response = alice.post(f"{API}/repos", {"name": name, "kind": "dataset"}, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) in {"invalid_name", "invalid_request"}
    assert not Repository.objects.exists()


@pytest.mark.parametrize("name", ["api", "search", "hf", "jobs"])
def test_it_refuses_organization_names_that_are_hub_routes(alice, name):
    response = alice.post(f"{API}/orgs", {"name": name}, format="json")
    assert response.status_code == 400, response.content
    assert error_code(response) == "invalid_name"


@pytest.mark.parametrize("variant", ["My-Lora", "MY-LORA", "my_lora", "My_LoRA"])
def test_a_name_differing_only_in_case_or_separator_is_taken(alice, variant):
    create_repo(alice, "my-lora", "dataset")
    response = alice.post(f"{API}/repos", {"name": variant, "kind": "dataset"}, format="json")
    assert response.status_code == 409
    assert error_code(response) == "repo_exists"
    assert Repository.objects.count() == 1


def test_a_user_name_differing_only_in_case_is_taken():
    from hub.accounts.services import user_create
    from hub.registry.errors import Conflict

    make_user("alice")
    with pytest.raises(Conflict) as caught:
        user_create(username="ALICE", password="correct-horse-battery")
    assert caught.value.code == "name_taken"


def test_deleted_names_are_never_reused(alice):
    repo = create_repo(alice, "my-lora", "dataset")
    pushed(alice, repo, {"a.jsonl": b"1\n"})
    assert alice.delete(f"{API}/repos/{repo}").status_code == 204
    assert alice.get(f"{API}/repos/{repo}").status_code == 404

    for name in ("my-lora", "My_Lora"):
        response = alice.post(f"{API}/repos", {"name": name, "kind": "dataset"}, format="json")
        assert response.status_code == 409
        assert error_code(response) == "name_tombstoned"
    gone = push(alice, repo, {"a.jsonl": b"2\n"})
    assert gone.status_code == 404
    assert error_code(gone) == "repo_not_found"


def test_a_file_over_the_size_limit_is_refused_while_streaming(alice, settings, monkeypatch):
    settings.MAX_FILE_BYTES = 100_000
    repo = create_repo(alice, "corpus", "dataset")
    big = b"x" * 300_000
    seen: list[int] = []
    from hub.api.uploads import HashingUploadHandler

    real = HashingUploadHandler.receive_data_chunk

    def counting(self: HashingUploadHandler, raw: bytes, start: int) -> bytes | None:
        seen.append(len(raw))
        return real(self, raw, start)

    monkeypatch.setattr(HashingUploadHandler, "receive_data_chunk", counting)
    before = rows()

    response = push(alice, repo, {"small.jsonl": b"1\n", "big.jsonl": big})

    assert response.status_code == 413
    assert error_code(response) == "file_too_large"
    # Refused at the chunk that crossed the limit, not after reading the whole file.
    assert sum(seen) < len(big)
    assert rows() == before


def test_it_refuses_a_file_whose_bytes_differ_from_the_declared_sha256(alice):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b'{"a": 1}\n', "b.jsonl": b'{"b": 2}\n'}
    declared = {
        "a.jsonl": {"sha256": sha(files["a.jsonl"])},
        "b.jsonl": {"sha256": sha(b"something else")},
    }
    before = rows()
    response = push(alice, repo, files, {"files": declared})
    assert response.status_code == 400
    assert error_code(response) == "sha256_mismatch"
    assert "b.jsonl" in response.json()["error"]["message"]
    assert rows() == before

    declared["b.jsonl"]["sha256"] = sha(files["b.jsonl"]).upper()  # case does not matter
    assert push(alice, repo, files, {"files": declared}).status_code == 201


def test_it_refuses_metadata_that_is_too_large(alice, settings):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    huge = {"training_params": {"notes": "x" * (settings.MAX_METADATA_BYTES + 1)}}
    response = push(alice, repo, files, huge)
    assert response.status_code == 413
    assert error_code(response) == "metadata_too_large"
    assert rows() == (0, set())


@pytest.mark.parametrize("levels", [9, 50, 600])
def test_it_refuses_metadata_that_nests_too_deeply(alice, levels):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b"1\n"}
    nested: Any = 1
    for _ in range(levels):
        nested = {"k": nested}
    response = push(alice, repo, files, {"training_params": nested})
    assert response.status_code == 400, response.content
    assert error_code(response) == "metadata_too_deep"
    assert rows() == (0, set())


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ("not json", "invalid_metadata"),
        ("[1, 2]", "invalid_metadata"),
        ('{"training_params": [1]}', "invalid_metadata"),
        ('{"message": 5}', "invalid_metadata"),
        ('{"datasets": "alice/x"}', "invalid_metadata"),
        ('{"base_model": "no-slash"}', "invalid_reference"),
        ('{"message": "' + "m" * 5001 + '"}', "message_too_long"),
    ],
)
def test_malformed_metadata_gets_a_clear_error(alice, metadata, code):
    repo = create_repo(alice, "corpus", "dataset")
    files = {"a.jsonl": b'{"malformed": 1}\n'}
    response = alice.post(
        f"{API}/repos/{repo}/versions", {**multipart(files), "metadata": metadata}
    )
    assert response.status_code == 400, response.content
    assert error_code(response) == code
    assert rows() == (0, set())


def test_lineage_is_refused_on_datasets(alice, base):
    repo = create_repo(alice, "corpus", "dataset")
    response = push(alice, repo, {"a.jsonl": b"1\n"}, {"base_model": base})
    assert response.status_code == 400
    assert error_code(response) == "lineage_not_allowed"


def test_a_namespace_quota_refuses_a_push_that_would_pass_it(alice, settings):
    repo = create_repo(alice, "corpus", "dataset")
    settings.NAMESPACE_QUOTA_BYTES = 100
    assert pushed(alice, repo, {"a.jsonl": b"x" * 60})["label"] == "v1"
    refused = push(alice, repo, {"a.jsonl": b"y" * 60})
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert Version.objects.filter(repository__name="corpus").count() == 1
    session = alice.post(
        f"{API}/repos/{repo}/uploads",
        {"files": [{"path": "b.jsonl", "size": 50, "sha256": "0" * 64}]},
        format="json",
    )
    assert session.json()["error"]["code"] == "quota_exceeded"


def test_a_request_id_is_echoed_and_recorded_on_the_jobs_it_creates(alice):
    repo = create_repo(alice, "tiny", "base_model")
    response = alice.post(
        f"{API}/repos/{repo}/versions",
        multipart(base_model_files()),
        HTTP_X_REQUEST_ID="push-0001-abcdef",
    )
    assert response.status_code == 201
    assert response["X-Request-Id"] == "push-0001-abcdef"
    assert Job.objects.get(version__repository__name="tiny").request_id == "push-0001-abcdef"
    # An unusable id is replaced by one of the hub's own.
    other = alice.get(f"{API}/repos/{repo}", HTTP_X_REQUEST_ID="bad id\n")
    assert len(other["X-Request-Id"]) == 32


def test_expensive_jobs_are_limited_per_user_and_free_again_when_done(alice, base, settings):
    settings.MAX_ACTIVE_JOBS_PER_USER = 2
    adapters = []
    for i in range(3):
        repo = create_repo(alice, f"lora-{i}", "adapter")
        pushed(alice, repo, adapter_files(seed=10 + i), {"base_model": base})
        mark(repo, "v1")
        adapters.append(repo)

    def merge(repo: str) -> Any:
        return alice.post(f"{API}/repos/{repo}/versions/v1/merge")

    assert [merge(r).status_code for r in adapters[:2]] == [202, 202]
    refused = merge(adapters[2])
    assert refused.status_code == 429
    assert error_code(refused) == "job_limit"
    # Asking again for a job already queued is not a new job, so it is not refused.
    assert merge(adapters[0]).status_code == 202
    # Once one finishes, the next is accepted.
    Job.objects.filter(kind="merge", version__repository__name="lora-0").update(state="failed")
    assert merge(adapters[2]).status_code == 202
