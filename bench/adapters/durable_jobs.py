"""Adapter for django-durable-jobs in the shared harness's interface (bench-peers README).

Loaded by ``bench/peer_runner.py`` as ``adapters.durable_jobs``. The worker is
``manage.py runworker`` with every setting at its default (concurrency 8 threads,
LISTEN/NOTIFY on, poll interval 1 s, log level INFO) and Django's default
``CONN_MAX_AGE=0`` (the worker holds its connections anyway). Concurrency 8 is
``--concurrency 8``: the same as the default, so W3's two rows measure the same
configuration twice (a free check of run-to-run noise).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

PROJECT = str(Path(__file__).resolve().parent.parent / "project")
SETTINGS = "bench_ddj_settings"


class Adapter:
    name = "durable_jobs"
    db = "bench_durable_jobs"
    is_async = False
    notes = (
        "runworker at default settings: 8 executor threads, one batch claim for the free "
        "slots plus an adaptive claim-ahead (FOR UPDATE SKIP LOCKED), outcomes written in "
        "fenced batches by a completer thread, LISTEN/NOTIFY wake-up with "
        "1 s polling fallback, INFO log line per job; CONN_MAX_AGE=0 (Django's default; the "
        "worker holds its connections). Finished jobs stay in the table (history). "
        "W2 = enqueue_many() (one INSERT ... SELECT FROM unnest() of binary arrays, one "
        "transaction). "
        "Concurrency 8 = --concurrency 8 (= the default)."
    )
    table = "django_durable_jobs_job"

    def __init__(self) -> None:
        self.extra = [a for a in os.environ.get("BENCH_DDJ_ARGS", "").split() if a]

    def _django(self) -> None:
        os.environ["BENCH_DSN"] = self.dsn
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
        if PROJECT not in sys.path:
            sys.path.insert(0, PROJECT)
        import django

        django.setup()

    def versions(self) -> dict:
        return {
            "django-durable-jobs": version("django-durable-jobs"),
            "django": version("django"),
            "psycopg": version("psycopg"),
            "worker_args": self.extra,
            "settings": os.environ.get("BENCH_DDJ_SETTINGS", "{}"),
        }

    def setup(self) -> None:
        self._django()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def open(self) -> None:
        import ddj_bench.jobs

        from django_durable_jobs import enqueue_many

        self.jobs = ddj_bench.jobs
        self.enqueue_many = enqueue_many

    def close(self) -> None:
        from django.db import connections

        connections.close_all()

    @property
    def reset_sql(self) -> list[str]:
        # bench/history.py keeps a preloaded history: only rows above it are removed.
        keep_below = os.environ.get("BENCH_DDJ_KEEP_BELOW_ID")
        if keep_below:
            jobs = f"DELETE FROM {self.table} WHERE id > {int(keep_below)}"
        else:
            jobs = f"TRUNCATE {self.table}"
        return [jobs, "TRUNCATE django_durable_jobs_worker"]

    @property
    def pending_sql(self) -> str:
        return f"SELECT count(*) FROM {self.table} WHERE status IN ('READY', 'RUNNING')"

    @property
    def total_sql(self) -> str:
        return f"SELECT count(*) FROM {self.table}"

    def enqueue_one(self, i: int) -> None:
        self.jobs.noop.enqueue(i)

    def enqueue_latency(self, i: int) -> None:
        self.jobs.lat.enqueue(i)

    def enqueue_bulk(self, n: int) -> bool:
        noop = self.jobs.noop
        self.enqueue_many(noop.prepare(i) for i in range(n))
        return True

    prefill = enqueue_bulk

    def worker_env(self) -> dict:
        env = dict(os.environ)
        env["BENCH_DSN"] = self.dsn
        env["DJANGO_SETTINGS_MODULE"] = SETTINGS
        env["PYTHONPATH"] = PROJECT + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def worker_cmds(self, concurrency: int | None) -> list[list[str]]:
        cmd = [sys.executable, "-m", "django", "runworker", *self.extra]
        if concurrency:
            cmd.append(f"--concurrency={concurrency}")
        return [cmd]
