"""Where the hub is, which token to send, where the cache lives.

Precedence, highest first: explicit arguments, environment variables, the user config
file (``$STRATA_CONFIG_DIR/config.toml``, by default ``~/.config/strata/config.toml``),
built-in defaults. The config file holds one token per hub URL and is written with
0600 permissions.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
_TRUE = {"1", "true", "yes", "on"}


def config_dir() -> Path:
    explicit = os.environ.get("STRATA_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "strata"


def config_path() -> Path:
    return config_dir() / "config.toml"


def cache_dir() -> Path:
    explicit = os.environ.get("STRATA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "strata"


def env_offline() -> bool:
    return os.environ.get("STRATA_OFFLINE", "").strip().lower() in _TRUE


def normalize_endpoint(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    return url


def read_config() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError):
        # A broken config must not make every command fail; login rewrites it.
        return {}


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(ch if ch >= " " else f"\\u{ord(ch):04x}" for ch in escaped)
    return f'"{escaped}"'


def write_config(data: dict[str, Any]) -> Path:
    """Write the config atomically, readable by the owner only (it holds tokens)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Strata client configuration (written by `strata login`)."]
    if data.get("endpoint"):
        lines.append(f"endpoint = {_toml_string(str(data['endpoint']))}")
    tokens = data.get("tokens") or {}
    if tokens:
        lines.append("")
        lines.append("[tokens]")
        for url, token in sorted(tokens.items()):
            lines.append(f"{_toml_string(str(url))} = {_toml_string(str(token))}")
    text = "\n".join(lines) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
    return path


def resolve_endpoint(explicit: str | None = None) -> str:
    if explicit:
        return normalize_endpoint(explicit)
    env = os.environ.get("STRATA_ENDPOINT")
    if env:
        return normalize_endpoint(env)
    configured = read_config().get("endpoint")
    if isinstance(configured, str) and configured:
        return normalize_endpoint(configured)
    return DEFAULT_ENDPOINT


def resolve_token(endpoint: str, explicit: str | None = None) -> str | None:
    if explicit:
        return explicit.strip()
    env = os.environ.get("STRATA_TOKEN")
    if env and env.strip():
        return env.strip()
    tokens = read_config().get("tokens") or {}
    token = tokens.get(normalize_endpoint(endpoint)) if isinstance(tokens, dict) else None
    return token if isinstance(token, str) and token else None


def store_token(endpoint: str, token: str, *, default_endpoint: bool = False) -> Path:
    data = read_config()
    tokens = dict(data.get("tokens") or {})
    tokens[normalize_endpoint(endpoint)] = token
    data["tokens"] = tokens
    if default_endpoint:
        data["endpoint"] = normalize_endpoint(endpoint)
    return write_config(data)


def forget_token(endpoint: str) -> bool:
    data = read_config()
    tokens = dict(data.get("tokens") or {})
    removed = tokens.pop(normalize_endpoint(endpoint), None) is not None
    if removed:
        data["tokens"] = tokens
        write_config(data)
    return removed
