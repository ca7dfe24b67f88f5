"""Admin and operations at 2 million jobs: response times of the console's pages.

Fills its own PostgreSQL database (``ddj_bench_admin``, never the test one)
with 2,000,000 job rows via ``generate_series`` - mostly SUCCESSFUL over 30
days, a few % FAILED and CANCELLED, a READY backlog, some RUNNING - then
times, in process through Django's test client (URL routing, queries,
templates; no network):

* the jobs list unfiltered, filtered several ways, searched, and its last page;
* a failed job's page;
* the dashboard;
* a bulk retry of 10,000 jobs matching a filter (admin action, confirmed).

Target: each under 500 ms. Run from the repository root:

    .venv/bin/python bench/admin_large.py [--rows 2000000] [--reuse] [--repeat 5]

``--reuse`` keeps an already filled database. Set ``BENCH_POSTGRES_URL`` for
another server (default postgres://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "ddj_bench_admin"
urlpatterns: list = []  # filled in main(); this module is the ROOT_URLCONF


def configure(url: str) -> None:
    import django
    from django.conf import settings

    parsed = urlparse(url)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",  # noqa: S106 - a throwaway process
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django_durable_jobs",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
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
        ],
        STATIC_URL="/static/",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": DB_NAME,
                "USER": unquote(parsed.username or "postgres"),
                "PASSWORD": unquote(parsed.password or ""),
                "HOST": parsed.hostname or "127.0.0.1",
                "PORT": str(parsed.port or 5432),
            }
        },
    )
    django.setup()
    from django.contrib import admin
    from django.urls import path

    urlpatterns.append(path("admin/", admin.site.urls))


def create_database(url: str, *, reset: bool) -> None:
    import psycopg

    parsed = urlparse(url)
    with psycopg.connect(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        user=unquote(parsed.username or "postgres"),
        password=unquote(parsed.password or ""),
        dbname=parsed.path.lstrip("/") or "postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if exists and reset:
            conn.execute(f"DROP DATABASE {DB_NAME} WITH (FORCE)")
            exists = None
        if not exists:
            conn.execute(f"CREATE DATABASE {DB_NAME}")


FILL_SQL = """
INSERT INTO django_durable_jobs_job (
    name, queue, priority, status, args, kwargs, result, errors, attempts, max_attempts,
    run_at, enqueued_at, started_at, finished_at, worker_id, lease_token, lease_expires_at,
    unique_states, waiting_for, meta
)
SELECT
    'bench.jobs.job_' || (g % 12),
    (ARRAY['default', 'emails', 'reports', 'webhooks', 'exports'])[1 + (g % 5)],
    0,
    s.status,
    jsonb_build_array(g, 'customer-' || (g % 9973), jsonb_build_object('items', g % 7)),
    jsonb_build_object('trace', md5(g::text)),
    CASE WHEN s.status = 'SUCCESSFUL' THEN to_jsonb(g % 1000) END,
    CASE WHEN s.status IN ('FAILED', 'CANCELLED') THEN (
        SELECT jsonb_agg(jsonb_build_object(
            'attempt', a, 'outcome', 'error', 'exception_class', 'builtins.ConnectionError',
            'message', 'upstream said 503 on attempt ' || a,
            'traceback', repeat('  File "app/jobs.py", line 42, in call\n', 30)
                || 'ConnectionError: upstream said 503',
            'worker', md5(g::text)::uuid::text, 'started_at', t.at, 'at', t.at))
        FROM generate_series(1, 3) AS a) ELSE '[]'::jsonb END,
    CASE WHEN s.status IN ('READY') THEN 0 WHEN s.status = 'FAILED' THEN 3 ELSE 1 END,
    3,
    CASE WHEN s.status = 'READY' AND g % 10 = 0 THEN now() + interval '1 hour'
         WHEN s.status = 'READY' THEN now() - (g % 600) * interval '1 second'
         ELSE t.at - interval '5 seconds' END,
    t.at - interval '10 seconds',
    CASE WHEN s.status IN ('READY') THEN NULL ELSE t.at - interval '2 seconds' END,
    CASE WHEN s.status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED') THEN t.at END,
    CASE WHEN s.status <> 'READY' THEN md5((g % 8)::text)::uuid END,
    CASE WHEN s.status = 'READY' THEN 0 ELSE 1 END,
    CASE WHEN s.status = 'RUNNING' THEN now() + interval '1 minute' END,
    0,
    0,
    '{}'::jsonb
