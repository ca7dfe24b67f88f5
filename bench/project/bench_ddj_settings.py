"""Django settings for benchmarking django-durable-jobs: Django's defaults, as a user has them.

CONN_MAX_AGE stays at Django's default (0): the worker keeps its connections
open whatever it says. DURABLE_JOBS is left at its defaults (concurrency 8,
LISTEN/NOTIFY on); BENCH_DDJ_SETTINGS (JSON) can override keys for experiments.
"""

import json
import os
from urllib.parse import urlparse

_u = urlparse(os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:55433/bench_ddj"))
SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_durable_jobs",
    "ddj_bench",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "ddj_bench.urls"
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _u.path.lstrip("/"),
        "USER": _u.username or "postgres",
        "PASSWORD": _u.password or "",
        "HOST": _u.hostname or "127.0.0.1",
        "PORT": str(_u.port or 5432),
        # Django's default is client-side binding (psycopg ClientCursor); "1" measures
        # server-side binding instead.
        "OPTIONS": {"server_side_binding": os.environ.get("BENCH_DJ_SERVER_SIDE_BINDING") == "1"},
        # Behind PgBouncer in transaction mode (Django's advice; docs/howto/pgbouncer.md).
        "DISABLE_SERVER_SIDE_CURSORS": os.environ.get("BENCH_DJ_POOLER") == "transaction",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DURABLE_JOBS = json.loads(os.environ.get("BENCH_DDJ_SETTINGS") or "{}")
