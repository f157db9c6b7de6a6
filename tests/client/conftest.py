"""Fixtures for the client tests: a live hub, a user with tokens, the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_token, make_user

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Hub:
    """A live hub and one signed-in user, seen from the client's side."""

    url: str
    username: str
    token: str
    tmp: Path
    cache: Path
    config: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("STRATA_") and k not in ("DJANGO_SETTINGS_MODULE",)
        }
        env.update(
            STRATA_ENDPOINT=self.url,
            STRATA_TOKEN=self.token,
            STRATA_CACHE_DIR=str(self.cache),
            STRATA_CONFIG_DIR=str(self.config),
            STRATA_MAX_RETRIES="2",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def cli(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``strata ARGS`` in a subprocess, as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "strata", *args],
            capture_output=True,
            text=True,
            input=input,
            env=self.env(**env),
            cwd=self.tmp,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str, **env: str | None) -> Any:
        result = self.cli(*args, "--json", **env)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def client(self, **kwargs: Any) -> Any:
        from strata import Client

        options: dict[str, Any] = {
            "token": self.token,
            "cache_dir": self.cache,
            "progress": False,
            "max_retries": 2,
        }
        options.update(kwargs)
        return Client(self.url, **options)


@pytest.fixture
def hub(live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    owner = make_user("alice")
    token = make_token(owner)
    cache = tmp_path / "cache"
    config = tmp_path / "config"
    # In-process clients read the same settings as the subprocesses.
    monkeypatch.setenv("STRATA_CONFIG_DIR", str(config))
    monkeypatch.setenv("STRATA_CACHE_DIR", str(cache))
    monkeypatch.delenv("STRATA_TOKEN", raising=False)
    monkeypatch.delenv("STRATA_ENDPOINT", raising=False)
    monkeypatch.delenv("STRATA_OFFLINE", raising=False)
    return Hub(
        url=live_server.url,
        username="alice",
        token=token,
        tmp=tmp_path,
        cache=cache,
        config=config,
    )


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return folder


def set_valid(repo: str, label: str = "v1") -> None:
    """Mark a version valid, as the validation worker would."""
    from hub.registry.models import Version
    from hub.registry.services import version_set_status

    ns, name = repo.split("/")
    number = int(label[1:].split("-")[0])
    version = Version.objects.get(
        repository__namespace__name=ns, repository__name=name, number=number
    )
    version_set_status(version=version, status=Version.Status.VALID)
