# Strata web + CPU worker image (one image, two roles; see docs/OPERATIONS.md).
#
#   web:        gunicorn hub.wsgi ...                (the default command)
#   cpu worker: celery -A workers.app worker -Q cpu
#   beat:       celery -A workers.app beat
#   migrate:    python manage.py migrate --noinput
#
# The worker role needs torch, so the image installs the `worker` extra; torch comes from
# the PyTorch CPU index first (the PyPI wheel for Linux is the multi-GB CUDA build). GPU
# workers use docker/gpu.Dockerfile instead.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=hub.settings \
    STRATA_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles

RUN groupadd --system --gid 10001 strata \
    && useradd --system --uid 10001 --gid strata --home-dir /app --shell /usr/sbin/nologin strata

WORKDIR /app

# torch first, in its own layer: it is the largest download and changes least often.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Dependencies next, from pyproject.toml alone (empty package stubs let the editable
# install resolve), so source edits do not reinstall them. The editable install keeps
# BASE_DIR at /app, where settings find templates/ and the apps' static files.
COPY pyproject.toml README.md ./
RUN mkdir hub workers && touch hub/__init__.py workers/__init__.py \
    && pip install -e ".[worker]"

COPY manage.py ./
COPY templates ./templates
COPY hub ./hub
COPY workers ./workers

# Static files at build time (whitenoise serves them). Settings refuse to load without a
# SECRET_KEY when DEBUG is off; this throwaway one exists only for this RUN.
RUN SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /data \
    && chown strata:strata /data

USER strata
EXPOSE 8000

# Threads: a slow upload or download then holds one thread, not a whole worker process
# (and this is the configuration bench/load.py measures).
CMD ["gunicorn", "hub.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "4", "--threads", "8", "--timeout", "600", "--access-logfile", "-"]
