"""Strata settings: everything comes from environment variables.

With nothing set, the hub runs embedded (SQLite, a local blob directory, a filesystem
Celery broker) under ``STRATA_DATA_DIR``. Production sets ``DATABASE_URL``, the ``S3_*``
variables and ``CELERY_BROKER_URL``; see docs/CONFIGURATION.md. Bad values raise
:class:`hub.env.ConfigError` at start-up.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from hub.env import ConfigError, env_bool, env_choice, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STRATA_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError("SECRET_KEY must be set (or SECRET_KEY_FILE) unless DEBUG=1.")
    SECRET_KEY = "strata-dev-only-insecure-key-do-not-use-in-production-0123456789"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
#: The URL clients use to reach the hub; Hugging Face clients compare its host with
#: HF_ENDPOINT, so it must be the public one, never derived from a proxied Host header.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
if urlsplit(PUBLIC_BASE_URL).scheme not in ("http", "https"):
    raise ConfigError(f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r} must be an http(s) URL.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "hub.accounts",
    "hub.registry",
    "hub.api",
    "hub.hfcompat",
    "hub.web",
]

MIDDLEWARE = [
    "hub.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "hub.content_security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "hub.input_guard.InputGuardMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'strata.sqlite3'}")
_db_scheme = urlsplit(DATABASE_URL).scheme
if _db_scheme not in ("postgres", "postgresql", "sqlite"):
    raise ConfigError(f"DATABASE_URL scheme {_db_scheme!r} is not supported (postgres or sqlite).")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if _db_scheme == "sqlite":
    # Web and worker processes share the file; wait on locks instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    # A file, not memory, so worker processes in end-to-end tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
USES_POSTGRES = _db_scheme != "sqlite"
#: The hot reads (hub/db_rows.py) are prepared once per connection on PostgreSQL, since
#: planning their joins costs more than running them. Turn off behind a pooler that
#: cannot carry prepared statements (PgBouncer < 1.21 in transaction mode).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
if USES_POSTGRES:
    # psycopg prepares a statement on its 5th run on a connection. Only server-side
    # binding cursors prepare; the ORM's client-side binding cursors never do.
    DATABASES["default"]["OPTIONS"] = {
        "prepare_threshold": 5 if DATABASE_PREPARED_STATEMENTS else None
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Blob storage ---------------------------------------------------------------------

S3_BUCKET = env_str("S3_BUCKET")
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "s3" if S3_BUCKET else "local", ("local", "s3"))
BLOB_DIR = Path(env_str("BLOB_DIR", str(DATA_DIR / "blobs"))).resolve()
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL") or None
#: Where clients reach object storage, when it differs from the workers' endpoint
#: (e.g. MinIO inside docker-compose vs. its published port).
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL") or None
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env_str("S3_ACCESS_KEY_ID") or None
S3_SECRET_ACCESS_KEY = env_str("S3_SECRET_ACCESS_KEY") or None
S3_ADDRESSING_STYLE = env_choice("S3_ADDRESSING_STYLE", "path", ("path", "virtual", "auto"))
if STORAGE_BACKEND == "s3" and len(S3_BUCKET) < 3:
    raise ConfigError("STORAGE_BACKEND=s3 needs S3_BUCKET (at least 3 characters).")
PRESIGN_TTL_SECONDS = env_int("PRESIGN_TTL_SECONDS", 3600, minimum=60)
#: Download counts wait in memory this long and are then written together (0: at once).
DOWNLOAD_COUNT_FLUSH_SECONDS = env_int("DOWNLOAD_COUNT_FLUSH_SECONDS", 5, minimum=0)
#: Unrecorded objects and unfinished multipart uploads older than this are collected.
#: It must outlast any upload in flight: upload sessions live 24 hours.
ORPHAN_GRACE_SECONDS = env_int("ORPHAN_GRACE_SECONDS", 2 * 86400, minimum=86400 + 3600)

# --- Upload limits --------------------------------------------------------------------

MAX_FILE_BYTES = env_int("MAX_FILE_BYTES", 50 * 1024**3, minimum=1)
MAX_METADATA_BYTES = env_int("MAX_METADATA_BYTES", 64 * 1024, minimum=1024)
MAX_METADATA_DEPTH = env_int("MAX_METADATA_DEPTH", 8, minimum=2)
MULTIPART_THRESHOLD_BYTES = env_int("MULTIPART_THRESHOLD_BYTES", 64 * 1024**2, minimum=5 * 1024**2)
MULTIPART_PART_BYTES = env_int("MULTIPART_PART_BYTES", 64 * 1024**2, minimum=5 * 1024**2)
# Streaming uploads never go through Django's in-memory handler.
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 4 * 1024**2, minimum=1024)
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR") or None
#: Bytes of versions one namespace may hold (0: no limit). Merged weights do not count.
NAMESPACE_QUOTA_BYTES = env_int("NAMESPACE_QUOTA_BYTES", 0, minimum=0)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 1000, minimum=1)

# --- Celery ---------------------------------------------------------------------------

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_scheme = urlsplit(CELERY_BROKER_URL).scheme
if _broker_scheme not in ("redis", "rediss", "amqp", "filesystem", "memory"):
    raise ConfigError(f"CELERY_BROKER_URL scheme {_broker_scheme!r} is not supported.")
#: The longest a single job may run; the broker must not redeliver before it ends.
JOB_TIME_LIMIT_SECONDS = env_int("JOB_TIME_LIMIT_SECONDS", 2 * 3600, minimum=60)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
    # Redis redelivers unacknowledged messages after this; it must exceed any job, or a
    # long merge runs twice (acks_late keeps the message until the job ends).
    "visibility_timeout": JOB_TIME_LIMIT_SECONDS + 1800,
}
if _broker_scheme == "filesystem":
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        data_folder_in=str(_broker_dir / "out"),
        data_folder_out=str(_broker_dir / "out"),
        processed_folder=str(_broker_dir / "processed"),
        # Broadcast (control) messages; kombu would otherwise use ./control in the cwd.
        control_folder=str(_broker_dir / "control"),
        store_processed=False,
    )
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
JOB_HEARTBEAT_SECONDS = env_int("JOB_HEARTBEAT_SECONDS", 30, minimum=1)
JOB_STALE_AFTER_SECONDS = env_int("JOB_STALE_AFTER_SECONDS", 300, minimum=5)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
#: Merge, compose and benchmark jobs one user may have queued or running at once.
MAX_ACTIVE_JOBS_PER_USER = env_int("MAX_ACTIVE_JOBS_PER_USER", 4, minimum=1)
#: Where workers cache base models and adapters they have downloaded (by commit id).
WORKER_CACHE_DIR = Path(env_str("WORKER_CACHE_DIR", str(DATA_DIR / "worker-cache"))).resolve()
#: Benchmark budget: tokens scored per model and eval set, and the speed test's shape.
BENCHMARK_MAX_TOKENS = env_int("BENCHMARK_MAX_TOKENS", 4096, minimum=64)
BENCHMARK_SPEED_SEQ_LEN = env_int("BENCHMARK_SPEED_SEQ_LEN", 256, minimum=8)
BENCHMARK_SPEED_REPEATS = env_int("BENCHMARK_SPEED_REPEATS", 5, minimum=1)
#: Merges record a parity check (merged vs unmerged outputs) for bases up to this size.
PARITY_MAX_BASE_BYTES = env_int("PARITY_MAX_BASE_BYTES", 2 * 1024**3, minimum=0)

# --- Auth, API ------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.api.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_THROTTLE_CLASSES": [
        "hub.api.throttles.TokenRateThrottle",
        "hub.api.throttles.AnonymousRateThrottle",
    ],
    # Behind a proxy, the client address is the last hop the proxy appended.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hub.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Strata API",
    "DESCRIPTION": "Publish, check, combine and pull LoRA adapters.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

#: Requests per period ("N/s", "N/min", "N/hour", "N/day") per token and per client IP.
RATE_LIMIT_USER = env_str("RATE_LIMIT_USER", "3000/min")
RATE_LIMIT_ANON = env_str("RATE_LIMIT_ANON", "600/min")
for _name, _rate in (("RATE_LIMIT_USER", RATE_LIMIT_USER), ("RATE_LIMIT_ANON", RATE_LIMIT_ANON)):
    _count, _, _period = _rate.partition("/")
    if not _count.isdigit() or _period[:1] not in ("s", "m", "h", "d"):
        raise ConfigError(f"{_name}={_rate!r} must look like 600/min.")

#: Rate-limit counters must be shared by every web process: use Redis in production.
CACHE_URL = env_str("CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- Static files, i18n ---------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # No manifest: pages render the same whether or not collectstatic has run, which
        # keeps the one-command start and the test suite free of a build step.
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Security (production posture; `manage.py check --deploy` passes with HTTPS on) ----

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool(
    "SECURE_COOKIES", not DEBUG and PUBLIC_BASE_URL.startswith("https")
)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "hub.request_id.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "hub.request_id.JsonLogFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env_choice("LOG_FORMAT", "plain", ("plain", "json")),
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
