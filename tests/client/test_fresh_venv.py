"""The client installs on its own: a fresh virtualenv, ``pip install ./client``, no Django."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import ROOT, Hub, write_files

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_install_into_a_fresh_venv_and_pull(hub: Hub) -> None:
    source = hub.tmp / "client-src"
    shutil.copytree(
        ROOT / "client",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", "dist"),
    )
    venv = hub.tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # Only the light dependencies came along.
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, env=env, check=True
    ).stdout.lower()
    for heavy in ("django", "torch", "transformers", "peft", "boto3", "rich"):
        assert f"\n{heavy}==" not in f"\n{freeze}", freeze
    assert "strata-client" in freeze or "strata_client" in freeze
    no_django = subprocess.run(
        [str(python), "-c", "import django"], capture_output=True, env=env, check=False
    )
    assert no_django.returncode != 0

    strata = venv / "bin" / "strata"
    helped = subprocess.run(
        [str(strata), "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert helped.returncode == 0
    assert "pull" in helped.stdout

    data = write_files(hub.tmp / "data", {"rows.jsonl": b'{"x": 1}\n' * 1000})
    assert hub.cli("push", str(data), "alice/rows", "--kind", "dataset").returncode == 0
    run_env = {**env, **{k: v for k, v in hub.env().items() if k.startswith("STRATA_")}}
    run_env["STRATA_CACHE_DIR"] = str(hub.tmp / "venv-cache")
    pulled = subprocess.run(
        [str(strata), "pull", "alice/rows", "-o", str(hub.tmp / "rows")],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=hub.tmp,
        timeout=120,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert Path(pulled.stdout.strip()) == hub.tmp / "rows"
    assert (hub.tmp / "rows" / "rows.jsonl").read_bytes() == b'{"x": 1}\n' * 1000
