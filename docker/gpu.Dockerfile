# Strata GPU worker image: a Celery worker on the `gpu` queue (merge, compose, benchmark).
#
# Build from the repository root:
#   docker build -f docker/gpu.Dockerfile -t strata-gpu .
#
# torch is installed first from the PyTorch CUDA index (TORCH_INDEX_URL; pick the CUDA
# build that matches the host driver), then the project with the `worker` extra, whose
# `torch==2.13.0` pin the CUDA build (`2.13.0+cu128`) already satisfies. The host needs
# the NVIDIA driver and the NVIDIA Container Toolkit; docker-compose.yml reserves the GPU.
FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=hub.settings \
    STRATA_DATA_DIR=/data \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu 22.04 ships Python 3.10; the project needs 3.11 (deadsnakes PPA).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv \
    && pip install --upgrade pip

RUN groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid strata --home-dir /app --shell /usr/sbin/nologin strata

WORKDIR /app

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md ./
RUN mkdir hub workers && touch hub/__init__.py workers/__init__.py \
    && pip install -e ".[worker]"

COPY manage.py ./
COPY templates ./templates
COPY hub ./hub
COPY workers ./workers

RUN mkdir -p /data && chown strata:strata /data

USER strata

# One job at a time per GPU: a merge holds the whole model in GPU memory.
CMD ["celery", "-A", "workers.app", "worker", "-Q", "gpu", "--concurrency", "1", \
     "--loglevel", "info"]
