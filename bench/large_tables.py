"""Large tables: 20 million finished rows and 1 million READY vs an empty table; retention.

    python bench/large_tables.py            # 20,000,000 finished + 1,000,000 READY
    python bench/large_tables.py --smoke    # 200,000 finished + 20,000 READY, one round

One private PostgreSQL server (fsync on, autovacuum at its defaults), two databases:

* ``bench_ddj_large``: BENCH_LARGE_FINISHED finished jobs (history.py's rows: 90 %
  SUCCESSFUL, 8 % FAILED with an error entry, 2 % CANCELLED), finished in id order
  over the last 30 days, then BENCH_LARGE_READY READY no-op jobs; VACUUM ANALYZE.
* ``bench_ddj_empty``: nothing but the READY jobs each step consumes, inserted
  before the step and deleted after it.

Interleaved rounds (BENCH_REPEATS), large and empty in alternating order, each:

* claim latency: claims of 8 (the default worker's batch) from the READY backlog,
  each followed by a fenced record of their outcomes (timed separately); and claims
  on a queue with nothing READY (what an idle worker's poll costs: on ``large``
  the 1M backlog sits on other queues);
* single-enqueue latency: ``noop.enqueue(i)``, one transaction each;
* every admin page through Django's test client (as admin_large.py): the jobs list
  unfiltered, by each status, searched, its last page, a job's page, the dashboard,
  the schedules page and two bulk actions' confirmation pages (select all matching);
* a drain of BENCH_N_W3 jobs by ``runworker`` at default settings, from the READY
  backlog (rate = jobs ÷ (the Nth finish - the first start), from the rows).

Then retention, on ``large``: a feeder enqueues BENCH_LARGE_FEED_RATE jobs/s on the
queue ``stream`` (one transaction each), a ``runworker --queues stream`` drains them,
and a probe claims 8 from the READY backlog (and records them) every 100 ms. After a
baseline, BENCH_LARGE_EXPIRE finished rows are made past retention (RETENTION set to
the age of the Nth oldest) and our pruner deletes them: ``operations.prune_expired``,
the statement the worker's maintenance runs (``maintenance.pruner``), one bounded batch
(``operations.batches.BATCH_SIZE``) at a time, back to back; the stream's worker runs
its own maintenance with the same RETENTION. Sampled every 2 s: n_live_tup, n_dead_tup,
pg_relation_size, pg_total_relation_size, last_autovacuum, autovacuum's progress. After
the deletes: how long until autovacuum has cleaned the table (BENCH_LARGE_AV_WAIT at
most), then a refill of BENCH_LARGE_REFILL rows: does the table reuse the freed space?

Knobs: BENCH_LARGE_FINISHED, BENCH_LARGE_READY, BENCH_LARGE_EXPIRE (default half the
finished rows; 0 skips retention), BENCH_N_W3 (drain size), BENCH_REPEATS,
BENCH_LARGE_FEED_RATE (200), BENCH_LARGE_BASELINE_S, BENCH_LARGE_AV_WAIT (s),
BENCH_LARGE_REFILL, BENCH_PG_PORT.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import history
from common import BACKLOG_SQL, log
from history import TABLE, _django, _page_ms, _pct, _timed

DATABASES = {"empty": "bench_ddj_empty", "large": "bench_ddj_large"}
BATCH = 8
#: The worker's settings while measuring (nothing pruned behind the measurement's back).
KEEP_ALL = {"RETENTION": {"SUCCESSFUL": None, "FAILED": None, "CANCELLED": None}}
ADMIN = "/admin/django_durable_jobs/job/"
FINISHED_STATUSES = ("SUCCESSFUL", "FAILED", "CANCELLED")


def _knob(name: str, full: float, smoke: float) -> int:
    return int(os.environ.get(name, smoke if "--smoke" in sys.argv[1:] else full))


def _scalar(sql: str, params: list | None = None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def _execute(sql: str, params: list | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def _sizes() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_relation_size('{TABLE}'), pg_indexes_size('{TABLE}'), "
            f"pg_total_relation_size('{TABLE}')"
        )
        heap, indexes, total = cursor.fetchone()
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            f"WHERE indrelid = '{TABLE}'::regclass ORDER BY 2 DESC"
        )
        each = {name: size / 2**20 for name, size in cursor.fetchall()}
    return {"heap_mb": heap / 2**20, "indexes_mb": indexes / 2**20, "total_mb": total / 2**20,
            "index_mb": each}  # fmt: skip


# --------------------------------------------------------------------------- inside the venv


def setup(db: str, finished: int, ready: int) -> dict:
    """Create and migrate ``db``; load ``finished`` finished jobs then ``ready`` READY ones."""
    import psycopg

    with psycopg.connect(f"{os.environ['BENCH_PG_URL']}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        conn.execute(f'CREATE DATABASE "{db}"')
    _django(db)
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    started = time.perf_counter()
    sql, chunk = history.ordered_load_sql(finished), 500_000
    for first in range(1, finished + 1, chunk):
        _execute(sql, [first, min(first + chunk - 1, finished)])
        log(f"  {db}: {min(first + chunk - 1, finished):,} finished rows")
    if ready:
        _execute(BACKLOG_SQL, [ready])
    loaded = time.perf_counter()
    _execute(f"VACUUM ANALYZE {TABLE}")
    vacuumed = time.perf_counter()
    return {
        "finished": finished,
        "ready": ready,
        "load_s": loaded - started,
        "vacuum_s": vacuumed - loaded,
        "settle_s": _settle(db),
        **_sizes(),
    }


def _settle(db: str, limit: float = 600.0) -> float:
    """CHECKPOINT, then wait for autovacuum to leave ``db``: the load's writes not measured."""
    started = time.perf_counter()
    _execute("CHECKPOINT")
    busy = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query LIKE 'autovacuum:%%'"
    while _scalar(busy, [db]) and time.perf_counter() - started < limit:
        time.sleep(2)
    _execute("CHECKPOINT")
    return time.perf_counter() - started


