"""Each per-job step of the worker timed alone, in one thread, against real rows.

Run inside the project's virtualenv by ``profile_worker.py`` once its drains are done.
"""

from __future__ import annotations

import os
import sys
import time

import common
from common import BACKLOG_SQL, JOB_TABLE


def step_costs(pg_url: str, db: str) -> list[tuple[str, float, float, int]]:
    """Each per-job step alone, in one thread: (step, wall µs per job, CPU µs per job, jobs).

    The DB steps run against real rows (claimed, then recorded with fenced writes),
    one statement (= one transaction, fsync'ed) per call, so their wall time is the
    round trip and commit; CPU is this process's share (building, binding, decoding).
    """
    os.environ.update(BENCH_DSN=f"{pg_url}/{db}", DJANGO_SETTINGS_MODULE="bench_ddj_settings")
    sys.path.insert(0, str(common.BENCH / "project"))
    import logging

    import django

    django.setup()
    from django.db import connection

    from django_durable_jobs.connections import tidy_connections
    from django_durable_jobs.db import get_backend
    from django_durable_jobs.worker import Worker
    from django_durable_jobs.worker.execution import execute
    from django_durable_jobs.worker.recorder import log_outcome

    # The log line runworker writes per job, to /dev/null, formatted as runworker does.
    package_logger = logging.getLogger("django_durable_jobs")
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s")
    )
    package_logger.addHandler(handler)
    package_logger.setLevel("INFO")
    backend = get_backend("default")
    worker = Worker(install_signal_handlers=False)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {JOB_TABLE}")
        cursor.execute(BACKLOG_SQL, [20_000])
    rows: list[tuple[str, float, float, int]] = []

    def timed(label: str, jobs: int, fn) -> object:
        w0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        w1, c1 = time.perf_counter(), time.process_time()
        rows.append((label, (w1 - w0) * 1e6 / jobs, (c1 - c0) * 1e6 / jobs, jobs))
        return value

    def claim(limit: int, calls: int) -> list:
        out = []
        for _ in range(calls):
            out += backend.claim(worker_id=worker.id, queues=None, limit=limit, lease_seconds=60)
        return out

    def record(outcomes: list, size: int) -> None:
        for i in range(0, len(outcomes), size):
            backend.record(outcomes[i : i + size])

    def run_all(jobs: list) -> list:
        return [
            execute(job, backend=backend, recorder=worker.recorder, worker_id=worker.id)[0]
            for job in jobs
        ]

    k = 2000
    one = timed("claim, 1 job per statement", k, lambda: claim(1, k))
    eight = timed("claim, 8 jobs per statement", k, lambda: claim(8, k // 8))
    hundred = timed("claim, 100 jobs per statement", k, lambda: claim(100, k // 100))
    if not len(one) == len(eight) == len(hundred) == k:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT status, count(*) FROM {JOB_TABLE} GROUP BY 1")
            counts = dict(cursor.fetchall())
        raise RuntimeError(
            f"claims returned {len(one)}, {len(eight)}, {len(hundred)} jobs, not {k} each; "
            f"job table: {counts}"
        )
    outcomes = timed(
        "execute() a no-op job (lookup, decode, context, result)", k, lambda: run_all(one)
    )
    package_logger.setLevel("DEBUG")

    def log_all() -> list:
        return [log_outcome(outcome) for outcome in outcomes]

    timed("log a success line per job (DEBUG)", k, log_all)
    package_logger.setLevel("INFO")
    timed("log_outcome() at the default level", k, log_all)
    timed("tidy_connections() (once per job)", k, lambda: [tidy_connections() for _ in range(k)])
    timed("record, 1 outcome per statement", k, lambda: record(outcomes, 1))
    # Executed before the clock starts: these rows time the writes alone.
    eight_outcomes, hundred_outcomes = run_all(eight), run_all(hundred)
    timed("record, 8 outcomes per statement", k, lambda: record(eight_outcomes, 8))
    timed("record, 100 outcomes per statement", k, lambda: record(hundred_outcomes, 100))

    # The enqueue side (W1, W2): Python preparation vs the insert itself.
    from ddj_bench.jobs import noop

    from django_durable_jobs.enqueue import insert_now

    prepared = timed(
        "enqueue: prepare() (validate, encode)", k, lambda: [noop.prepare(i) for i in range(k)]
    )
    timed(
        "enqueue: noop.enqueue(i), one transaction each",
        k,
        lambda: [noop.enqueue(i) for i in range(k)],
    )
    timed(
        "enqueue: insert of 2,000 prepared rows (one statement on PostgreSQL)",
        k,
        lambda: insert_now(prepared, "default"),
    )
    return rows
