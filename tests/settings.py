"""Settings for the test suite: ``TEST_DB=sqlite`` (default), ``postgres`` or ``mariadb``.

PostgreSQL comes from ``TEST_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``). Worker subprocesses started by
the tests set ``DDJ_USE_TEST_DB=1`` to connect to the test database itself.
``DDJ_TEST_DB_SUFFIX`` keeps concurrent runs (several checkouts) apart.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SUFFIX = os.environ.get("DDJ_TEST_DB_SUFFIX", "main")
TEST_DB = os.environ.get("TEST_DB", "sqlite")
USE_TEST_DB = os.environ.get("DDJ_USE_TEST_DB") == "1"
DATABASES: dict[str, dict[str, Any]]

if TEST_DB == "postgres":
    url = urlparse(
        os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    test_name = f"test_ddj_{SUFFIX}"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": test_name if USE_TEST_DB else (url.path.lstrip("/") or "postgres"),
            "USER": unquote(url.username or "postgres"),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "127.0.0.1",
            # DDJ_TEST_DB_PORT points a worker subprocess at a fault-injecting proxy.
            "PORT": os.environ.get("DDJ_TEST_DB_PORT") or str(url.port or 5432),
            "TEST": {"NAME": test_name},
        },
    }
    if os.environ.get("DDJ_TEST_POOLER") == "transaction":
        # Behind PgBouncer in transaction mode, as docs/howto/pgbouncer.md says.
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    # A second database, for "the jobs live on another alias" transaction tests.
    DATABASES["other"] = {**DATABASES["default"], "TEST": {"NAME": f"{test_name}_other"}}
    if USE_TEST_DB:
        DATABASES["other"]["NAME"] = f"{test_name}_other"
elif TEST_DB == "mariadb":
    # MariaDB (or MySQL) from TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).
    url = urlparse(os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"))
    test_name = f"test_ddj_{SUFFIX}"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": test_name if USE_TEST_DB else (url.path.lstrip("/") or "test"),
            "USER": unquote(url.username or "root"),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "127.0.0.1",
            "PORT": os.environ.get("DDJ_TEST_DB_PORT") or str(url.port or 3306),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": test_name, "CHARSET": "utf8mb4"},
        },
    }
    DATABASES["other"] = {
        **DATABASES["default"],
        "TEST": {"NAME": f"{test_name}_other", "CHARSET": "utf8mb4"},
    }
    if USE_TEST_DB:
        DATABASES["other"]["NAME"] = f"{test_name}_other"
elif TEST_DB == "sqlite":
    test_path = str(Path(tempfile.gettempdir()) / f"ddj-test-{SUFFIX}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": test_path if USE_TEST_DB else str(BASE_DIR / "unused.sqlite3"),
            "OPTIONS": {"timeout": 30},
            "TEST": {"NAME": test_path},
        },
    }
    other_path = test_path.replace(".sqlite3", "-other.sqlite3")
    DATABASES["other"] = {
        **DATABASES["default"],
        "NAME": other_path if USE_TEST_DB else str(BASE_DIR / "unused-other.sqlite3"),
        "TEST": {"NAME": other_path},
    }
else:
    raise RuntimeError(f"TEST_DB must be 'sqlite', 'postgres' or 'mariadb', not {TEST_DB!r}")

import django  # noqa: E402

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_durable_jobs",
    "tests.testapp",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the django.tasks backport, for Django 5.2

# Django's own @task functions run as durable jobs (tests/test_tasks_backend.py).
TASKS = {
    "default": {
        "BACKEND": "django_durable_jobs.tasks_backend.DurableJobsBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"max_attempts": 2},
    },
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"

# Fast timings for tests. DDJ_TEST_BASE_SETTINGS (JSON) overrides keys for a whole run,
# worker subprocesses included (the PgBouncer pass: .ci/pgbouncer); a subprocess can
# override any key again with DDJ_TEST_SETTINGS.
DURABLE_JOBS = {
    "POLL_INTERVAL": 0.2,
    "HEARTBEAT_INTERVAL": 0.5,
    "LEASE_SECONDS": 5.0,
    "SHUTDOWN_TIMEOUT": 10.0,
    "RETRY_BASE_DELAY": 0.1,
    "RETRY_JITTER": 0.0,
    **json.loads(os.environ.get("DDJ_TEST_BASE_SETTINGS", "{}")),
    **json.loads(os.environ.get("DDJ_TEST_SETTINGS", "{}")),
}
