"""The Python API. :class:`Client` talks to one hub; module functions use a default one."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from strata import config
from strata.cache import Cache, CachedVersion, FileEntry
from strata.download import Downloader, DownloadStats, RemoteFile, default_workers
from strata.errors import (
    AuthError,
    IntegrityError,
    JobFailed,
    NetworkError,
    NotFoundError,
    StrataError,
    UsageError,
    ValidationFailed,
)
from strata.http import Transport
from strata.progress import progress_enabled
from strata.refs import Ref, is_commit_id, merged_label
from strata.upload import Skipped, collect_files, hash_files, upload_session

log = logging.getLogger("strata")

KINDS = ("adapter", "base_model", "dataset")
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
STACK_FORMAT = "strata.stack/1"
DTYPE_ALIASES = {
    "float16": "f16",
    "fp16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "fp32": "f32",
}


def _as_ref(ref: str | Ref) -> Ref:
    return ref if isinstance(ref, Ref) else Ref.parse(ref)


def _q(path: str) -> str:
    return quote(path, safe="/")


@dataclass
class PushResult:
    """What ``push`` did: the version the hub published and what was transferred."""

    repo: str
    version: dict[str, Any]
    url: str
    api_url: str
    uploaded_files: int
    reused_files: int
    bytes_uploaded: int
    skipped: list[Skipped] = field(default_factory=list)
    created_repo: bool = False

    @property
    def label(self) -> str:
        return str(self.version.get("label") or "")

    @property
    def status(self) -> str:
        return str(self.version.get("status") or "")

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "label": self.label,
            "commit_id": self.version.get("commit_id"),
            "status": self.status,
            "url": self.url,
            "api_url": self.api_url,
            "created_repo": self.created_repo,
            "uploaded_files": self.uploaded_files,
            "reused_files": self.reused_files,
            "bytes_uploaded": self.bytes_uploaded,
            "skipped": [s.to_json() for s in self.skipped],
            "report": self.version.get("report"),
        }


@dataclass
class StackEntry:
    repo: str
    label: str
    commit_id: str
    kind: str
    status: str
    path: Path | None

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        path: str | None = None
        if self.path is not None:
            path = (
                os.path.relpath(self.path, relative_to)
                if relative_to is not None
                else str(self.path)
            )
        return {
            "repo": self.repo,
            "revision": self.label,
            "commit_id": self.commit_id,
            "kind": self.kind,
            "status": self.status,
            "path": path,
        }


@dataclass
class PullResult:
    """Where a pull put things. ``path`` is the folder to load (or the stack folder)."""

    ref: str
    path: Path
    version: CachedVersion
    stats: DownloadStats
    offline: bool = False
    stack: list[StackEntry] = field(default_factory=list)
    base: StackEntry | None = None
    manifest: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ref": self.ref,
            "repo": self.version.repo,
            "label": self.version.label,
            "commit_id": self.version.commit_id,
            "status": self.version.status,
            "path": str(self.path),
            "offline": self.offline,
            "files": [f.to_json() for f in self.version.files],
            "stats": self.stats.to_json(),
        }
        if self.manifest is not None:
            data["manifest"] = str(self.manifest)
            data["base"] = self.base.to_json() if self.base else None
            data["stack"] = [e.to_json() for e in self.stack]
        return data


class Client:
    """A connection to one Strata hub, with the local cache.

    Arguments left as None come from the environment (``STRATA_ENDPOINT``,
    ``STRATA_TOKEN``, ``STRATA_CACHE_DIR``, ``STRATA_OFFLINE``) or the config file.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        progress: bool | None = None,
        workers: int | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.endpoint = config.resolve_endpoint(endpoint)
        self.transport = Transport(
            self.endpoint, config.resolve_token(self.endpoint, token), max_retries=max_retries
        )
        self.cache = Cache(Path(cache_dir or config.cache_dir()).expanduser().absolute())
        self.offline = config.env_offline() if offline is None else offline
        self.progress = progress_enabled() if progress is None else progress
        self.workers = workers or default_workers()

    def __repr__(self) -> str:
        return f"Client(endpoint={self.endpoint!r}, cache={str(self.cache.root)!r})"

    def close(self) -> None:
        self.transport.close()

    # --- accounts ----------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        if not self.transport.has_token:
            raise AuthError(
                "Not logged in: run `strata login` or set STRATA_TOKEN.", code="auth_required"
            )
        result: dict[str, Any] = self.transport.get_json("whoami")
        return result

    def login(self, token: str, *, make_default: bool = False) -> dict[str, Any]:
        """Check ``token`` against the hub, then store it in the config file (0600)."""
        token = token.strip()
        if not token:
            raise UsageError("The token is empty.", code="empty_token")
        probe = Transport(self.endpoint, token, max_retries=self.transport.max_retries)
        try:
            me: dict[str, Any] = probe.get_json("whoami")
        finally:
            probe.close()
        path = config.store_token(self.endpoint, token, default_endpoint=make_default)
        self.transport = Transport(self.endpoint, token, max_retries=self.transport.max_retries)
        return {**me, "endpoint": self.endpoint, "config": str(path)}

    def logout(self) -> bool:
        """Forget the stored token for this hub. True if there was one."""
        return config.forget_token(self.endpoint)

    # --- repositories and versions -----------------------------------------------------

    def repo_info(self, repo: str | Ref) -> dict[str, Any]:
        ref = _as_ref(repo)
        info: dict[str, Any] = self.transport.get_json(f"repos/{ref.repo}")
        return info

    def list_repos(
        self,
        *,
        kind: str | None = None,
        base: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
        license: str | None = None,
        status: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Repositories visible to you, filtered like the hub's search (newest first)."""
        return list(
            self.iter_repos(
                kind=kind,
                base=base,
                owner=owner,
                tag=tag,
                license=license,
                status=status,
                q=q,
                sort=sort,
                limit=limit,
            )
        )

    def iter_repos(self, *, limit: int | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] | None = {
            **filters,
            "limit": min(100, limit) if limit else 100,
        }
        url = self.transport.api_url("repos")
        seen = 0
        while url:
            page = self.transport.request("GET", url, params=_clean(params)).json()
            for item in page.get("results", []):
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            url = page.get("next") or ""
            params = None  # the next link carries the query

    def search(self, q: str, **filters: Any) -> list[dict[str, Any]]:
        return self.list_repos(q=q, **filters)

    def create_repo(
        self,
        repo: str | Ref,
        *,
        kind: str = "adapter",
        private: bool = False,
        description: str | None = None,
        license: str | None = None,
        tags: Sequence[str] | None = None,
        exist_ok: bool = True,
    ) -> tuple[dict[str, Any] | None, bool]:
        """Create ``namespace/name``. Returns ``(repo, created)``; an existing one is fine."""
        ref = _as_ref(repo)
        if kind not in KINDS:
            raise UsageError(f"kind must be one of {', '.join(KINDS)}.", code="invalid_kind")
        body: dict[str, Any] = {
            "namespace": ref.namespace,
            "name": ref.name,
            "kind": kind,
            "visibility": "private" if private else "public",
        }
        if description is not None:
            body["description"] = description
        if license is not None:
            body["license"] = license
        if tags:
            body["tags"] = list(tags)
        try:
            _, created = self.transport.post_json("repos", body)
        except StrataError as exc:
            if exc.code == "repo_exists" and exist_ok:
                return None, False
            raise
        return created, True

    def versions(self, repo: str | Ref) -> list[dict[str, Any]]:
        ref = _as_ref(repo)
        result: list[dict[str, Any]] = self.transport.get_json(f"repos/{ref.repo}/versions")
        return result

    def version(self, ref: str | Ref) -> dict[str, Any]:
        r = _as_ref(ref)
        result: dict[str, Any] = self.transport.get_json(f"repos/{r.repo}/versions/{quote(r.rev)}")
        return result

    def files(self, ref: str | Ref) -> list[dict[str, Any]]:
        r = _as_ref(ref)
        if self.offline:
            return [f.to_json() for f in self.cache.resolve_offline(r).files]
        result: list[dict[str, Any]] = self.transport.get_json(
            f"repos/{r.repo}/versions/{quote(r.rev)}/files"
        )
        return result

    def lineage(self, ref: str | Ref, *, depth: int = 8) -> dict[str, Any]:
        r = _as_ref(ref)
        result: dict[str, Any] = self.transport.get_json(
            f"repos/{r.repo}/versions/{quote(r.rev)}/lineage", params={"depth": depth}
        )
        return result

    def aliases(self, repo: str | Ref) -> list[dict[str, Any]]:
        ref = _as_ref(repo)
        result: list[dict[str, Any]] = self.transport.get_json(f"repos/{ref.repo}/aliases")
        return result

    def version_url(self, repo: str, label: str) -> str:
        """The version's page on the hub's website."""
        return f"{self.endpoint}/{repo}/v/{label}"

    def version_api_url(self, repo: str, label: str) -> str:
        return self.transport.api_url(f"repos/{repo}/versions/{label}")

    # --- push --------------------------------------------------------------------------

    def push(
        self,
        folder: str | os.PathLike[str],
        repo: str | Ref,
        *,
        kind: str = "adapter",
        base: str | None = None,
        base_revision: str | None = None,
        parents: Sequence[str] = (),
        finetuned_from: str | None = None,
        datasets: Sequence[str] = (),
        eval_sets: Sequence[str] = (),
        message: str | None = None,
        training_params: dict[str, Any] | None = None,
        private: bool = False,
        exclude: Iterable[str] = (),
        wait: bool = False,
        timeout: float | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> PushResult:
        """Publish the files of ``folder`` as a new version of ``repo``.

        Creates the repository if needed, uploads only blobs the hub lacks (straight to
        object storage, large files in parallel parts), and returns the new version.
        With ``wait``, waits for validation and raises :class:`ValidationFailed` if the
        version is invalid (the report is in ``exc.detail["report"]``).
        """
        ref = _as_ref(repo)
        if ref.revision:
            raise UsageError("Push to namespace/name, without @revision.", code="usage")
        if kind not in KINDS:
            raise UsageError(f"kind must be one of {', '.join(KINDS)}.", code="invalid_kind")
        self._require_online("push")
        metadata = build_metadata(
            message=message,
            base=base,
            base_revision=base_revision,
            parents=parents,
            finetuned_from=finetuned_from,
            datasets=datasets,
            eval_sets=eval_sets,
            training_params=training_params,
        )
        files, skipped = collect_files(Path(folder), exclude=exclude)
        for s in skipped:
            if s.reason != "excluded":
                log.warning("skipping %s: %s", s.path, s.reason)
        _, created = self.create_repo(ref, kind=kind, private=private)
        started = time.monotonic()
        files = hash_files(files, workers=self.workers, progress=self.progress)
        log.info("hashed %d file(s) in %.2fs", len(files), time.monotonic() - started)
        started = time.monotonic()
        upload = upload_session(
            self.transport, ref.repo, files, workers=self.workers, progress=self.progress
        )
        log.info(
            "uploaded %d file(s), %d bytes in %.2fs (%d already on the hub)",
            upload.uploaded_files,
            upload.bytes_uploaded,
            time.monotonic() - started,
            upload.reused_files,
        )
        session_id = str(upload.session["id"])
        started = time.monotonic()
        status, answer = self.transport.post_json(
            f"uploads/{session_id}/commit", {"parts": upload.parts, "metadata": metadata}
        )
        log.info("commit answered %d in %.2fs", status, time.monotonic() - started)
        if status == 202:
            job = answer.get("job") or {}
            if on_status:
                on_status("verifying large files on the hub")
            started = time.monotonic()
            try:
                self.wait_job(str(job["id"]), timeout=timeout)
                log.info("the hub verified the upload in %.2fs", time.monotonic() - started)
            except JobFailed as exc:
                raise ValidationFailed(
                    f"The hub refused the upload: {exc.message}", code=exc.code
                ) from exc
            session = self.transport.get_json(f"uploads/{session_id}")
            label = session.get("version")
            if not label:
                raise StrataError("The upload finished without a version.", code="no_version")
            version = self.version(ref.with_revision(str(label)))
        else:
            version = answer
        result = PushResult(
            repo=ref.repo,
            version=version,
            url=self.version_url(ref.repo, str(version.get("label"))),
            api_url=self.version_api_url(ref.repo, str(version.get("label"))),
            uploaded_files=upload.uploaded_files,
            reused_files=upload.reused_files,
            bytes_uploaded=upload.bytes_uploaded,
            skipped=skipped,
            created_repo=created,
        )
        if wait:
            if on_status:
                on_status("waiting for validation")
            result.version = self.wait_version(
                ref.with_revision(str(version["commit_id"])), timeout=timeout
            )
            if result.status == "invalid":
                raise ValidationFailed(
                    f"{ref.repo}@{result.label} failed validation.",
                    code="version_invalid",
                    detail={"report": result.version.get("report"), "version": result.to_json()},
                )
        return result

    def wait_version(
        self, ref: str | Ref, *, timeout: float | None = None, interval: float = 1.0
    ) -> dict[str, Any]:
        """Poll a version until its status is no longer ``pending``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            version = self.version(ref)
            if version.get("status") != "pending":
                return version
            if deadline is not None and time.monotonic() > deadline:
                raise StrataError(
                    f"{ref} is still pending after {timeout:.0f} s.", code="wait_timeout"
                )
            time.sleep(interval)

    # --- pull --------------------------------------------------------------------------

    def _require_online(self, what: str) -> None:
        if self.offline:
            raise UsageError(f"{what} needs the hub; offline mode is on.", code="offline")

    def _remote_version(self, ref: Ref) -> CachedVersion:
        data = self.version(ref)
        files = tuple(
            FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
        )
        return CachedVersion(
            repo=str(data.get("repo") or ref.repo),
            label=str(data["label"]),
            commit_id=str(data["commit_id"]),
            kind="",
            status=str(data.get("status") or ""),
            files=files,
        )

    def _resolve(self, ref: Ref) -> tuple[CachedVersion, bool]:
        """The version a reference names now; from the cache when offline or unreachable."""
        if self.offline:
            return self.cache.resolve_offline(ref), True
        try:
            return self._remote_version(ref), False
        except NetworkError as unreachable:
            try:
                cached = self.cache.resolve_offline(ref)
            except NotFoundError:
                raise unreachable from None
            log.warning("the hub is unreachable; using the cached copy of %s", ref)
            return cached, True

    def _fetch(self, version: CachedVersion, *, description: str) -> DownloadStats:
        files = [
            RemoteFile(
                entry,
                self.transport.api_url(
                    f"repos/{version.repo}/versions/{version.commit_id}/files/{_q(entry.path)}"
                ),
            )
            for entry in version.files
        ]
        downloader = Downloader(self.transport, self.cache, workers=self.workers)
        return downloader.fetch(files, description=description, progress=self.progress)

    def _pull_version(
        self, ref: Ref, *, kind: str = ""
    ) -> tuple[CachedVersion, DownloadStats, bool]:
        version, offline = self._resolve(ref)
        if kind and not version.kind:
            version = CachedVersion(
                version.repo, version.label, version.commit_id, kind, version.status, version.files
            )
        if offline:
            stats = DownloadStats(
                files=len(version.files),
                files_cached=len(version.files),
                bytes_total=sum(f.size for f in version.files),
            )
        else:
            if version.status == "pending":
                log.warning("%s@%s is not validated yet (pending)", version.repo, version.label)
            elif version.status == "invalid":
                log.warning("%s@%s FAILED validation", version.repo, version.label)
            try:
                stats = self._fetch(version, description=f"{version.repo}@{version.label}")
            except IntegrityError as refused:
                # The hub may replace a file of a version after publishing it (validation
                # normalizes adapter_config.json): if the listing changed, fetch that.
                try:
                    fresh = self._remote_version(ref.with_revision(version.commit_id))
                except StrataError:
                    raise refused from None
                if fresh.files == version.files:
                    raise
                version = CachedVersion(
                    version.repo,
                    version.label,
                    version.commit_id,
                    version.kind,
                    fresh.status,
                    fresh.files,
                )
                stats = self._fetch(version, description=f"{version.repo}@{version.label}")
            self.cache.record_version(version, revisions=[ref.rev])
        return version, stats, offline

    def pull(
        self,
        ref: str | Ref,
        *,
        output_dir: str | os.PathLike[str] | None = None,
        merged: bool = False,
        request_merge: bool = False,
        stack: bool = False,
        include_base: bool = False,
        copy: bool = False,
        timeout: float | None = None,
    ) -> PullResult:
        """Download a version into the cache (verified, resumable) and return its folder.

        ``output_dir`` also lays it out as a plain folder there (hard links, or copies
        with ``copy``). ``merged`` pulls ``vN-merged``; if the hub has none, it is
        requested when ``request_merge`` is true, else :class:`NotFoundError` with code
        ``merged_missing`` is raised. ``stack`` pulls every adapter of the stack in
        order and writes ``stack.json`` (``include_base`` pulls the base model too).
        """
        r = _as_ref(ref)
        if merged:
            r = self._merged_ref(r, request_merge=request_merge, timeout=timeout)
        if stack:
            return self._pull_stack(r, output_dir=output_dir, include_base=include_base, copy=copy)
        version, stats, offline = self._pull_version(r)
        snapshot = self.cache.snapshot(version)
        path = snapshot
        if output_dir is not None:
            path = self.cache.materialize(version, Path(output_dir).absolute(), copy=copy)
        return PullResult(ref=str(r), path=path, version=version, stats=stats, offline=offline)

    def snapshot(self, ref: str | Ref, *, merged: bool = False) -> Path:
        """A local folder holding the version's files (pulled into the cache if needed)."""
        return self.pull(ref, merged=merged).path

    def _merged_ref(self, ref: Ref, *, request_merge: bool, timeout: float | None) -> Ref:
        rev = ref.rev
        if rev.endswith("-merged"):
            return ref
        if self.offline:
            if is_commit_id(rev):
                raise NotFoundError(
                    "Offline, --merged needs a version label (v3), not a commit id.",
                    code="not_cached",
                )
            label = self.cache.resolve_offline(ref).label if not rev.startswith("v") else rev
            return ref.with_revision(merged_label(label))
        source = self.version(ref)
        target = ref.with_revision(merged_label(str(source["label"])))
        try:
            self.version(target)
            return target
        except NotFoundError:
            if not request_merge:
                raise NotFoundError(
                    f"{ref.repo} has no merged version of {source['label']} yet. "
                    f"Request it with `strata merge {ref.repo}@{source['label']}` "
                    "(or pull with --merged --yes).",
                    code="merged_missing",
                ) from None
        outcome = self.merge(ref.with_revision(str(source["label"])), wait=True, timeout=timeout)
        label = outcome.get("version") or target.rev
        return ref.with_revision(str(label))

    def _stack_entries(self, ref: Ref) -> tuple[StackEntry | None, list[StackEntry], str]:
        graph = self.lineage(ref)
        root = graph.get("root") or {}
        base: StackEntry | None = None
        adapters: list[StackEntry] = []
        for item in graph.get("stack") or []:
            entry = StackEntry(
                repo=str(item["repo"]),
                label=str(item["label"]),
                commit_id=str(item["commit_id"]),
                kind=str(item.get("kind") or ""),
                status=str(item.get("status") or ""),
                path=None,
            )
            if entry.kind == "base_model":
                base = entry
            else:
                adapters.append(entry)
        if not adapters:
            kind = str(root.get("kind") or "")
            raise UsageError(
                f"{ref} is a {kind or 'repository'} without an adapter stack; pull it without "
                "--stack.",
                code="not_a_stack",
            )
        return base, adapters, str(root.get("commit_id") or adapters[-1].commit_id)

    def _pull_stack(
        self,
        ref: Ref,
        *,
        output_dir: str | os.PathLike[str] | None,
        include_base: bool,
        copy: bool,
    ) -> PullResult:
        offline = self.offline
        base: StackEntry | None
        if offline:
            root = self.cache.resolve_offline(ref)
            base, adapters = self._cached_stack(root)
        else:
            base, adapters, _ = self._stack_entries(ref)
        out = Path(output_dir).absolute() if output_dir is not None else None
        total = DownloadStats()
        pulled: list[tuple[StackEntry, CachedVersion]] = []
        for entry in ([base] if include_base and base is not None else []) + adapters:
            version, stats, was_offline = self._pull_version(
                Ref.parse(f"{entry.repo}@{entry.commit_id}"), kind=entry.kind
            )
            offline = offline or was_offline
            total.merge(stats)
            pulled.append((entry, version))
        for entry, version in pulled:
            if out is None:
                entry.path = self.cache.snapshot(version)
            elif entry is base:
                entry.path = self.cache.materialize(version, out / "base", copy=copy)
            else:
                folder = f"{adapters.index(entry) + 1:02d}-{entry.repo.replace('/', '--')}"
                entry.path = self.cache.materialize(version, out / folder, copy=copy)
        root_version = pulled[-1][1]
        if not offline:
            self.cache.record_version(root_version, revisions=[ref.rev])
        manifest_dir = out if out is not None else self.cache.stack_dir(root_version)
        manifest_dir.mkdir(parents=True, exist_ok=True)
        relative = out
        manifest = {
            "format": STACK_FORMAT,
            "root": f"{root_version.repo}@{root_version.label}",
            "base": base.to_json(relative) if base else None,
            "adapters": [e.to_json(relative) for e in adapters],
            "apply": (
                "Load the base model; for each adapter but the last, "
                "PeftModel.from_pretrained(model, path).merge_and_unload(); then "
                "PeftModel.from_pretrained(model, last.path). Paths are relative to this file."
                if relative is not None
                else "Load the base model; for each adapter but the last, "
                "PeftModel.from_pretrained(model, path).merge_and_unload(); then "
                "PeftModel.from_pretrained(model, last.path)."
            ),
        }
        manifest_path = self.cache.write_json(manifest_dir / "stack.json", manifest)
        if out is not None:
            # Keep a cache copy with absolute paths, for offline --stack pulls later.
            cache_manifest = {
                **manifest,
                "base": base.to_json() if base else None,
                "adapters": [{**e.to_json(), "path": None} for e in adapters],
            }
            self.cache.write_json(self.cache.stack_dir(root_version) / "stack.json", cache_manifest)
        return PullResult(
            ref=str(ref),
            path=manifest_dir,
            version=root_version,
            stats=total,
            offline=offline,
            stack=adapters,
            base=base,
            manifest=manifest_path,
        )

    def _cached_stack(self, root: CachedVersion) -> tuple[StackEntry | None, list[StackEntry]]:
        import json

        path = self.cache.stack_dir(root) / "stack.json"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError) as exc:
            raise NotFoundError(
                f"The stack of {root.repo}@{root.label} is not in the local cache; pull it "
                "with --stack once while online.",
                code="not_cached",
            ) from exc

        def entry(item: dict[str, Any]) -> StackEntry:
            return StackEntry(
                repo=str(item["repo"]),
                label=str(item["revision"]),
                commit_id=str(item["commit_id"]),
                kind=str(item.get("kind") or ""),
                status=str(item.get("status") or ""),
                path=None,
            )

        base = entry(data["base"]) if data.get("base") else None
        return base, [entry(a) for a in data.get("adapters") or []]

    def stack_folders(self, ref: str | Ref) -> tuple[StackEntry | None, list[Path]]:
        """The base of ``ref``'s stack, and the local folder of each adapter, in order."""
        result = self.pull(ref, stack=True)
        return result.base, [e.path for e in result.stack if e.path is not None]

    # --- jobs --------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.transport.get_json(f"jobs/{quote(job_id)}")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.transport.get_json("jobs")
        return result

    def wait_job(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a job until it ends. Raises :class:`JobFailed` unless it succeeded."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = 0.25
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            state = job.get("state")
            if state in FINAL_JOB_STATES:
                if state != "succeeded":
                    code = job.get("error_code") or state
                    message = job.get("error_message") or f"The {job.get('kind')} job {state}."
                    raise JobFailed(
                        f"{job.get('kind', 'job')} job {job_id} {state}: {message}",
                        job=job,
                        code=str(code),
                    )
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise StrataError(
                    f"Job {job_id} is still {state} after {timeout:.0f} s.", code="wait_timeout"
                )
            time.sleep(interval)
            interval = min(2.0, interval * 1.5)

    def _job_request(
        self,
        path: str,
        body: dict[str, Any],
        *,
        wait: bool,
        timeout: float | None,
        on_update: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        self._require_online("this command")
        _, answer = self.transport.post_json(path, body)
        answer = dict(answer or {})
        if isinstance(answer.get("version"), dict):  # a version reference: keep its label
            answer["version"] = answer["version"].get("label")
        job = answer.get("job") or {}
        if wait and job.get("id") and job.get("state") not in FINAL_JOB_STATES:
            answer["job"] = self.wait_job(str(job["id"]), timeout=timeout, on_update=on_update)
        elif wait and job.get("state") in ("failed", "cancelled"):
            raise JobFailed(
                f"{job.get('kind', 'job')} job {job.get('id')} {job.get('state')}: "
                f"{job.get('error_message') or ''}",
                job=job,
                code=str(job.get("error_code") or job.get("state")),
            )
        result = (answer.get("job") or {}).get("result") or {}
        if not answer.get("version") and isinstance(result, dict) and result.get("version"):
            answer["version"] = result["version"]
        return answer

    def merge(
        self,
        ref: str | Ref,
        *,
        dtype: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Ask the hub for ``vN-merged`` (base and stack folded into full weights).

        ``dtype`` is ``f16``, ``bf16`` or ``f32`` (default: the base model's). The answer
        has ``version`` (the merged label, once it exists) and ``job``.
        """
        r = _as_ref(ref)
        if dtype is not None:
            dtype = DTYPE_ALIASES.get(dtype, dtype)
        body = {"dtype": dtype} if dtype else {}
        return self._job_request(
            f"repos/{r.repo}/versions/{quote(r.rev)}/merge",
            body,
            wait=wait,
            timeout=timeout,
            on_update=on_update,
        )

    def benchmark(
        self,
        ref: str | Ref,
        *,
        eval_sets: Sequence[str] = (),
        wait: bool = False,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        r = _as_ref(ref)
        body: dict[str, Any] = {"eval_sets": list(eval_sets)} if eval_sets else {}
        return self._job_request(
            f"repos/{r.repo}/versions/{quote(r.rev)}/benchmark",
            body,
            wait=wait,
            timeout=timeout,
            on_update=on_update,
        )

    def compose(
        self,
        inputs: Sequence[tuple[str, float]],
        target: str,
        *,
        method: str = "exact",
        rank: int | None = None,
        message: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Combine adapters (``[("ns/a@v1", 0.7), ("ns/b@v2", 0.3)]``) into ``target``."""
        if method not in ("exact", "svd"):
            raise UsageError("method must be 'exact' or 'svd'.", code="invalid_method")
        if not inputs:
            raise UsageError("compose needs at least one input adapter.", code="usage")
        target_ref = _as_ref(target)
        body: dict[str, Any] = {
            "inputs": [
                {"repo": _as_ref(r).repo, "revision": _as_ref(r).rev, "weight": float(w)}
                for r, w in inputs
            ],
            "method": method,
            "target": target_ref.repo,
        }
        if rank is not None:
            body["rank"] = rank
        if message:
            body["message"] = message
        return self._job_request("compose", body, wait=wait, timeout=timeout, on_update=on_update)


def build_metadata(
    *,
    message: str | None = None,
    base: str | None = None,
    base_revision: str | None = None,
    parents: Sequence[str] = (),
    finetuned_from: str | None = None,
    datasets: Sequence[str] = (),
    eval_sets: Sequence[str] = (),
    training_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The commit metadata the hub reads lineage from (see hub/registry/lineage.py)."""
    meta: dict[str, Any] = {}
    if message:
        meta["message"] = message
    if base:
        Ref.parse(base)
        meta["base_model"] = base
        if base_revision:
            if "@" in base:
                raise UsageError(
                    "Give the base revision either as --base ns/name@rev or --base-revision.",
                    code="usage",
                )
            meta["base_revision"] = base_revision
    elif base_revision:
        raise UsageError("--base-revision needs --base.", code="usage")
    if parents:
        for p in parents:
            Ref.parse(p)
        meta["stacked_on"] = list(parents)
    if finetuned_from:
        Ref.parse(finetuned_from)
        meta["finetuned_from"] = finetuned_from
    if datasets:
        meta["datasets"] = list(datasets)
    if eval_sets:
        meta["eval_sets"] = list(eval_sets)
    if training_params:
        meta["training_params"] = dict(training_params)
    return meta


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != ""}
