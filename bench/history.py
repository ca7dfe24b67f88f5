"""The claim, the drain and the admin with a large history: 2 million finished rows vs none.

    python bench/history.py            # 2,000,000 finished rows, BENCH_REPEATS (3) rounds
    python bench/history.py --smoke    # 40,000 rows, one round

Two databases on one private PostgreSQL server (fsync on): ``bench_ddj_empty``
(no history) and ``bench_ddj_history`` (BENCH_HISTORY_ROWS finished jobs: 90 %
SUCCESSFUL, 8 % FAILED with an error entry, 2 % CANCELLED, finished over the last
30 days, then VACUUM ANALYZE as autovacuum would leave them). In each round, for
each database, in alternating order:

* claim latency: 1,000 claims of 8 jobs (the default worker's batch) from a
  10,000-job backlog, each followed by a fenced record of their outcomes, timed
  separately; and 200 claims that find nothing (what an idle worker's poll costs);
* admin page times (changelist unfiltered, by status, searched, one job's page);
* a W3 drain of 10,000 no-op jobs by ``runworker`` at default settings, through
  the shared harness (runner.py), history kept.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import BACKLOG_SQL, log

DATABASES = {"empty": "bench_ddj_empty", "history": "bench_ddj_history"}
TABLE = "django_durable_jobs_job"
BACKLOG = 10_000
CLAIMS = 1_000
EMPTY_CLAIMS = 200
BATCH = 8

# One statement per chunk; values vary like a real history (names, queues, statuses, times).
LOAD_SQL_TEMPLATE = f"""
INSERT INTO {TABLE} (name, queue, priority, status, args, kwargs, result, errors, attempts,
    max_attempts, run_at, enqueued_at, started_at, finished_at, worker_id, lease_token,
    unique_states, waiting_for, meta)
SELECT
    'app.jobs.task_' || (g %% 40),
    (ARRAY['default', 'emails', 'reports', 'webhooks'])[1 + g %% 4],
    0,
    CASE WHEN g %% 50 = 0 THEN 'CANCELLED' WHEN g %% 100 < 8 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    jsonb_build_array(g), '{{}}'::jsonb,
    CASE WHEN g %% 100 >= 8 AND g %% 50 <> 0 THEN 'null'::jsonb END,
    CASE WHEN g %% 100 < 8 AND g %% 50 <> 0 THEN jsonb_build_array(jsonb_build_object(
        'attempt', 5, 'outcome', 'error', 'exception_class', 'builtins.ValueError',
        'message', 'boom ' || g, 'traceback', 'Traceback (most recent call last): ...'))
        ELSE '[]'::jsonb END,
    1, 5, t, t, t, t + interval '20 milliseconds', gen_random_uuid(), 1, 0, 0, '{{}}'::jsonb
FROM (SELECT g, {{when}} AS t
      FROM generate_series(%s::bigint, %s::bigint) AS g) AS s
"""
#: Finished at random times over the last 30 days (ids and times uncorrelated).
RANDOM_WHEN = "now() - (random() * interval '30 days')"
#: Finished in id order over the 30 days before now (``%(total)s`` rows in all), as a
#: real history is: the oldest ids finished first (bench/large_tables.py's retention).
ORDERED_WHEN = "now() - (%(total)s - g) * (interval '30 days' / %(total)s)"
LOAD_SQL = LOAD_SQL_TEMPLATE.replace("{when}", RANDOM_WHEN)


def ordered_load_sql(total: int) -> str:
    """LOAD_SQL with ORDERED_WHEN for a history of ``total`` rows."""
    return LOAD_SQL_TEMPLATE.replace("{when}", ORDERED_WHEN % {"total": int(total)})


# --------------------------------------------------------------------------- inside the venv


def _django(db: str) -> None:
    os.environ["BENCH_DSN"] = f"{os.environ['BENCH_PG_URL']}/{db}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_ddj_settings"
    sys.path.insert(0, str(common.BENCH / "project"))
    import django

    django.setup()


def setup(db: str, rows: int) -> dict:
    """Create and migrate ``db``; load ``rows`` finished jobs. Returns the highest id kept."""
    import psycopg

    with psycopg.connect(f"{os.environ['BENCH_PG_URL']}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        conn.execute(f'CREATE DATABASE "{db}"')
    _django(db)
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    started = time.perf_counter()
    chunk = 250_000
    with connection.cursor() as cursor:
        for first in range(1, rows + 1, chunk):
            cursor.execute(LOAD_SQL, [first, min(first + chunk - 1, rows)])
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
        cursor.execute(
            f"SELECT coalesce(max(id), 0), pg_total_relation_size('{TABLE}') FROM {TABLE}"
        )
        max_id, size = cursor.fetchone()
    return {
        "rows": rows,
        "max_id": max_id,
        "load_s": time.perf_counter() - started,
        "table_mb": size / 2**20,
    }


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    f = int(k)
    return s[f] + (s[min(f + 1, len(s) - 1)] - s[f]) * (k - f)


SLOW_QUERIES: dict[str, list[tuple[float, str]]] = {}


def _page_ms(client, url: str) -> float:
    """Median of 5 GETs of an admin page (after one warm-up); keeps its slowest queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    slowest = sorted(((float(q["time"]) * 1000, q["sql"]) for q in queries), reverse=True)
    SLOW_QUERIES[url] = [(ms, sql[:160]) for ms, sql in slowest[:3]]
    return statistics.median(times[1:])


