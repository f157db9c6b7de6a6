"""``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: file metadata and bytes.

The client reads ``X-Repo-Commit``, the etag and the size from the HEAD answer. With S3
that answer is a 302 to a presigned URL on another host; the client does not follow it
on HEAD and reads the metadata from the 302 itself, so every answer carries it. The
etag is the file's sha256: the client's blob cache is keyed by it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from hub.hfcompat.common import actor_of, find_repo, repo_type_of
from hub.hfcompat.errors import HubError, hub_view
from hub.registry import services
from hub.registry.access import Actor
from hub.registry.downloads import download_record
from hub.registry.errors import NotFound
from hub.registry.lookups import file_lookup
from hub.registry.models import Alias, Blob, Repository, Version, VersionFile
from hub.registry.selectors import version_for
from hub.registry.serving import blob_response


def counts_as_download(request: HttpRequest, repository: Repository, path: str) -> bool:
    """One load of a weight (or data) file counts once.

    ``huggingface_hub`` sends ``X-HF-Download-Counter`` on the HEAD it makes before every
    download (cached or not); with S3 the GET then goes to storage, never here. So a flagged
    HEAD counts, and so does a plain unflagged, unranged GET (curl, a browser); the flagged
    GET that follows a flagged HEAD does not count twice.
    """
    if not services.is_payload_file(repository, path):
        return False
    flagged = "X-HF-Download-Counter" in request.headers
    if request.method == "HEAD":
        return flagged
    return not flagged and "Range" not in request.headers


@hub_view("GET", "HEAD")
def resolve(
    request: HttpRequest,
    namespace: str,
    name: str,
    revision: str,
    path: str,
    repo_type: str = "model",
) -> HttpResponse | StreamingHttpResponse:
    actor = actor_of(request)
    fast = file_lookup(actor, namespace, name, revision, path)
    if fast is not None and repo_type_of(fast.repository) == repo_type:
        repository, version, blob = fast.repository, fast.version, fast.blob
    else:
        # Not found, not visible, or an invalid version: the ordinary path decides, and
        # words the error.
        repository, version, blob = _resolve_slowly(
            actor, repo_type, namespace, name, revision, path
        )
    if counts_as_download(request, repository, path):
        download_record(version)
    return blob_response(
        request,
        blob,
        filename=path.rsplit("/", 1)[-1],
        headers={
            "X-Repo-Commit": version.commit_id,
            "X-Linked-Etag": f'"{blob.sha256}"',
            "X-Linked-Size": str(blob.size),
            "X-Strata-Version": version.label,
        },
    )


def _resolve_slowly(
    actor: Actor, repo_type: str, namespace: str, name: str, revision: str, path: str
) -> tuple[Repository, Version, Blob]:
    repository = find_repo(actor, repo_type, namespace, name)
    try:
        version = version_for(actor, repository, revision)
    except NotFound:
        if revision != Alias.MAIN:
            raise
        # No version has passed validation yet, so `main` is an empty branch: every file is
        # missing. "Entry not found" (not "revision not found") is what lets `push_to_hub`
        # look for an existing model card and carry on.
        state = (
            "has no valid version yet, so main is empty; pull a version label (v1) or a "
            "commit id instead"
            if repository.versions.exists()
            else "is empty: nothing was pushed yet"
        )
        raise HubError(404, "EntryNotFound", f"{repository.full_name} {state}.") from None
    found: VersionFile | None = version.files.select_related("blob").filter(path=path).first()
    if found is None:
        # X-Repo-Commit lets the client cache the miss (transformers probes optional files).
        raise HubError(
            404,
            "EntryNotFound",
            f"{path} is not in {repository.full_name}@{version.label}.",
            headers={"X-Repo-Commit": version.commit_id},
        )
    return repository, version, found.blob
