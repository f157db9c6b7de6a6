"""The local cache: content-addressed blobs shared by every version and repository.

Layout under the cache root (``$STRATA_CACHE_DIR``, default ``~/.cache/strata``)::

    blobs/<sha256>                  verified file contents, read-only
    blobs/<sha256>.partial          an interrupted download (+ .partial.json: progress)
    commits/<commit_id>.json        a version: repo, label, kind, files [{path,size,sha256}]
    refs/<ns>/<name>/<rev>          the commit id a revision resolved to last time
    snapshots/<ns>/<name>/<commit>/ a version's files as a plain folder (hard links)
    stacks/<ns>/<name>/<commit>/    stack.json for ``pull --stack`` without ``-o``

The refs index is what offline mode reads: ``repo@rev -> commit id -> file list``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import NotFoundError, StrataError
from strata.refs import Ref

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class CachedVersion:
    """What the cache knows about one version (enough to serve it offline)."""

    repo: str
    label: str
    commit_id: str
    kind: str
    status: str
    files: tuple[FileEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "label": self.label,
            "commit_id": self.commit_id,
            "kind": self.kind,
            "status": self.status,
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedVersion:
        return cls(
            repo=str(data["repo"]),
            label=str(data["label"]),
            commit_id=str(data["commit_id"]),
            kind=str(data.get("kind") or ""),
            status=str(data.get("status") or ""),
            files=tuple(
                FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
            ),
        )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_relpath(path: str) -> Path:
    """A version's file path as a relative path that cannot escape its folder."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise StrataError(f"Refusing unsafe file path from the hub: {path!r}", code="unsafe_path")
    return Path(*parts)


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    # --- blobs -------------------------------------------------------------------------

    @property
    def blob_dir(self) -> Path:
        return self.root / "blobs"

    def blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise StrataError(f"Not a sha256 digest: {sha256!r}", code="invalid_sha256")
        return self.blob_dir / sha256

    def has_blob(self, entry: FileEntry) -> bool:
        try:
            return self.blob_path(entry.sha256).stat().st_size == entry.size
        except FileNotFoundError:
            return False

    def partial_path(self, sha256: str) -> Path:
        return self.blob_dir / f"{sha256}.partial"

    def journal_path(self, sha256: str) -> Path:
        return self.blob_dir / f"{sha256}.partial.json"

    @contextlib.contextmanager
    def blob_lock(self, sha256: str) -> Iterator[None]:
        """Serializes downloads of one blob across processes (no-op without fcntl)."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        lock_path = self.blob_dir / f"{sha256}.lock"
        with lock_path.open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def promote(self, sha256: str) -> Path:
        """Move a verified partial into place, read-only."""
        final = self.blob_path(sha256)
        partial = self.partial_path(sha256)
        os.chmod(partial, 0o444)
        os.replace(partial, final)
        self.journal_path(sha256).unlink(missing_ok=True)
        (self.blob_dir / f"{sha256}.lock").unlink(missing_ok=True)
        return final

    # --- versions and refs -------------------------------------------------------------

    def _ref_path(self, ref: Ref, rev: str) -> Path:
        return self.root / "refs" / ref.namespace / ref.name / rev

    def record_version(self, version: CachedVersion, *, revisions: list[str]) -> None:
        _write_atomic(
            self.root / "commits" / f"{version.commit_id}.json",
            json.dumps(version.to_json(), indent=1),
        )
        ns, name = version.repo.split("/", 1)
        for rev in {*revisions, version.label, version.commit_id}:
            if rev:
                _write_atomic(self.root / "refs" / ns / name / rev, version.commit_id + "\n")

    def version_by_commit(self, commit_id: str) -> CachedVersion | None:
        try:
            data = json.loads((self.root / "commits" / f"{commit_id}.json").read_text())
        except (FileNotFoundError, ValueError, KeyError):
            return None
        return CachedVersion.from_json(data)

    def resolve_offline(self, ref: Ref) -> CachedVersion:
        """The cached version a reference points at, without asking the hub."""
        try:
            commit = self._ref_path(ref, ref.rev).read_text().strip()
        except FileNotFoundError:
            commit = ""
        version = self.version_by_commit(commit) if commit else None
        if version is None:
            raise NotFoundError(
                f"{ref.repo}@{ref.rev} is not in the local cache ({self.root}); "
                "pull it once while online.",
                code="not_cached",
            )
        missing = [f.path for f in version.files if not self.has_blob(f)]
        if missing:
            raise NotFoundError(
                f"{ref.repo}@{ref.rev} is only partly cached (missing {', '.join(missing)}); "
                "pull it again while online.",
                code="not_cached",
            )
        return version

    def cached_refs(self) -> list[tuple[str, str, str]]:
        """``(repo, revision, commit_id)`` for every entry of the refs index."""
        out: list[tuple[str, str, str]] = []
        base = self.root / "refs"
        if not base.exists():
            return out
        for path in sorted(base.glob("*/*/*")):
            if path.is_file() and not path.name.startswith("."):
                out.append(
                    (f"{path.parent.parent.name}/{path.parent.name}", path.name, path.read_text())
                )
        return out

    # --- folders -----------------------------------------------------------------------

    def snapshot_dir(self, version: CachedVersion) -> Path:
        ns, name = version.repo.split("/", 1)
        return self.root / "snapshots" / ns / name / version.commit_id

    def materialize(self, version: CachedVersion, target: Path, *, copy: bool = False) -> Path:
        """Lay the version out under ``target`` as a plain folder: hard links, else copies."""
        target.mkdir(parents=True, exist_ok=True)
        for entry in version.files:
            dest = target / _safe_relpath(entry.path)
            blob = self.blob_path(entry.sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() or dest.is_symlink():
                try:
                    same = not copy and os.path.samefile(dest, blob)
                except OSError:
                    same = False
                if same:
                    continue
                dest.unlink()
            if not copy:
                try:
                    os.link(blob, dest)
                    continue
                except OSError:
                    pass  # another filesystem, or links not allowed: copy instead
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(blob, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        return target

    def snapshot(self, version: CachedVersion) -> Path:
        return self.materialize(version, self.snapshot_dir(version))

    def stack_dir(self, version: CachedVersion) -> Path:
        ns, name = version.repo.split("/", 1)
        return self.root / "stacks" / ns / name / version.commit_id

    def write_json(self, path: Path, data: Any) -> Path:
        _write_atomic(path, json.dumps(data, indent=2) + "\n")
        return path