def _admin_pages(client, job_id: int) -> dict[str, float]:
    pages = {"changelist": ADMIN}
    for status in ("READY", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED"):
        pages[f"changelist ?status={status}"] = f"{ADMIN}?status={status}"
    pages["changelist ?q=app.jobs.task_7"] = f"{ADMIN}?q=app.jobs.task_7"
    pages["changelist ?name=app.jobs.task_7"] = f"{ADMIN}?name=app.jobs.task_7"
    last_page = min(
        200,
        max(1, -(-_scalar(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} LIMIT 10001) s") // 50)),
    )
    pages["changelist last page (at most 200)"] = f"{ADMIN}?p={last_page}"
    pages["job page"] = f"{ADMIN}{job_id}/change/"
    pages["dashboard"] = f"{ADMIN}dashboard/"
    pages["schedules"] = f"{ADMIN}schedules/"
    times = {label: _page_ms(client, url) for label, url in pages.items()}
    for action, status in (("retry_jobs", "FAILED"), ("cancel_jobs", "READY")):
        times[f"confirm {action} all ?status={status}"] = _confirm_ms(
            client, f"{ADMIN}?status={status}", action, job_id
        )
    return times


def _confirm_ms(client, url: str, action: str, job_id: int) -> float:
    """Median of 5 POSTs of an action on all matching jobs, up to its confirmation page."""
    data = {"action": action, "index": "0", "select_across": "1", "_selected_action": [job_id]}
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        response = client.post(url, data)
        times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200 or b"ddj_confirm" not in response.content:
            raise RuntimeError(f"{action} on {url}: HTTP {response.status_code}, no confirmation")
    return statistics.median(times[1:])


def measure(db: str, claims: int, idle_polls: int, enqueues: int) -> dict:
    """Claim, record, idle poll, enqueue latency and admin pages on ``db``; rows put back."""
    import uuid

    _django(db)
    from ddj_bench.jobs import noop
    from django.contrib.auth.models import User
    from django.test import Client

    from django_durable_jobs.constants import JobStatus
    from django_durable_jobs.db import Outcome, get_backend

    backend = get_backend("default")
    worker = uuid.uuid4()
    mark = _scalar(f"SELECT coalesce(max(id), 0) FROM {TABLE}")
    if db == DATABASES["empty"]:
        _execute(BACKLOG_SQL, [claims * BATCH + 1000])
    claim_ms, record_ms, idle_ms, enqueue_ms, last = [], [], [], [], None
    for _ in range(claims):
        t0 = time.perf_counter()
        jobs = backend.claim(worker_id=worker, queues=None, limit=BATCH, lease_seconds=60)
        claim_ms.append((time.perf_counter() - t0) * 1000)
        outcomes = [Outcome(job, JobStatus.SUCCESSFUL, result_json="null") for job in jobs]
        record_ms.append(_timed(lambda o=outcomes: backend.record(o)))
        last = jobs[-1].id if jobs else last
    for _ in range(idle_polls):
        idle_ms.append(
            _timed(
                lambda: backend.claim(
                    worker_id=worker, queues=["idle"], limit=BATCH, lease_seconds=60
                )
            )
        )
    for i in range(enqueues):
        enqueue_ms.append(_timed(lambda i=i: noop.enqueue(i)))
    failed = _scalar(f"SELECT max(id) FROM {TABLE} WHERE status = 'FAILED'")
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    admin_ms = _admin_pages(client, failed or last)
    _execute(f"DELETE FROM {TABLE} WHERE id > %s", [mark])
    return {
        "claim_p50_ms": _pct(claim_ms, 50),
        "claim_p99_ms": _pct(claim_ms, 99),
        "record_p50_ms": _pct(record_ms, 50),
        "record_p99_ms": _pct(record_ms, 99),
        "idle_p50_ms": _pct(idle_ms, 50),
        "idle_p99_ms": _pct(idle_ms, 99),
        "enqueue_p50_ms": _pct(enqueue_ms, 50),
        "enqueue_p99_ms": _pct(enqueue_ms, 99),
        "admin_ms": admin_ms,
        "admin_slowest_queries": history.SLOW_QUERIES,
    }


def _worker(db: str, log_path: Path, settings: dict, *args: str) -> subprocess.Popen:
    env = common.ddj_env(os.environ["BENCH_PG_URL"], db, BENCH_DDJ_SETTINGS=json.dumps(settings))
    with open(log_path, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drain(db: str, n: int) -> dict:
    """``runworker`` (default settings) runs ``n`` jobs of the READY backlog: jobs/s, CPU."""
    import psutil

    _django(db)
    mark = _scalar(f"SELECT coalesce(max(id), 0) FROM {TABLE}")
    if db == DATABASES["empty"]:
        _execute(BACKLOG_SQL, [2 * n])  # the drain never reaches the end of the backlog
    t0 = _scalar("SELECT clock_timestamp()")
    out = Path(os.environ["BENCH_LARGE_OUT"])
    proc = _worker(db, out / f"drain-{db}.log", KEEP_ALL)
    done_sql = f"SELECT count(*) FROM {TABLE} WHERE status = 'SUCCESSFUL' AND finished_at >= %s"
    try:
        while _scalar(done_sql, [t0]) < n:
            if proc.poll() is not None:
                raise RuntimeError(f"runworker exited {proc.returncode}; see {out}")
            time.sleep(0.05)
        cpu = psutil.Process(proc.pid).cpu_times()
    finally:
        _stop(proc)
    first, nth = _first_and_nth(t0, n)
    if db == DATABASES["empty"]:
        _execute(f"DELETE FROM {TABLE} WHERE id > %s", [mark])
    return {
        "drain_jobs_per_s": n / (nth - first).total_seconds(),
        "drain_cpu_ms_per_job": (cpu.user + cpu.system) * 1000 / n,
    }


def _first_and_nth(t0, n: int):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(started_at), max(finished_at) FROM (SELECT started_at, finished_at "
            f"FROM {TABLE} WHERE status = 'SUCCESSFUL' AND finished_at >= %s "
            "ORDER BY finished_at LIMIT %s) AS s",
            [t0, n],
        )
        return cursor.fetchone()


def feed(db: str, rate: float) -> None:
    """Enqueue ``rate`` no-op jobs a second on the queue ``stream``, one each, until killed."""
    _django(db)
    from ddj_bench.jobs import noop

    stream = noop.using(queue="stream")
    start, i = time.monotonic(), 0
    while True:
        i += 1
        stream.enqueue(i)
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def probe(db: str, path: str) -> None:
    """Every 100 ms, claim 8 from the READY backlog and record them; lines of (time, ms, ms)."""
    import uuid

    _django(db)
    from django_durable_jobs.constants import JobStatus
    from django_durable_jobs.db import Outcome, get_backend

    backend, worker = get_backend("default"), uuid.uuid4()
    with open(path, "a", buffering=1) as out:
        while True:
            t0 = time.perf_counter()
            jobs = backend.claim(worker_id=worker, queues=["default"], limit=BATCH,
                                 lease_seconds=60)  # fmt: skip
            claimed = (time.perf_counter() - t0) * 1000
            outcomes = [Outcome(job, JobStatus.SUCCESSFUL, result_json="null") for job in jobs]
            recorded = _timed(lambda o=outcomes: backend.record(o))
            out.write(f"{time.time():.3f} {claimed:.3f} {recorded:.3f}\n")
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - t0)))