def measure(db: str, keep_below: int) -> dict:
    """Claim/record latency and admin page times on ``db`` (its history left as loaded)."""
    import uuid

    _django(db)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from django_durable_jobs.constants import JobStatus
    from django_durable_jobs.db import Outcome, get_backend

    backend = get_backend("default")
    worker = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id > %s", [keep_below])
        cursor.execute(BACKLOG_SQL, [BACKLOG])
    claim_ms, record_ms, empty_ms = [], [], []
    for _ in range(CLAIMS):
        t0 = time.perf_counter()
        jobs = backend.claim(worker_id=worker, queues=None, limit=BATCH, lease_seconds=60)
        claim_ms.append((time.perf_counter() - t0) * 1000)
        outcomes = [Outcome(job, JobStatus.SUCCESSFUL, result_json="null") for job in jobs]
        record_ms.append(_timed(lambda o=outcomes: backend.record(o)))
        if jobs:
            last_done = jobs[-1].id
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    admin_ms = {"job page": _page_ms(client, f"/admin/django_durable_jobs/job/{last_done}/change/")}
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id > %s", [keep_below])
    for _ in range(EMPTY_CLAIMS):
        empty_ms.append(
            _timed(
                lambda: backend.claim(worker_id=worker, queues=None, limit=BATCH, lease_seconds=60)
            )
        )

    pages = {
        "changelist": "/admin/django_durable_jobs/job/",
        "changelist ?status=FAILED": "/admin/django_durable_jobs/job/?status__exact=FAILED",
        "changelist ?status=READY": "/admin/django_durable_jobs/job/?status__exact=READY",
        "changelist ?q=task_7": "/admin/django_durable_jobs/job/?q=app.jobs.task_7",
    }
    for label, url in pages.items():
        admin_ms[label] = _page_ms(client, url)
    return {
        "claim_p50_ms": _pct(claim_ms, 50),
        "claim_p99_ms": _pct(claim_ms, 99),
        "record_p50_ms": _pct(record_ms, 50),
        "record_p99_ms": _pct(record_ms, 99),
        "empty_claim_p50_ms": _pct(empty_ms, 50),
        "empty_claim_p99_ms": _pct(empty_ms, 99),
        "admin_ms": admin_ms,
        "admin_slowest_queries": SLOW_QUERIES,
    }


# --------------------------------------------------------------------------- orchestration


