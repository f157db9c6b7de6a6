"""The deployment files (docker-compose.yml, Dockerfile, docker/gpu.Dockerfile) agree
with the code: every command names a program the project has, every environment variable
is one the settings read, and the production settings pass Django's deploy checks.

There is no Docker engine here, so the files are read, not run; the commands they run
(gunicorn with the web health check, the beat health check, manage.py check) are run
for real against the project.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = {
    "Dockerfile": ROOT / "Dockerfile",
    "docker/gpu.Dockerfile": ROOT / "docker/gpu.Dockerfile",
}

#: What an operator's .env holds (see docs/OPERATIONS.md); used to interpolate the file.
DOTENV = {
    "POSTGRES_PASSWORD": "3f6c0d2a9b8e4f7a",
    "MINIO_ROOT_USER": "strata-admin",
    "MINIO_ROOT_PASSWORD": "9d1e5b7c3a2f4e6d8b0a",
    "PUBLIC_BASE_URL": "https://hub.example.org",
    "ALLOWED_HOSTS": "hub.example.org",
    "S3_PUBLIC_ENDPOINT_URL": "https://s3.hub.example.org",
}

#: Variables a Dockerfile may set for tools rather than for hub/settings.py.
TOOL_VARIABLES = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "DJANGO_SETTINGS_MODULE",
    "DEBIAN_FRONTEND",
    "VIRTUAL_ENV",
    "PATH",
}


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def one_shot_services() -> set[str]:
    """Services others wait on to *finish*: they run once and exit."""
    return {
        name
        for service in SERVICES.values()
        for name, dep in (service.get("depends_on") or {}).items()
        if dep.get("condition") == "service_completed_successfully"
    }


def project_services() -> dict[str, dict[str, Any]]:
    """Services built from this repository (the others run third-party images)."""
    return {name: s for name, s in SERVICES.items() if "build" in s}


def settings_variables() -> set[str]:
    """Names hub/settings.py reads through hub.env (each also accepts NAME_FILE)."""
    readers = {"env_str", "env_bool", "env_int", "env_list", "env_choice"}
    tree = ast.parse((ROOT / "hub" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in readers
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} and $$ escapes."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        if op == ":?":
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return ""

    value = re.sub(r"\$\{([A-Za-z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)
    return value.replace("$$", "$")


def interpolated_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9_]+)", COMPOSE_FILE.read_text()))


def strata_environment(service: str = "web") -> dict[str, str]:
    environment = SERVICES[service]["environment"]
    assert isinstance(environment, dict), "write environment as a mapping"
    return {name: interpolate(str(value), DOTENV) for name, value in environment.items()}


def argv_of(command: list[str] | str) -> list[str]:
    """The program and arguments of a compose/Docker command or a CMD-SHELL line."""
    if isinstance(command, list) and command[0] == "CMD":
        return command[1:]
    if isinstance(command, list) and command[0] == "CMD-SHELL":
        command = command[1]
    if isinstance(command, str):
        argv = []
        for token in shlex.split(command):
            if token in (">", "|", "&&", ";", "||"):
                break
            argv.append(token)
        return argv
    return list(command)


def module_file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"


def declared_queues() -> set[str]:
    from workers.app import app

    return {q.name for q in app.conf.task_queues}


def check_program(argv: list[str]) -> None:
    """Fail unless ``argv`` runs something this project really has."""
    program = argv[0]
    if program == "python" and argv[1] == "manage.py":
        from django.core.management import get_commands

        assert (ROOT / "manage.py").is_file()
        assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
    elif program == "python" and argv[1] == "-c":
        compile(argv[2], "<command>", "exec")
    elif program == "gunicorn":
        module, _, attr = argv[1].partition(":")
        assert module_file(module).is_file(), f"{module} has no file"
        # Read, not imported: importing builds the WSGI app (the live test below runs it).
        tree = ast.parse(module_file(module).read_text())
        assigned = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert (attr or "application") in assigned, f"{module} defines no WSGI application"
    elif program == "celery":
        assert argv[1] in ("-A", "--app"), argv
        module, _, attr = argv[2].partition(":")
        assert module_file(module).is_file(), f"{module} has no file"
        app = getattr(importlib.import_module(module), attr or "app")
        assert isinstance(app, Celery)
        subcommand = argv[3]
        assert subcommand in ("worker", "beat", "inspect"), argv
        if subcommand == "worker":
            queues = set(option_value(argv, "-Q", "--queues").split(","))
            assert queues <= declared_queues(), f"unknown queue in {argv}"
    else:
        pytest.fail(f"unexpected program {program!r} in {argv}")


def option_value(argv: list[str], *names: str) -> str:
    for index, token in enumerate(argv):
        if token in names:
            return argv[index + 1]
    raise AssertionError(f"{argv} has none of {names}")


# --- docker-compose.yml ---------------------------------------------------------------


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name


def test_third_party_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: pin {image}"
        assert tag != "latest", f"{name}: pin {image}"


def test_every_long_running_service_has_a_healthcheck_and_restarts() -> None:
    one_shot = one_shot_services()
    assert one_shot == {"migrate", "createbucket"}
    for name, service in SERVICES.items():
        if name in one_shot:
            assert service.get("restart") == "no", name
            assert "healthcheck" not in service, name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name


def test_depends_on_waits_for_health_or_completion() -> None:
    one_shot = one_shot_services()
    for name, service in SERVICES.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            expected = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert how == {"condition": expected}, f"{name} -> {dep}"
    for app_service in ("web", "worker-cpu", "worker-gpu"):
        assert set(SERVICES[app_service]["depends_on"]) == {
            "postgres",
            "redis",
            "migrate",
            "createbucket",
        }
    assert set(SERVICES["migrate"]["depends_on"]) == {"postgres"}
    assert set(SERVICES["createbucket"]["depends_on"]) == {"minio"}


def test_every_project_command_runs_a_program_the_project_has() -> None:
    services = project_services()
    assert set(services) == {"migrate", "web", "worker-cpu", "worker-gpu", "beat"}
    for service in services.values():
        check_program(argv_of(service["command"]))
        if "healthcheck" in service:
            check_program(argv_of(service["healthcheck"]["test"]))


def test_project_services_build_from_dockerfiles_that_exist() -> None:
    for name, service in project_services().items():
        build = service["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).is_file(), name
    assert SERVICES["worker-gpu"]["build"]["dockerfile"] == "docker/gpu.Dockerfile"
    assert SERVICES["web"]["build"]["dockerfile"] == "Dockerfile"


def test_the_gpu_worker_reserves_an_nvidia_gpu_and_consumes_the_gpu_queue() -> None:
    gpu = SERVICES["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    argv = argv_of(gpu["command"])
    assert argv[3] == "worker"
    assert option_value(argv, "-Q", "--queues") == "gpu"
    assert option_value(argv, "--concurrency", "-c") == "1"


def test_the_cpu_worker_consumes_the_cpu_queue_and_one_beat_schedules() -> None:
    argv = argv_of(SERVICES["worker-cpu"]["command"])
    assert option_value(argv, "-Q", "--queues") == "cpu"
    schedulers = [
        name
        for name, service in project_services().items()
        if {"beat", "-B", "--beat"} & set(argv_of(service["command"]))
    ]
    assert schedulers == ["beat"]
    assert "deploy" not in SERVICES["beat"]  # never scaled


def test_every_environment_variable_is_one_the_settings_read() -> None:
    known = settings_variables()
    readable = known | {f"{name}_FILE" for name in known}
    for name, service in project_services().items():
        unknown = set(service["environment"]) - readable
        assert not unknown, f"{name}: hub/settings.py reads no {sorted(unknown)}"
    # And the ones the brief of this deployment depends on are really there.
    environment = strata_environment()
    assert environment["S3_ADDRESSING_STYLE"] == "path"
    assert environment["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert environment["STORAGE_BACKEND"] == "s3"
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["CELERY_BROKER_URL"].startswith("redis://")


def test_every_project_service_gets_the_same_settings_and_the_secret() -> None:
    web = strata_environment("web")
    for name, service in project_services().items():
        assert strata_environment(name) == web, name
        assert service["secrets"] == ["secret_key"], name
    assert COMPOSE["secrets"]["secret_key"] == {"file": "./secrets/secret_key"}


def test_createbucket_creates_the_bucket_the_app_uses() -> None:
    service = SERVICES["createbucket"]
    script = " ".join(service["command"])
    assert "mc mb --ignore-existing" in script
    bucket = interpolate(service["environment"]["S3_BUCKET"], DOTENV)
    assert bucket == strata_environment()["S3_BUCKET"]
    endpoint = strata_environment()["S3_ENDPOINT_URL"]
    assert f" {endpoint} " in interpolate(script, DOTENV)


def test_every_variable_compose_interpolates_is_documented() -> None:
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text()
    for name in interpolated_variables():
        assert name in operations, f"docs/OPERATIONS.md does not mention {name}"


def test_the_web_healthcheck_probes_the_port_gunicorn_binds() -> None:
    web = SERVICES["web"]
    bind = option_value(argv_of(web["command"]), "--bind", "-b")
    port = bind.rpartition(":")[2]
    assert f"http://127.0.0.1:{port}/healthz" in argv_of(web["healthcheck"]["test"])[2]
    assert web["ports"] == [f"127.0.0.1:{port}:{port}"]


# --- Dockerfiles ----------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    result = []
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfiles_copy_files_that_exist_and_are_not_ignored(name: str) -> None:
    ignored = dockerignore_patterns()
    copied = []
    for keyword, args in instructions(DOCKERFILES[name]):
        if keyword not in ("COPY", "ADD"):
            continue
        tokens = [t for t in args.split() if not t.startswith("--")]
        for source in tokens[:-1]:
            assert (ROOT / source).exists(), f"{name} copies missing {source}"
            assert not any(fnmatch.fnmatch(source, p) for p in ignored), source
            copied.append(source)
    assert {"pyproject.toml", "manage.py", "hub", "workers", "templates"} <= set(copied)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfiles_run_as_a_non_root_user(name: str) -> None:
    users = [args for keyword, args in instructions(DOCKERFILES[name]) if keyword == "USER"]
    assert users, f"{name} has no USER"
    assert users[-1] not in ("root", "0")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_commands_and_variables_fit_the_project(name: str) -> None:
    known = settings_variables() | TOOL_VARIABLES
    for keyword, args in instructions(DOCKERFILES[name]):
        if keyword == "CMD":
            check_program(json.loads(args))
        if keyword == "ENV":
            names = {token.partition("=")[0] for token in shlex.split(args)}
            assert names <= known, f"{name} sets unknown {sorted(names - known)}"


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("Dockerfile", "https://download.pytorch.org/whl/cpu"),
        ("docker/gpu.Dockerfile", "https://download.pytorch.org/whl/cu128"),
    ],
)
def test_dockerfiles_install_the_pinned_torch_from_the_right_index(name: str, index: str) -> None:
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None
    args = dict(
        tuple(a.split("=", 1))
        for keyword, a in instructions(DOCKERFILES[name])
        if keyword == "ARG" and "=" in a
    )
    assert args["TORCH_VERSION"] == pin.group(1)
    assert args["TORCH_INDEX_URL"] == index
    runs = [a for keyword, a in instructions(DOCKERFILES[name]) if keyword == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if "torch==${TORCH_VERSION}" in r)
    project_step = next(i for i, r in enumerate(runs) if '-e ".[worker]"' in r)
    assert torch_step < project_step, "torch must be installed before the project"


def test_the_web_image_collects_static_files_at_build_time() -> None:
    runs = [a for keyword, a in instructions(DOCKERFILES["Dockerfile"]) if keyword == "RUN"]
    assert any("manage.py collectstatic --noinput" in r for r in runs)


def test_the_gpu_image_default_command_is_the_gpu_worker() -> None:
    cmd = next(
        json.loads(a)
        for keyword, a in instructions(DOCKERFILES["docker/gpu.Dockerfile"])
        if keyword == "CMD"
    )
    assert cmd[:4] == ["celery", "-A", "workers.app", "worker"]
    assert option_value(cmd, "-Q") == "gpu"


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = dockerignore_patterns()
    for entry in (".venv", "var", "secrets", ".env", ".git"):
        assert entry in ignored


# --- Running what the files run -------------------------------------------------------


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "PYTHONDONTWRITEBYTECODE": "1",
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_passes_with_production_like_settings(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(60),
        PUBLIC_BASE_URL="https://hub.example.org",
        ALLOWED_HOSTS="hub.example.org",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_COOKIES="1",
        DATABASE_URL=os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    result = check_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_passes_with_the_compose_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text(secrets.token_urlsafe(50) + "\n")
    env = base_env(tmp_path)
    env.update(strata_environment("web"))
    env.update(SECRET_KEY_FILE=str(secret), STRATA_DATA_DIR=str(tmp_path / "data"))
    # The database host only resolves inside compose; `check` does not connect.
    result = check_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_web_healthcheck_passes_against_gunicorn_with_the_compose_settings(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text(secrets.token_urlsafe(50))
    env = base_env(tmp_path)
    env.update(strata_environment("web"))
    env.update(
        SECRET_KEY_FILE=str(secret),
        STRATA_DATA_DIR=str(tmp_path / "data"),
        # /healthz runs SELECT 1; a fresh SQLite file answers that without compose.
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    port = free_port()
    web = SERVICES["web"]
    argv = argv_of(web["command"])
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "1"
    argv[0] = str(BIN / "gunicorn")
    probe = argv_of(web["healthcheck"]["test"])
    probe_code = probe[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert probe_code != probe[2]

    server = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert server.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        check = subprocess.run(
            [sys.executable, "-c", probe_code],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        # Why the probe sends headers: a bare request is refused by ALLOWED_HOSTS.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(15)


def test_the_beat_healthcheck_tells_a_fresh_schedule_from_a_stale_one(tmp_path: Path) -> None:
    code = argv_of(SERVICES["beat"]["healthcheck"]["test"])[2]
    schedule_arg = option_value(argv_of(SERVICES["beat"]["command"]), "--schedule", "-s")
    assert f"glob.glob('{schedule_arg}*')" in code
    local_code = code.replace(schedule_arg, str(tmp_path / "celerybeat-schedule"))

    def healthy() -> bool:
        result = subprocess.run([sys.executable, "-c", local_code], timeout=30, check=False)
        return result.returncode == 0

    assert not healthy()  # beat has not written its schedule yet
    schedule = tmp_path / "celerybeat-schedule.dat"
    schedule.write_bytes(b"")
    assert healthy()
    stale = time.time() - 11 * 60
    os.utime(schedule, (stale, stale))
    assert not healthy()