class Monitor(threading.Thread):
    """Samples the table's statistics and autovacuum's progress every 2 s, by phase."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.samples: list[dict] = []
        self.phase = "before"
        self.halt = threading.Event()

    def sample(self) -> dict:
        row = self.conn.execute(
            "SELECT n_live_tup, n_dead_tup, last_autovacuum, autovacuum_count, "
            f"pg_relation_size('{TABLE}'), pg_total_relation_size('{TABLE}'), "
            "(SELECT phase || ' ' || round(100.0 * heap_blks_scanned / "
            "greatest(heap_blks_total, 1)) || '% heap, index passes ' || index_vacuum_count "
            f"FROM pg_stat_progress_vacuum WHERE relid = '{TABLE}'::regclass) "
            f"FROM pg_stat_user_tables WHERE relname = '{TABLE}'"
        ).fetchone()
        keys = ("live", "dead", "last_autovacuum", "autovacuums", "heap", "total", "vacuum")
        sample = dict(zip(keys, row, strict=True))
        sample.update(t=time.time(), phase=self.phase)
        if sample["last_autovacuum"]:
            sample["last_autovacuum"] = sample["last_autovacuum"].timestamp()
        return sample

    def run(self) -> None:
        while not self.halt.wait(2.0):
            self.samples.append(self.sample())


def _prune_batches(alias: str, periods: dict) -> dict:
    """Our pruner's batches back to back until nothing is past retention; each one timed."""
    from django_durable_jobs.operations.retention import prune_expired

    times, deleted, started = [], 0, time.perf_counter()
    pending = list(periods)
    while pending:
        for status in list(pending):
            t0 = time.perf_counter()
            result = prune_expired(alias, max_batches=1, periods={status: periods[status]})
            times.append((time.perf_counter() - t0) * 1000)
            deleted += result.total
            if not result.remaining:
                pending.remove(status)
    return {
        "deleted": deleted,
        "delete_s": time.perf_counter() - started,
        "batches": len(times),
        "batch_p50_ms": _pct(times, 50),
        "batch_p99_ms": _pct(times, 99),
        "batch_max_ms": max(times),
    }


