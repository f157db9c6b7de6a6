"""References: ``namespace/name`` with an optional ``@revision`` (v3, v3-merged, alias, commit)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from strata.errors import UsageError

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REF_RE = re.compile(rf"^(?P<ns>{_NAME})/(?P<name>{_NAME})(?:@(?P<rev>[A-Za-z0-9._-]+))?$")
_LABEL_RE = re.compile(r"^v\d+(-[a-z]+)?$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str
    revision: str | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        match = _REF_RE.match(text.strip())
        if not match:
            raise UsageError(
                f"{text!r} is not a reference of the form namespace/name[@revision].",
                code="invalid_reference",
            )
        return cls(match["ns"], match["name"], match["rev"])

    @property
    def repo(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def rev(self) -> str:
        """The revision, ``main`` when none was given."""
        return self.revision or "main"

    def with_revision(self, revision: str | None) -> Ref:
        return Ref(self.namespace, self.name, revision)

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


def is_version_label(rev: str) -> bool:
    return bool(_LABEL_RE.match(rev))


def is_commit_id(rev: str) -> bool:
    return bool(_COMMIT_RE.match(rev))


def is_immutable(rev: str) -> bool:
    """Labels and commit ids never move; aliases (``main``, ``prod``) do."""
    return is_version_label(rev) or is_commit_id(rev)


def merged_label(label: str) -> str:
    """``v3`` -> ``v3-merged``."""
    base = label.split("-", 1)[0]
    return f"{base}-merged"
