"""Rules for user-chosen names: repositories, namespaces, file paths, aliases."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from hub.accounts.models import NAME_MAX_LENGTH
from hub.registry.errors import BadRequest

# The Hugging Face client checks repo ids with the same rule, so every Strata name is
# also a valid HF repo id.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
# v3, or a derived snapshot of it: v3-merged, v3-merged-bf16.
_VERSION_LABEL_RE = re.compile(r"^v\d+(-[a-z][a-z0-9]*)*$")
_HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_PATH_LENGTH = 200

#: Top-level paths of the hub's pages and APIs: a namespace with one of these names
#: would have no reachable page at /{namespace}.
RESERVED_NAMESPACES = frozenset(
    {
        "-",
        "admin",
        "api",
        "blobs",
        "datasets",
        "healthz",
        "hf",
        "jobs",
        "login",
        "logout",
        "models",
        "new",
        "search",
        "settings",
        "signup",
        "static",
    }
)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz")
_ALLOWED_EXACT = {
    "adapter_config.json",
    "config.json",
    "generation_config.json",
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    ".gitattributes",
}
_ALLOWED_SUFFIXES = (".safetensors", ".safetensors.index.json", ".jsonl", ".txt", ".parquet")


def check_name(name: str, *, what: str = "repository") -> str:
    """A namespace or repository name: ``[A-Za-z0-9._-]``, no ``--``/``..``, no ``.git``."""
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise BadRequest(
            "invalid_name", f"A {what} name must be 1 to {NAME_MAX_LENGTH} characters."
        )
    # fullmatch: with match, '$' also matches before a trailing newline ("lora\n").
    if (
        not _NAME_RE.fullmatch(name)
        or "--" in name
        or ".." in name
        or name.endswith((".git", "."))
        or (what != "repository" and name.lower() in RESERVED_NAMESPACES)
    ):
        raise BadRequest(
            "invalid_name",
            f"{what.capitalize()} name {name!r} is not allowed: use letters, digits, '.', '_' "
            "and '-', start with a letter or digit, and avoid '--', '..' and a '.git' ending.",
        )
    return name


def canonical_name(name: str) -> str:
    """The form two names must not share: case-folded and NFKC-normalised (anti-spoofing)."""
    return unicodedata.normalize("NFKC", name).casefold().replace("_", "-")


def check_alias(name: str) -> str:
    # fullmatch: with match, '$' also matches before a trailing newline ("stable\n").
    if (
        not _ALIAS_RE.fullmatch(name)
        or _VERSION_LABEL_RE.fullmatch(name)
        or _HEX40_RE.fullmatch(name)
    ):
        raise BadRequest(
            "invalid_alias",
            f"Alias {name!r} is not allowed: start with a letter, use up to 64 of "
            "[A-Za-z0-9._-], and do not look like a version label (v3) or a commit id.",
        )
    return name


def check_file_path(path: str) -> str:
    """A file path inside a version; refuses traversal, control characters and odd types."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise BadRequest(
            "invalid_path", f"File paths must be 1 to {MAX_PATH_LENGTH} characters long."
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in path):
        raise BadRequest("invalid_path", f"File path {path!r} contains control characters.")
    pure = PurePosixPath(path)
    if (
        path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or pure.is_absolute()
    ):
        raise BadRequest("invalid_path", f"File path {path!r} must be a plain relative path.")
    lower = pure.name.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise BadRequest(
            "pickle_refused",
            f"{path!r} is a pickle-based format, which can run code when loaded. Strata accepts "
            "safetensors only: convert with `safetensors.torch.save_file(torch.load(f, "
            "weights_only=True), 'adapter_model.safetensors')` or save with "
            "`model.save_pretrained(dir, safe_serialization=True)`.",
        )
    if lower.endswith(".py"):
        raise BadRequest(
            "remote_code_refused",
            f"{path!r} is Python code; Strata never serves code that clients would execute.",
        )
    if pure.name not in _ALLOWED_EXACT and not lower.endswith(_ALLOWED_SUFFIXES):
        raise BadRequest(
            "file_type_refused",
            f"{path!r} is not an accepted file type. Accepted: adapter_config.json, "
            "*.safetensors, *.safetensors.index.json, config.json, generation_config.json, "
            "tokenizer files, README.md, and dataset files (*.jsonl, *.txt, *.parquet).",
        )
    return path


def is_version_label(rev: str) -> bool:
    return bool(_VERSION_LABEL_RE.fullmatch(rev))


def version_label_parts(label: str) -> tuple[int, str]:
    """``v3`` -> ``(3, "")``, ``v3-merged`` -> ``(3, "merged")``; ``label`` must be one."""
    number, _, variant = label[1:].partition("-")
    return int(number), variant


def is_commit_id(rev: str) -> bool:
    return bool(_HEX40_RE.fullmatch(rev))