def retention(db: str, expire: int, rate: float, baseline_s: float, av_wait: float,
              refill: int) -> dict:  # fmt: skip
    """The retention scenario on ``db`` (module docstring): figures per phase."""
    from datetime import timedelta

    _django(db)
    from django.db import connection

    out = Path(os.environ["BENCH_LARGE_OUT"])
    cutoff = _scalar(f"SELECT finished_at FROM {TABLE} WHERE id = %s", [expire])
    age = (_scalar("SELECT now()") - cutoff).total_seconds() - 1
    periods = {status: timedelta(seconds=age) for status in FINISHED_STATUSES}
    past = _scalar(
        f"SELECT count(*) FROM {TABLE} WHERE status = ANY(%s) AND finished_at < now() - %s",
        [list(FINISHED_STATUSES), timedelta(seconds=age)],
    )
    settings = {"RETENTION": dict.fromkeys(FINISHED_STATUSES, age)}
    conf = {
        name: _scalar(f"SHOW {name}")
        for name in ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_cost_limit",
                     "autovacuum_vacuum_cost_delay", "autovacuum_naptime", "max_wal_size")
    }  # fmt: skip
    monitor = Monitor(f"{os.environ['BENCH_PG_URL']}/{db}")
    monitor.start()
    me = [sys.executable, __file__]
    env = dict(os.environ, BENCH_DDJ_SETTINGS=json.dumps(KEEP_ALL))
    probe_path = out / "probe.txt"
    procs = [
        _worker(db, out / "stream-worker.log", settings, "--queues", "stream"),
        subprocess.Popen([*me, "feed", db, str(rate)], env=env),
        subprocess.Popen([*me, "probe", db, str(probe_path)], env=env),
    ]
    marks = {"start": time.time()}
    try:
        time.sleep(baseline_s)
        marks["deletes"] = time.time()
        monitor.phase = "deletes"
        before = monitor.sample()
        pruned = _prune_batches(connection.alias, periods)
        marks["after"] = time.time()
        # The stream's worker prunes too (its maintenance, same RETENTION): what is gone.
        pruned["gone"] = past - _scalar(f"SELECT count(*) FROM {TABLE} WHERE id <= %s", [expire])
        monitor.phase = "after"
        end_of_deletes = monitor.sample()
        cleaned = _wait_for_autovacuum(monitor, marks["after"], pruned["deleted"], av_wait)
        marks["end"] = time.time()
    finally:
        for proc in procs:
            _stop(proc)
        monitor.halt.set()
    for name, proc in zip(("stream worker", "feed", "probe"), procs, strict=True):
        if proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{name} exited {proc.returncode} before the end; see {out}")
    space = _refill(refill)
    return {
        "expire_asked": expire,
        "past_retention": past,
        "retention_s": age,
        "autovacuum_settings": conf,
        **pruned,
        "before": before,
        "end_of_deletes": end_of_deletes,
        "cleaned": cleaned,
        "marks": marks,
        "phases": _phase_latencies(marks, probe_path),
        "samples": monitor.samples,
        "refill": space,
    }


