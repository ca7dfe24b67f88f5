"""What PostgreSQL itself does on this server: the ceiling our enqueue and drain are held to.

    python bench/ceiling.py            # the two ceilings once, on a private server
    python bench/ceiling.py --smoke    # the same at BENCH_SCALE=0.02

``bench/run.py`` runs it as one more "system" in each interleaved round (in the
durable_jobs virtualenv: psycopg 3, and Django once to create the table), so a
ceiling and the figure it bounds come from the same server in the same minutes.
Both steps write our real table (``django_durable_jobs_job``, created by our
migrations in a database of its own, ``bench_ceiling``: the same columns,
indexes and constraints as a worker's), with psycopg directly, on one
connection in autocommit, each statement its own transaction:

* ``insert``: one INSERT of a READY no-op job per round trip (the columns and
  defaults ``enqueue()`` writes, ``RETURNING id``, prepared), W1's job count.
  No NOTIFY: our enqueue sends one in the same statement; the ceiling does not.
  ``insert_notify`` is the same with that NOTIFY (``pg_notify`` in a CTE, as
  ours): not a ceiling, it says how much of the gap the wake-up accounts for.
* ``batch``: a backlog of W3's job count (the same rows as common.BACKLOG_SQL),
  then, until it is empty, a claim of 50 of the same shape as the worker's (a
  CTE of ids ``FOR UPDATE SKIP LOCKED`` in priority order from the READY index,
  then ``UPDATE ... SET status = 'RUNNING'``, attempt, lease token and lease
  expiry, ``RETURNING`` the claim's columns) and a fenced batch complete
  (``UPDATE ... FROM unnest(ids, tokens)`` to SUCCESSFUL, conditional on the
  lease token and RUNNING). Timed from the first claim to the last complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import BACKLOG_SQL, JOB_TABLE, log

DB = "bench_ceiling"
BATCH = 50

INSERT_SQL = f"""
INSERT INTO {JOB_TABLE} (name, queue, priority, status, args, kwargs, errors, attempts,
    max_attempts, run_at, enqueued_at, lease_token, unique_states, waiting_for, meta)
VALUES (%s, %s, 0, 'READY', %s::jsonb, '{{}}'::jsonb, '[]'::jsonb, 0, 5, now(), now(),
        0, 0, 0, '{{}}'::jsonb)
RETURNING id
"""
# The same with the wake-up our enqueue sends (django_durable_jobs.constants.NOTIFY_CHANNEL).
INSERT_NOTIFY_SQL = f"""
WITH ins AS ({INSERT_SQL.strip().removesuffix("RETURNING id")}RETURNING id, queue)
SELECT id, pg_notify('durable_jobs', queue) FROM ins
"""
CLAIM_SQL = f"""
WITH c AS (
    SELECT r.id FROM {JOB_TABLE} AS r
    WHERE r.status = 'READY' AND r.waiting_for = 0 AND r.run_at <= now()
    ORDER BY r.priority DESC, r.run_at, r.id
    LIMIT {BATCH}
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE {JOB_TABLE} AS j SET
    status = 'RUNNING', attempts = j.attempts + 1, started_at = NULL, finished_at = NULL,
    worker_id = %s, lease_token = j.lease_token + 1,
    lease_expires_at = now() + 300 * interval '1 second'
FROM c WHERE j.id = c.id
RETURNING j.id, j.name, j.queue, j.priority, j.args, j.kwargs, j.attempts, j.max_attempts,
    j.timeout, j.lease_token, j.meta, j.run_id, j.unique_states, j.expires_at
"""
COMPLETE_SQL = f"""
UPDATE {JOB_TABLE} AS j SET
    status = 'SUCCESSFUL', result = 'null'::jsonb, started_at = COALESCE(j.started_at, now()),
    finished_at = now(), lease_expires_at = NULL
FROM unnest(%b::bigint[], %b::bigint[]) AS v(id, token)
WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'RUNNING'
"""


def job_count(default: int, workload: str) -> int:
    """The harness's job count for ``workload`` (workloads.py: BENCH_N_<wl>, else scaled)."""
    if os.environ.get(f"BENCH_N_{workload}"):
        return int(os.environ[f"BENCH_N_{workload}"])
    return max(1, round(default * float(os.environ.get("BENCH_SCALE", "1.0"))))


def wanted(workload: str) -> bool:
    only = [w for w in os.environ.get("BENCH_ONLY", "").split(",") if w]
    return not only or workload in only


# --------------------------------------------------------------------------- inside the venv


def create_table(pg_url: str) -> str:
    """``bench_ceiling`` with our schema, made by our migrations (once per server)."""
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB}"')
    dsn = f"{pg_url}/{DB}"
    os.environ["BENCH_DSN"] = dsn
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench_ddj_settings"
    sys.path.insert(0, str(common.BENCH / "project"))
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", verbosity=0)
    connections.close_all()
    return dsn


