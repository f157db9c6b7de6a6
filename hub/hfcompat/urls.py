"""Hub protocol routes, mounted under ``/hf/`` (clients set ``HF_ENDPOINT=<hub>/hf``).

No trailing slashes (the client never sends one, and APPEND_SLASH would answer a HEAD
with a metadata-less 301). The ``.git/info/lfs`` route comes before ``/resolve/``
because repository names may contain dots.
"""

from django.urls import re_path

from hub.hfcompat import download, errors, lfs, revisions, upload

NAME = r"(?P<namespace>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
API = rf"^api/(?P<repo_type>models|datasets)/{NAME}"
REV = r"(?P<revision>[^/]+)"

app_name = "hfcompat"
urlpatterns = [
    re_path(r"^api/whoami-v2$", revisions.whoami, name="whoami"),
    re_path(r"^api/agent-harnesses$", revisions.agent_harnesses, name="agent-harnesses"),
    re_path(r"^api/validate-yaml$", upload.validate_yaml, name="validate-yaml"),
    re_path(r"^api/repos/create$", upload.create_repo, name="create-repo"),
    re_path(r"^api/lfs/(?P<file_id>\d+)/complete$", lfs.complete, name="lfs-complete"),
    re_path(r"^api/lfs/(?P<file_id>\d+)/verify$", lfs.verify, name="lfs-verify"),
    re_path(rf"{API}$", revisions.repo_info, name="repo-info"),
    re_path(rf"{API}/revision/{REV}$", revisions.repo_info, name="revision-info"),
    re_path(rf"{API}/tree/{REV}$", revisions.tree, name="tree"),
    re_path(rf"{API}/tree/{REV}/(?P<path>.+)$", revisions.tree, name="tree-path"),
    re_path(rf"{API}/paths-info/{REV}$", revisions.paths_info, name="paths-info"),
    re_path(rf"{API}/refs$", revisions.refs, name="refs"),
    re_path(rf"{API}/commits/{REV}$", revisions.commits, name="commits"),
    re_path(rf"{API}/preupload/{REV}$", upload.preupload, name="preupload"),
    re_path(rf"{API}/commit/{REV}$", upload.commit, name="commit"),
    re_path(rf"{API}/tag/{REV}$", upload.tag, name="tag"),
    re_path(rf"{API}/xet-(?:read|write)-token/{REV}$", errors.xet_unsupported, name="xet"),
    re_path(
        rf"^datasets/{NAME}\.git/info/lfs/objects/batch$",
        lfs.batch,
        {"repo_type": "dataset"},
        name="dataset-lfs-batch",
    ),
    re_path(rf"^{NAME}\.git/info/lfs/objects/batch$", lfs.batch, name="lfs-batch"),
    re_path(
        rf"^datasets/{NAME}/resolve/{REV}/(?P<path>.+)$",
        download.resolve,
        {"repo_type": "dataset"},
        name="dataset-resolve",
    ),
    re_path(rf"^{NAME}/resolve/{REV}/(?P<path>.+)$", download.resolve, name="resolve"),
    # Last: whatever else a client asks for gets an error it can classify.
    re_path(r"", errors.not_found, name="not-found"),
]