def _wait_for_autovacuum(monitor: Monitor, since: float, deleted: int, limit: float) -> dict:
    """Until autovacuum has run after ``since`` and n_dead_tup is below 10 % of ``deleted``."""
    deadline = time.time() + limit
    while time.time() < deadline:
        s = monitor.sample()
        if (s["last_autovacuum"] or 0) > since and s["dead"] < deleted / 10 and not s["vacuum"]:
            return {"lag_s": s["last_autovacuum"] - since, **s}
        time.sleep(2.0)
    return {"lag_s": None, **monitor.sample()}


def _phase_latencies(marks: dict, probe_path: Path) -> dict:
    """Probe claim latency and the stream's pickup latency (enqueued -> started) per phase."""
    from django.db import connection

    bounds = {
        "before": (marks["start"] + 5, marks["deletes"]),
        "deletes": (marks["deletes"], marks["after"]),
        "after": (marks["after"], marks["end"]),
    }
    lines = [tuple(map(float, line.split())) for line in probe_path.read_text().splitlines()]
    phases = {}
    with connection.cursor() as cursor:
        for name, (lo, hi) in bounds.items():
            claims = [ms for t, ms, _ in lines if lo <= t < hi]
            records = [ms for t, _, ms in lines if lo <= t < hi]
            cursor.execute(
                "SELECT extract(epoch FROM started_at - enqueued_at) * 1000 "
                f"FROM {TABLE} WHERE queue = 'stream' AND status = 'SUCCESSFUL' "
                "AND enqueued_at >= to_timestamp(%s) AND enqueued_at < to_timestamp(%s)",
                [lo, hi],
            )
            pickup = [float(ms) for (ms,) in cursor.fetchall()]
            phases[name] = {
                "seconds": hi - lo,
                "probe_claims": len(claims),
                "claim_p50_ms": _pct(claims, 50) if claims else None,
                "claim_p99_ms": _pct(claims, 99) if claims else None,
                "claim_max_ms": max(claims, default=None),
                "record_p99_ms": _pct(records, 99) if records else None,
                "stream_jobs": len(pickup),
                "stream_jobs_per_s": len(pickup) / (hi - lo),
                "pickup_p50_ms": _pct(pickup, 50) if pickup else None,
                "pickup_p99_ms": _pct(pickup, 99) if pickup else None,
            }
    return phases


def _refill(rows: int) -> dict:
    """Insert ``rows`` finished rows: how much of them went into the space the deletes freed."""
    before = _sizes()
    top = _scalar(f"SELECT max(id) FROM {TABLE}")
    for first in range(top + 1, top + rows + 1, 500_000):
        _execute(history.LOAD_SQL, [first, min(first + 499_999, top + rows)])
    after = _sizes()
    return {"rows": rows, "before": before, "after": after}


