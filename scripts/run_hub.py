"""The run command: migrate, seed the demo, start the web server and a worker.

Runs on embedded defaults (SQLite, local blobs, filesystem broker under ./var) unless
the environment says otherwise. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> None:
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    data = Path(env.setdefault("STRATA_DATA_DIR", str(ROOT / "var")))
    for folder in ("broker/out", "broker/processed", "broker/control", "blobs"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    env.setdefault("PUBLIC_BASE_URL", f"http://{host}:{port}")

    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True)
    print("seeding the demo (builds real LoRA adapters for MiniLM; ~30 s the first time)...")
    subprocess.run([*manage, "seed_demo"], env=env, check=True)

    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "workers.app",
            "worker",
            "-B",
            "-Q",
            "cpu,gpu",
            "-c",
            "1",
            "-l",
            "warning",
            "-s",
            str(data / "celerybeat-schedule"),
        ],
        cwd=ROOT,
        env=env,
    )
    web = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "hub.wsgi",
            "-b",
            f"{host}:{port}",
            "-w",
            "2",
            "--timeout",
            "600",
            "--access-logfile",
            "-",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://{host}:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    print(f"\nStrata is running at {url}  (sign in as demo / demo-password; Ctrl-C stops)\n")

    def stop(*_: object) -> None:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while web.poll() is None and worker.poll() is None:
        time.sleep(1)
    stop()


if __name__ == "__main__":
    main()