FROM generate_series(1, %(rows)s) AS g
CROSS JOIN LATERAL (SELECT now() - (%(rows)s - g) * (interval '30 days' / %(rows)s) AS at) AS t
CROSS JOIN LATERAL (SELECT CASE
    WHEN g > %(rows)s - 50 THEN 'RUNNING'
    WHEN g > %(rows)s - 50050 THEN 'READY'
    WHEN g % 100 < 3 THEN 'FAILED'
    WHEN g % 100 = 3 THEN 'CANCELLED'
    ELSE 'SUCCESSFUL' END AS status) AS s
"""


def fill(rows: int) -> None:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_durable_jobs_job RESTART IDENTITY")
        step = 250_000
        for start in range(0, rows, step):
            size = min(step, rows - start)
            cursor.execute(
                FILL_SQL.replace("%(rows)s", str(rows)).replace(
                    "generate_series(1, " + str(rows) + ")",
                    f"generate_series({start + 1}, {start + size})",
                )
            )
            print(f"  {start + size:>9,} rows", flush=True)
        cursor.execute("VACUUM ANALYZE django_durable_jobs_job")
    print(f"filled {rows:,} rows in {time.perf_counter() - started:.0f}s")


def timed(call, repeat: int) -> tuple[float, float]:
    call()  # warm caches, compile templates
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep an already filled database")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    create_database(url, reset=not args.reuse)
    configure(url)

    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db.models import F
    from django.test import Client

    from django_durable_jobs.admin.jobs import JobAdmin
    from django_durable_jobs.models import Job

    call_command("migrate", verbosity=0)
    if not args.reuse or Job.objects.count() < args.rows:
        fill(args.rows)
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    failed = Job.objects.filter(status="FAILED").order_by("-id").values_list("id", flat=True)[0]
    base = "/admin/django_durable_jobs/job/"

    def get(path: str):
        def call():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)

        return call

    pages = [
        ("jobs list, unfiltered", base),
        ("jobs list, status=FAILED", base + "?status=FAILED"),
        ("jobs list, queue=emails & status=FAILED", base + "?queue=emails&status=FAILED"),
        ("jobs list, name & status=SUCCESSFUL", base + "?name=bench.jobs.job_3&status=SUCCESSFUL"),
        ("jobs list, status=READY", base + "?status=READY"),
        ("jobs list, finished in the last hour", base + "?period=finished_1h"),
        ("jobs list, search 'job_7'", base + "?q=job_7"),
        ("jobs list, page 200 (the deepest)", base + "?p=200"),
        ("job page (failed, 3 attempts)", f"{base}{failed}/change/"),
        ("dashboard", base + "dashboard/"),
    ]
    print(f"\n{Job.objects.count():,} jobs; median (max) of {args.repeat} runs after a warm-up\n")
    results = []
    for label, path in pages:
        median, worst = timed(get(path), args.repeat)
        results.append((label, median, worst))
        print(f"  {label:<45} {median:8.1f} ms  ({worst:.1f})", flush=True)

    # Put back jobs retried by an earlier run, so every run retries FAILED jobs.
    from django.db import connection

    reset = Job.objects.filter(status="READY", meta__has_key="retried").update(
        status="FAILED", attempts=3, finished_at=F("enqueued_at") + timedelta(seconds=10), meta={}
    )
    if reset:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE django_durable_jobs_job")
    JobAdmin.bulk_limit = 10_000
    times = []
    for _ in range(3):
        started = time.perf_counter()
        response = client.post(
            base + "?status=FAILED",
            {
                "action": "retry_jobs",
                "index": "0",
                "select_across": "1",
                "_selected_action": [str(failed)],
                "ddj_confirm": "yes",
            },
        )
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 302, response.status_code
    retried = Job.objects.filter(status="READY", meta__has_key="retried").count()
    label = "bulk retry of 10,000 (status=FAILED)"
    results.append((label, statistics.median(times), max(times)))
    print(f"  {label:<45} {statistics.median(times):8.1f} ms  ({max(times):.1f})")
    print(f"    ({retried:,} jobs now READY with the operator's retry recorded)")
    slow = [label for label, median, _ in results if median >= 500]
    print("\nall under 500 ms" if not slow else f"\nover 500 ms: {', '.join(slow)}")


if __name__ == "__main__":
    main()