# --------------------------------------------------------------------------- orchestration


def _inside(command: str, pg_url: str, *args, out: Path) -> dict:
    proc = subprocess.run(
        [str(common.venv_python("durable_jobs")), __file__, command, *map(str, args)],
        env=common.system_env(
            "durable_jobs",
            pg_url,
            BENCH_LARGE_OUT=str(out),
            BENCH_DDJ_SETTINGS=json.dumps(KEEP_ALL),
        ),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"large_tables.py {command} {args} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _loads() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    finished = _knob("BENCH_LARGE_FINISHED", 20_000_000, 200_000)
    ready = _knob("BENCH_LARGE_READY", 1_000_000, 20_000)
    expire = int(os.environ.get("BENCH_LARGE_EXPIRE", finished // 2))
    n_drain = _knob("BENCH_N_W3", 10_000, 2_000)
    repeats = _knob("BENCH_REPEATS", 3, 1)
    claims, idle, enqueues = (200, 100, 200) if smoke else (1000, 200, 1000)
    retention_args = (
        expire,
        _knob("BENCH_LARGE_FEED_RATE", 200, 200),
        _knob("BENCH_LARGE_BASELINE_S", 60, 15),
        _knob("BENCH_LARGE_AV_WAIT", 1800, 240),
        _knob("BENCH_LARGE_REFILL", finished // 10, finished // 10),
    )
    common.ensure_venv("durable_jobs")
    out = common.RESULTS / f"large-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"drain_jobs": n_drain, "claims": claims, "setup": {}, "rounds": []}
    results["load_start"] = _loads()
    with common.private_server() as pg_url:
        for kind, db in DATABASES.items():
            rows = (finished, ready) if kind == "large" else (0, 0)
            log(f"creating {db}: {rows[0]:,} finished + {rows[1]:,} READY (load {_loads()})")
            results["setup"][kind] = _inside("setup", pg_url, db, *rows, out=out)
            log(f"  {json.dumps(results['setup'][kind])}")
        for r in range(repeats):
            rnd = {"load_start": _loads()}
            for kind in list(DATABASES) if r % 2 == 0 else list(reversed(DATABASES)):
                db = DATABASES[kind]
                log(f"round {r + 1}/{repeats}: {kind}: latencies and admin pages ({_loads()})")
                rnd[kind] = _inside("measure", pg_url, db, claims, idle, enqueues, out=out)
                log(f"round {r + 1}/{repeats}: {kind}: drain of {n_drain:,}")
                rnd[kind].update(_inside("drain", pg_url, db, n_drain, out=out))
            rnd["load_end"] = _loads()
            results["rounds"].append(rnd)
        (out / "large_tables.json").write_text(json.dumps(results, indent=1, default=str))
        log("rounds done:\n" + report(results))
        if expire:  # BENCH_LARGE_EXPIRE=0: the rounds alone
            log(f"retention on {DATABASES['large']} ({_loads()})")
            results["retention"] = _inside(
                "retention", pg_url, DATABASES["large"], *retention_args, out=out
            )
    results["load_end"] = _loads()
    (out / "large_tables.json").write_text(json.dumps(results, indent=1, default=str))
    text = report(results)
    (out / "table.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


# --------------------------------------------------------------------------- the tables


def report(results: dict) -> str:
    rounds, setup = results["rounds"], results["setup"]["large"]
    lines = _rounds_report(results) if rounds else [_setup_line(setup)]
    if "retention" in results:
        lines += ["", *retention_report(results["retention"])]
    return "\n".join(lines)


def _setup_line(setup: dict) -> str:
    return (
        f"Large: {setup['finished']:,} finished + {setup['ready']:,} READY rows, loaded in "
        f"{setup['load_s']:.0f} s, VACUUM ANALYZE {setup['vacuum_s']:.0f} s, CHECKPOINT and "
        f"autovacuum idle {setup.get('settle_s', 0):.0f} s: heap "
        f"{setup['heap_mb']:,.0f} MB, indexes {setup['indexes_mb']:,.0f} MB "
        f"(total {setup['total_mb']:,.0f} MB). Empty: only the READY jobs each step consumes."
    )


def _rounds_report(results: dict) -> list[str]:
    rounds, setup = results["rounds"], results["setup"]["large"]
    lines = [
        _setup_line(setup),
        "Indexes (MB): " + ", ".join(f"{name} {mb:,.0f}" for name, mb in setup["index_mb"].items()),
        f"{len(rounds)} round(s), large and empty interleaved; medians over rounds; ratio = "
        "large ÷ empty per round (median, range).",
        "",
        "| measure | empty | large | ratio | target | met |",
        "|---|---|---|---|---|---|",
        *_latency_rows(results),
        *_admin_rows(rounds),
        "",
        "Load averages (1/5/15 min) at each round's start and end: "
        + "; ".join(f"{r['load_start']} → {r['load_end']}" for r in rounds)
        + f"; whole run {results['load_start']} → {results.get('load_end', _loads())}.",
        "",
        "Slowest queries of each admin page on large (last round):",
        "",
    ]
    for url, queries in rounds[-1]["large"]["admin_slowest_queries"].items():
        lines.append(f"- `{url}`: " + "; ".join(f"{ms:.1f} ms `{sql}`" for ms, sql in queries))
    return lines


def _row(rounds, label, get, target=None, nd=2) -> str:
    med = statistics.median
    e, g = [get(r["empty"]) for r in rounds], [get(r["large"]) for r in rounds]
    ratios = [b / a for a, b in zip(e, g, strict=True) if a]
    ratio = med(ratios)
    met = "—"
    if target == "≤ 1.10":
        met = "met" if ratio <= 1.10 else "unmet"
    elif target == "≥ 0.90":
        met = "met" if ratio >= 0.90 else "unmet"
    elif target == "< 500 ms":
        met = "met" if med(g) < 500 else "unmet"
    return (
        f"| {label} | {med(e):,.{nd}f} | {med(g):,.{nd}f} | {ratio:.2f} "
        f"({min(ratios):.2f}–{max(ratios):.2f}) | {target or '—'} | {met} |"
    )


def _latency_rows(results: dict) -> list[str]:
    r, le = results["rounds"], "≤ 1.10"
    return [
        _row(r, f"claim {BATCH} from the READY backlog p50 ms", lambda x: x["claim_p50_ms"], le),
        _row(r, "claim p99 ms", lambda x: x["claim_p99_ms"], le),
        _row(r, f"record {BATCH} outcomes (fenced) p50 ms", lambda x: x["record_p50_ms"]),
        _row(r, "record p99 ms", lambda x: x["record_p99_ms"]),
        _row(r, "claim on a queue with nothing READY p50 ms", lambda x: x["idle_p50_ms"], le),
        _row(r, "claim, nothing READY, p99 ms", lambda x: x["idle_p99_ms"], le),
        _row(r, "enqueue() one job p50 ms", lambda x: x["enqueue_p50_ms"], le),
        _row(r, "enqueue() p99 ms", lambda x: x["enqueue_p99_ms"], le),
        _row(
            r,
            f"drain {results['drain_jobs']:,} no-op jobs/s (runworker, defaults)",
            lambda x: x["drain_jobs_per_s"],
            "≥ 0.90",
            0,
        ),
        _row(r, "drain: worker CPU ms/job (with start-up)", lambda x: x["drain_cpu_ms_per_job"]),
    ]


def _admin_rows(rounds: list[dict]) -> list[str]:
    return [
        _row(rounds, f"admin {page} ms", lambda x, p=page: x["admin_ms"][p], "< 500 ms", 1)
        for page in rounds[0]["large"]["admin_ms"]
    ]


def retention_report(ret: dict) -> list[str]:
    mb = 2**20
    before, end, cleaned = ret["before"], ret["end_of_deletes"], ret["cleaned"]
    refill = ret["refill"]
    grew = refill["after"]["heap_mb"] - refill["before"]["heap_mb"]
    lag = cleaned["lag_s"]
    lines = [
        f"Retention: {ret['past_retention']:,} finished rows past a retention of "
        f"{ret['retention_s'] / 86400:.1f} days, deleted by our pruner's batches back to back "
        f"while a worker drained a stream of jobs: {ret['gone']:,} rows gone in "
        f"{ret['delete_s']:.0f} s = {ret['gone'] / ret['delete_s']:,.0f} rows/s "
        f"({ret['deleted']:,} by the pruner's batches, the rest by the stream worker's own "
        f"maintenance); {ret['batches']:,} batches, p50 {ret['batch_p50_ms']:.0f} ms, p99 "
        f"{ret['batch_p99_ms']:.0f} ms, longest {ret['batch_max_ms']:.0f} ms.",
        "Autovacuum settings: "
        + ", ".join(f"{k} {v}" for k, v in ret["autovacuum_settings"].items()),
        "",
        "| phase | seconds | probe claims | claim p50 / p99 / max ms | record p99 ms "
        "| stream jobs/s | pickup p50 / p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in ret["phases"].items():
        lines.append(
            f"| {name} | {p['seconds']:.0f} | {p['probe_claims']:,} | "
            f"{_f(p['claim_p50_ms'])} / {_f(p['claim_p99_ms'])} / {_f(p['claim_max_ms'])} | "
            f"{_f(p['record_p99_ms'])} | {p['stream_jobs_per_s']:.0f} | "
            f"{_f(p['pickup_p50_ms'])} / {_f(p['pickup_p99_ms'])} |"
        )
    lines += [
        "",
        "| when | n_live_tup | n_dead_tup | heap MB | total MB | autovacuums |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in (("before the deletes", before), ("deletes ended", end),
                     ("cleaned (or gave up)", cleaned)):  # fmt: skip
        lines.append(
            f"| {label} | {s['live']:,} | {s['dead']:,} | {s['heap'] / mb:,.0f} | "
            f"{s['total'] / mb:,.0f} | {s['autovacuums']} |"
        )
    peak = max(ret["samples"], key=lambda s: s["dead"])
    lines += [
        "",
        f"Peak n_dead_tup {peak['dead']:,} ({peak['phase']}, "
        f"{peak['t'] - ret['marks']['deletes']:.0f} s after the deletes began). Autovacuum "
        + (
            f"finished cleaning {lag:.0f} s after the deletes ended."
            if lag is not None
            else f"had not cleaned up {ret['marks']['end'] - ret['marks']['after']:.0f} s after "
            "the deletes ended (gave up waiting)."
        ),
        "Autovacuum runs seen: " + _vacuum_runs(ret),
        f"Refill of {refill['rows']:,} finished rows: heap {refill['before']['heap_mb']:,.0f} → "
        f"{refill['after']['heap_mb']:,.0f} MB (+{grew:,.0f} MB), total "
        f"{refill['before']['total_mb']:,.0f} → {refill['after']['total_mb']:,.0f} MB.",
    ]
    return lines


def _vacuum_runs(ret: dict) -> str:
    """Each autovacuum seen in the samples: from its first to its last sample, its phases."""
    runs, current = [], None
    t0 = ret["marks"]["deletes"]
    for s in ret["samples"]:
        if s["vacuum"] and current is None:
            current = {"from": s["t"] - t0, "phases": [s["vacuum"].split()[0]]}
        elif s["vacuum"]:
            phase = s["vacuum"].split()[0]
            if phase != current["phases"][-1]:
                current["phases"].append(phase)
            current["to"] = s["t"] - t0
        elif current is not None:
            runs.append(current)
            current = None
    if current is not None:
        runs.append(current)
    if not runs:
        return "none in progress at any sample"
    return "; ".join(
        f"{r['from']:.0f}–{r.get('to', r['from']):.0f} s after the deletes began "
        f"({' → '.join(r['phases'])})"
        for r in runs
    )


def _f(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


if __name__ == "__main__":
    COMMANDS = {
        "setup": lambda a: setup(a[0], int(a[1]), int(a[2])),
        "measure": lambda a: measure(a[0], int(a[1]), int(a[2]), int(a[3])),
        "drain": lambda a: drain(a[0], int(a[1])),
        "retention": lambda a: retention(
            a[0], int(a[1]), float(a[2]), float(a[3]), float(a[4]), int(a[5])
        ),
    }
    if len(sys.argv) > 2 and sys.argv[1] in COMMANDS:
        print(json.dumps(COMMANDS[sys.argv[1]](sys.argv[2:]), default=str))
    elif len(sys.argv) > 2 and sys.argv[1] == "feed":
        feed(sys.argv[2], float(sys.argv[3]))
    elif len(sys.argv) > 2 and sys.argv[1] == "report":  # the tables of a saved run
        print(report(json.loads(Path(sys.argv[2]).read_text())))
    elif len(sys.argv) > 2 and sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