def measure_insert(conn, n: int, sql: str = INSERT_SQL) -> dict:
    conn.execute(f"TRUNCATE {JOB_TABLE}")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    for i in range(n):
        conn.execute(sql, ["noop", "default", f"[{i}]"], prepare=True).fetchone()
    elapsed = time.perf_counter() - started
    written = conn.execute(f"SELECT count(*) FROM {JOB_TABLE}").fetchone()[0]
    assert written == n, f"inserted {written} of {n}"
    return {"n": n, "wall_s": elapsed, "jobs_per_s": n / elapsed}


def measure_batch(conn, n: int) -> dict:
    conn.execute(f"TRUNCATE {JOB_TABLE}")
    conn.execute(BACKLOG_SQL, [n])
    conn.execute("CHECKPOINT")  # the same starting point as the harness's W3
    done = claims = 0
    worker_id = uuid.uuid4()
    started = time.perf_counter()
    while True:
        rows = conn.execute(CLAIM_SQL, [worker_id]).fetchall()
        if not rows:
            break
        claims += 1
        cur = conn.execute(COMPLETE_SQL, [[r[0] for r in rows], [r[9] for r in rows]])
        done += cur.rowcount
        if done >= n:
            break
    elapsed = time.perf_counter() - started
    finished = conn.execute(
        f"SELECT count(*) FROM {JOB_TABLE} WHERE status = 'SUCCESSFUL'"
    ).fetchone()[0]
    assert done == finished == n, f"completed {done} ({finished} SUCCESSFUL) of {n}"
    return {
        "n": n,
        "batch": BATCH,
        "claims": claims,
        "wall_s": elapsed,
        "jobs_per_s": n / elapsed,
    }


def measure(pg_url: str) -> dict:
    """Both ceilings on ``pg_url``, as a result shaped like runner.py's (``runs``, ``meta``)."""
    from importlib.metadata import version

    import psycopg

    dsn = create_table(pg_url)
    runs: dict[str, list[dict]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        server = conn.execute("SELECT version()").fetchone()[0]
        if wanted("W1"):
            runs["insert"] = [measure_insert(conn, job_count(5000, "W1"))]
            runs["insert_notify"] = [measure_insert(conn, job_count(5000, "W1"), INSERT_NOTIFY_SQL)]
        if wanted("W3"):
            runs["batch"] = [measure_batch(conn, job_count(10000, "W3"))]
        conn.execute(f"TRUNCATE {JOB_TABLE}")
    return {
        "runs": runs,
        "meta": {
            "cpus": os.cpu_count(),
            "server": server,
            "versions": {"psycopg": version("psycopg"), "table": "our migrations"},
            "python": sys.version.split()[0],
        },
    }


# --------------------------------------------------------------------------- from run.py


def run(pg_url: str, results: Path, label: str) -> dict:
    """One measurement in the durable_jobs virtualenv; its JSON is kept in ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    python = common.venv_python("durable_jobs")
    env = common.system_env("durable_jobs", pg_url)
    proc = subprocess.run(
        [str(python), __file__, "--measure"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    with open(results / "ceiling.log", "a") as log_file:
        log_file.write(proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"ceiling: failed (exit {proc.returncode}); see {results}/ceiling.log")
    result = json.loads(proc.stdout)
    (results / f"ceiling-{label}.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> int:
    if "--measure" in sys.argv[1:]:
        print(json.dumps(measure(os.environ["BENCH_PG_URL"])))
        return 0
    if "--smoke" in sys.argv[1:]:
        os.environ.setdefault("BENCH_SCALE", "0.02")
    common.ensure_venv("durable_jobs")
    out = common.RESULTS / time.strftime("%Y%m%dT%H%M%S")
    with common.private_server() as pg_url:
        result = run(pg_url, out, "1")
    steps = (
        ("insert", "INSERT per job"),
        ("insert_notify", "INSERT + NOTIFY per job"),
        ("batch", f"claim {BATCH} + complete"),
    )
    for step, label in steps:
        for r in result["runs"].get(step, []):
            print(f"{label}: {r['jobs_per_s']:,.0f} jobs/s ({r['n']:,} jobs, {r['wall_s']:.2f} s)")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