def _inside(command: str, pg_url: str, *args: str) -> dict:
    proc = subprocess.run(
        [str(common.venv_python("durable_jobs")), __file__, command, *args],
        env=common.system_env("durable_jobs", pg_url),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"history.py {command} {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    scale = float(os.environ.get("BENCH_SCALE", "0.02" if smoke else "1.0"))
    rows = int(os.environ.get("BENCH_HISTORY_ROWS", int(2_000_000 * scale)))
    repeats = int(os.environ.get("BENCH_REPEATS", "1" if smoke else "3"))
    n_drain = os.environ.get("BENCH_N_W3", "1000" if smoke else "10000")
    common.ensure_venv("durable_jobs")
    out = common.RESULTS / f"history-{time.strftime('%Y%m%dT%H%M%S')}"
    results: dict = {"rows": rows, "drain_jobs": int(n_drain), "setup": {}, "rounds": []}
    with common.private_server() as pg_url:
        for kind, db in DATABASES.items():
            log(f"creating {db} with {rows if kind == 'history' else 0:,} finished rows")
            results["setup"][kind] = _inside(
                "setup", pg_url, db, str(rows if kind == "history" else 0)
            )
            log(f"  {results['setup'][kind]}")
        for r in range(repeats):
            rnd = {}
            order = list(DATABASES) if r % 2 == 0 else list(reversed(DATABASES))
            for kind in order:
                db, keep = DATABASES[kind], results["setup"][kind]["max_id"]
                log(f"round {r + 1}/{repeats}: {kind}: claim latency and admin pages")
                rnd[kind] = _inside("measure", pg_url, db, str(keep))
                log(f"round {r + 1}/{repeats}: {kind}: drain")
                drain = common.run_runner(
                    "durable_jobs",
                    pg_url,
                    out,
                    BENCH_DB=db,
                    BENCH_ONLY="W3",
                    BENCH_W3_CONC="default",
                    BENCH_REPEATS="1",
                    BENCH_N_W3=n_drain,
                    BENCH_DDJ_KEEP_BELOW_ID=str(keep),
                    BENCH_SCRATCH=str(out / "scratch"),
                )["runs"]["W3_cdefault"][0]
                rnd[kind]["drain_jobs_per_s"] = drain["jobs_per_s"]
                rnd[kind]["drain_steady_jobs_per_s"] = drain["steady_jobs_per_s"]
                rnd[kind]["drain_worker_cpu_ms_per_job"] = drain["worker_cpu_ms_per_job"]
            rnd["load"] = os.getloadavg()[0]
            results["rounds"].append(rnd)
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps(results, indent=1))
    text = report(results)
    (out / "table.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


def report(results: dict) -> str:
    rounds = results["rounds"]
    med = statistics.median

    def row(label: str, get, nd: int = 2) -> str:
        e = [get(r["empty"]) for r in rounds]
        h = [get(r["history"]) for r in rounds]
        ratio = [b / a for a, b in zip(e, h, strict=True) if a]
        return (
            f"| {label} | {med(e):,.{nd}f} | {med(h):,.{nd}f} | "
            f"{med(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f}) |"
        )

    setup = results["setup"]["history"]
    lines = [
        f"History: {results['rows']:,} finished rows ({setup['table_mb']:,.0f} MB with indexes, "
        f"loaded in {setup['load_s']:.0f} s); {len(rounds)} round(s), empty and history "
        "interleaved; medians; ratio = history ÷ empty, per round.",
        "",
        "| measure | empty history | with history | ratio |",
        "|---|---|---|---|",
        row(f"claim {BATCH} of a {BACKLOG:,} backlog p50 ms", lambda x: x["claim_p50_ms"]),
        row("claim p99 ms", lambda x: x["claim_p99_ms"]),
        row(f"record {BATCH} outcomes p50 ms", lambda x: x["record_p50_ms"]),
        row("record p99 ms", lambda x: x["record_p99_ms"]),
        row("claim, nothing ready, p50 ms", lambda x: x["empty_claim_p50_ms"]),
        row("claim, nothing ready, p99 ms", lambda x: x["empty_claim_p99_ms"]),
        row(
            f"drain {results['drain_jobs']:,} no-op jobs/s (default worker)",
            lambda x: x["drain_jobs_per_s"],
            0,
        ),
        row("drain steady jobs/s", lambda x: x["drain_steady_jobs_per_s"], 0),
        row("drain worker CPU ms/job", lambda x: x["drain_worker_cpu_ms_per_job"]),
    ]
    for page in rounds[0]["empty"]["admin_ms"]:
        lines.append(row(f"admin {page} ms", lambda x, p=page: x["admin_ms"][p], 1))
    lines += ["", "Slowest queries of each admin page, with history (last round):", ""]
    for url, queries in rounds[-1]["history"].get("admin_slowest_queries", {}).items():
        lines.append(f"- `{url}`: " + "; ".join(f"{ms:.1f} ms `{sql}`" for ms, sql in queries))
    lines.append("")
    lines.append("Load average after each round: " + ", ".join(f"{r['load']:.1f}" for r in rounds))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "setup":
        print(json.dumps(setup(sys.argv[2], int(sys.argv[3]))))
    elif len(sys.argv) > 2 and sys.argv[1] == "measure":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
    else:
        sys.exit(main())
