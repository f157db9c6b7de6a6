"""hub/settings.py reads its environment once, at import: each case is a fresh process.

Every subprocess gets a controlled environment (PATH, DJANGO_SETTINGS_MODULE, a private
STRATA_DATA_DIR and whatever the case sets), never the test run's own DATABASE_URL, S3_*
or broker settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Prints the settings a case inspects, after a full django.setup().
REPORT = """
import json
import django
django.setup()
from django.conf import settings
from hub.registry.storage import get_blob_store
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "DB_ENGINE": db["ENGINE"],
    "DB_NAME": str(db["NAME"]),
    "USES_POSTGRES": settings.USES_POSTGRES,
    "STORAGE_BACKEND": settings.STORAGE_BACKEND,
    "BLOB_DIR": str(settings.BLOB_DIR),
    "BLOB_STORE": type(get_blob_store()).__name__,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "BROKER_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
}))
"""


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings (via django.setup) in a process with exactly this environment."""
    controlled = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", REPORT],
        cwd=ROOT,
        env=controlled,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def settings_of(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = start(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def refusal(tmp_path: Path, **env: str) -> str:
    """The one-line error a refused start-up ends with (the traceback's last line)."""
    result = start(tmp_path, **env)
    assert result.returncode != 0, f"settings accepted {env}: {result.stdout}"
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("hub.env.ConfigError: "), result.stderr
    return last_line.removeprefix("hub.env.ConfigError: ")


# --- Bad values fail at start with a message naming the variable ---------------------


def test_it_refuses_a_debug_value_that_is_not_a_boolean(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="maybe")
    assert message.startswith("DEBUG='maybe' is not a boolean")


def test_it_refuses_a_non_integer_job_max_attempts(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", JOB_MAX_ATTEMPTS="abc")
    assert message == "JOB_MAX_ATTEMPTS='abc' is not an integer."


def test_it_refuses_an_integer_below_its_minimum(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", JOB_MAX_ATTEMPTS="0")
    assert message == "JOB_MAX_ATTEMPTS=0 is below the minimum of 1."


def test_it_refuses_a_mysql_database_url(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", DATABASE_URL="mysql://strata:pw@db:3306/strata")
    assert message == "DATABASE_URL scheme 'mysql' is not supported (postgres or sqlite)."


def test_it_refuses_s3_storage_without_a_bucket(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", STORAGE_BACKEND="s3")
    assert message == "STORAGE_BACKEND=s3 needs S3_BUCKET (at least 3 characters)."


def test_it_refuses_an_unknown_storage_backend(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", STORAGE_BACKEND="gcs")
    assert message == "STORAGE_BACKEND='gcs' must be one of local, s3."


def test_it_refuses_a_kafka_broker_url(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", CELERY_BROKER_URL="kafka://broker:9092")
    assert message == "CELERY_BROKER_URL scheme 'kafka' is not supported."


def test_it_refuses_a_public_base_url_that_is_not_http(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", PUBLIC_BASE_URL="ftp://x")
    assert message == "PUBLIC_BASE_URL='ftp://x' must be an http(s) URL."


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    message = refusal(tmp_path)
    assert message == "SECRET_KEY must be set (or SECRET_KEY_FILE) unless DEBUG=1."


# --- *_FILE secrets -------------------------------------------------------------------


def test_it_reads_the_secret_key_from_secret_key_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("  key-from-a-mounted-secret-0123456789\n")
    report = settings_of(tmp_path, SECRET_KEY_FILE=str(secret))
    assert report["SECRET_KEY"] == "key-from-a-mounted-secret-0123456789"
    assert report["DEBUG"] is False


def test_a_secret_file_wins_over_the_plain_variable(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("key-from-the-file")
    report = settings_of(tmp_path, SECRET_KEY="key-from-env", SECRET_KEY_FILE=str(secret))
    assert report["SECRET_KEY"] == "key-from-the-file"


def test_any_setting_can_come_from_a_file(tmp_path: Path) -> None:
    url_file = tmp_path / "database_url"
    url_file.write_text(f"sqlite:///{tmp_path / 'from-file.sqlite3'}\n")
    report = settings_of(tmp_path, DEBUG="1", DATABASE_URL_FILE=str(url_file))
    assert report["DB_NAME"] == str(tmp_path / "from-file.sqlite3")


def test_it_refuses_a_secret_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    message = refusal(tmp_path, SECRET_KEY_FILE=str(missing))
    assert message.startswith(f"SECRET_KEY_FILE={str(missing)!r} cannot be read: ")
    assert "No such file or directory" in message


def test_it_refuses_a_secret_file_that_is_a_directory(tmp_path: Path) -> None:
    message = refusal(tmp_path, DEBUG="1", S3_SECRET_ACCESS_KEY_FILE=str(tmp_path))
    assert message.startswith(f"S3_SECRET_ACCESS_KEY_FILE={str(tmp_path)!r} cannot be read: ")


# --- Embedded defaults and production switches ----------------------------------------


def test_embedded_defaults_are_sqlite_local_blobs_and_the_filesystem_broker(
    tmp_path: Path,
) -> None:
    data = (tmp_path / "data").resolve()
    report = settings_of(tmp_path, DEBUG="1")
    assert report["DEBUG"] is True
    assert report["DB_ENGINE"] == "django.db.backends.sqlite3"
    assert report["DB_NAME"] == str(data / "strata.sqlite3")
    assert report["USES_POSTGRES"] is False
    assert report["STORAGE_BACKEND"] == "local"
    assert report["BLOB_DIR"] == str(data / "blobs")
    assert report["BLOB_STORE"] == "LocalBlobStore"
    assert report["CELERY_BROKER_URL"] == "filesystem://"
    assert report["BROKER_OPTIONS"]["data_folder_in"] == str(data / "broker" / "out")
    assert report["BROKER_OPTIONS"]["processed_folder"] == str(data / "broker" / "processed")
    # DEBUG=1 alone supplies a development key; it is never used with DEBUG off.
    assert report["SECRET_KEY"].startswith("strata-dev-only-insecure-key")
    assert report["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]


def test_setting_a_bucket_switches_storage_to_s3(tmp_path: Path) -> None:
    report = settings_of(
        tmp_path, DEBUG="1", S3_BUCKET="strata", S3_ENDPOINT_URL="http://127.0.0.1:1"
    )
    assert report["STORAGE_BACKEND"] == "s3"
    assert report["BLOB_STORE"] == "S3BlobStore"


def test_production_values_give_postgres_and_redis(tmp_path: Path) -> None:
    report = settings_of(
        tmp_path,
        SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://strata:pw@db.internal:5432/strata",
        CELERY_BROKER_URL="redis://redis.internal:6379/0",
        JOB_TIME_LIMIT_SECONDS="3600",
    )
    assert report["DB_ENGINE"] == "django.db.backends.postgresql"
    assert report["USES_POSTGRES"] is True
    assert report["CELERY_BROKER_URL"] == "redis://redis.internal:6379/0"
    # Redis must not redeliver a running job: visibility timeout = time limit + 30 min.
    assert report["BROKER_OPTIONS"] == {"visibility_timeout": 3600 + 1800}


def test_cookies_are_secure_by_default_behind_an_https_public_url(tmp_path: Path) -> None:
    https = settings_of(tmp_path, SECRET_KEY="x" * 50, PUBLIC_BASE_URL="https://hub.example.org")
    plain = settings_of(tmp_path, SECRET_KEY="x" * 50, PUBLIC_BASE_URL="http://hub.example.org")
    assert https["SESSION_COOKIE_SECURE"] is True
    assert plain["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("OFF", False), ("", False)])
def test_booleans_accept_the_documented_spellings(tmp_path: Path, raw: str, expected: bool) -> None:
    report = settings_of(tmp_path, SECRET_KEY="x" * 50, DEBUG=raw)
    assert report["DEBUG"] is expected
