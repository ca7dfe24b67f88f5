"""One measurement of bench/shapes.py, run with the virtualenv python of the system measured.

    python driver.py setup <system>                      # database, schema, bench_shape_row
    python driver.py measure <system> <workload> <n> <log>   # prints one JSON line

BENCH_PG_URL is the server (each system has its own database on it). ``measure``
empties the system's tables, puts the jobs in (S1, S2: the system's bulk API, untimed;
S3: one enqueue call per job, timed), CHECKPOINTs, spawns the worker at concurrency 8
and polls every 50 ms until the work is done (S1: ``count(*)`` of bench_shape_row
reaches n; S2, S3: no job pending), sampling the worker's process tree's RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import psycopg

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
PEERS = Path(os.environ.get("BENCH_PEERS_DIR", BENCH.parent.parent / "shared" / "bench-peers"))
CONCURRENCY = 8
POLL_S = 0.05
TIMEOUT_S = 600
JOB = {"S1": "shape_orm_write", "S2": "shape_sleep", "S3": "shape_big"}
ROW_TABLE = """
CREATE TABLE IF NOT EXISTS bench_shape_row (
    id bigserial PRIMARY KEY, job_ref int, payload text, created_at timestamptz DEFAULT now()
)
"""


def big_items() -> list[dict]:
    """S3's argument: 10,000 small dicts, about 0.93 MB of compact JSON."""
    return [
        {
            "id": k,
            "sku": f"SKU-{k:06d}",
            "name": f"item {k:06d} of the order #{k % 97:02d}",
            "qty": k % 7,
            "price": round(k * 0.37, 2),
        }
        for k in range(10_000)
    ]


# --------------------------------------------------------------------------- systems


class System:
    db: str
    pending_sql: str
    failed_sql: str | None = None
    reset_sql: list[str]

    def __init__(self, pg_url: str) -> None:
        self.dsn = f"{pg_url}/{self.db}"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["BENCH_DSN"] = self.dsn
        return env


class Ours(System):
    db = "bench_shapes_ours"
    pending_sql = "SELECT count(*) FROM django_durable_jobs_job WHERE status IN ('READY','RUNNING')"
    failed_sql = "SELECT count(*) FROM django_durable_jobs_job WHERE status <> 'SUCCESSFUL'"
    reset_sql = ["TRUNCATE django_durable_jobs_job, django_durable_jobs_worker"]
    concurrency = "8 threads in one process (runworker --concurrency 8)"

    def env(self) -> dict:
        paths = [HERE, BENCH / "project"]
        return {
            **super().env(),
            "DJANGO_SETTINGS_MODULE": "shapes_ddj_settings",
            "PYTHONPATH": os.pathsep.join(map(str, paths)),
        }

    def open(self) -> None:
        os.environ.update(self.env())
        sys.path[:0] = [str(HERE), str(BENCH / "project")]
        import django

        django.setup()

    def setup(self) -> None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def prefill(self, workload: str, n: int) -> None:
        from shape_rows import jobs

        from django_durable_jobs import enqueue_many

        fn = jobs.orm_write if workload == "S1" else jobs.sleep_50ms
        enqueue_many(fn.prepare(i) for i in range(n))

    def enqueue_big(self, items: list) -> None:
        from shape_rows import jobs

        jobs.big.enqueue(items=items)

    def worker_cmds(self) -> list[list[str]]:
        return [[sys.executable, "-m", "django", "runworker", f"--concurrency={CONCURRENCY}"]]


class DjTasks(System):
    db = "bench_shapes_djtasks"
    table = "django_tasks_database_dbtaskresult"
    pending_sql = f"SELECT count(*) FROM {table} WHERE status IN ('READY','RUNNING')"
    failed_sql = f"SELECT count(*) FROM {table} WHERE status <> 'SUCCESSFUL'"
    reset_sql = [f"TRUNCATE {table}"]
    concurrency = "8 db_worker processes (one task at a time each; the harness's convention)"

    def env(self) -> dict:
        paths = [HERE, PEERS / "adapters" / "djproject"]
        return {
            **super().env(),
            "DJANGO_SETTINGS_MODULE": "shapes_dt_settings",
            "PYTHONPATH": os.pathsep.join(map(str, paths)),
        }

    def open(self) -> None:
        os.environ.update(self.env())
        sys.path[:0] = [str(HERE), str(PEERS / "adapters" / "djproject")]
        import django

        django.setup()

    setup = Ours.setup

    def prefill(self, workload: str, n: int) -> None:
        import shapes_dt_tasks as tasks
        from django.db import transaction

        fn = tasks.orm_write if workload == "S1" else tasks.sleep_50ms
        with transaction.atomic():  # no bulk API: one transaction of n enqueue() calls
            for i in range(n):
                fn.enqueue(i)

    def enqueue_big(self, items: list) -> None:
        import shapes_dt_tasks as tasks

        tasks.big.enqueue(items=items)

    def worker_cmds(self) -> list[list[str]]:
        return [[sys.executable, "-m", "django", "db_worker", "--no-reload"]] * CONCURRENCY


class Procrastinate(System):
    db = "bench_shapes_procrastinate"
    pending_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo','doing')"
    failed_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
    reset_sql = ["TRUNCATE procrastinate_jobs, procrastinate_events CASCADE"]
    concurrency = "8 async tasks in one process (worker --concurrency 8)"

    def env(self) -> dict:
        return {**super().env(), "PYTHONPATH": str(HERE)}

    def open(self) -> None:
        os.environ["BENCH_DSN"] = self.dsn
        sys.path.insert(0, str(HERE))
        import shapes_procr_app

        self.m = shapes_procr_app
        self.m.app.open()

    def setup(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0]
        if not exists:
            self.m.app.schema_manager.apply_schema()

    def prefill(self, workload: str, n: int) -> None:
        fn = self.m.orm_write if workload == "S1" else self.m.sleep_50ms
        fn.batch_defer(*({"i": i} for i in range(n)))

    def enqueue_big(self, items: list) -> None:
        self.m.big.defer(items=items)

    def worker_cmds(self) -> list[list[str]]:
        app = "--app=shapes_procr_app.app"
        return [
            [
                sys.executable,
                "-m",
                "procrastinate",
                app,
                "worker",
                "--queues=default",
                f"--concurrency={CONCURRENCY}",
            ]
        ]


class PgQueuer(System):
    db = "bench_shapes_pgqueuer"
    pending_sql = "SELECT count(*) FROM pgqueuer"
    failed_sql = "SELECT count(*) FROM pgqueuer_log WHERE status = 'exception'"
    reset_sql = ["TRUNCATE pgqueuer, pgqueuer_log"]
    concurrency = (
        "8 async tasks in one process (--max-concurrent-tasks 8, batch size 4, as the harness)"
    )

    def env(self) -> dict:
        return {**super().env(), "PYTHONPATH": str(HERE)}

    def open(self) -> None:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(self.dsn))
        self.q = Queries(AsyncpgDriver(self.conn))

    def setup(self) -> None:
        if not self.loop.run_until_complete(self.q.has_table("pgqueuer")):
            self.loop.run_until_complete(self.q.install())

    def prefill(self, workload: str, n: int) -> None:
        payloads = [str(i).encode() for i in range(n)]
        self.loop.run_until_complete(self.q.enqueue([JOB[workload]] * n, payloads, [0] * n))

    def enqueue_big(self, items: list) -> None:
        payload = json.dumps({"items": items}).encode()
        self.loop.run_until_complete(self.q.enqueue(JOB["S3"], payload))

    def worker_cmds(self) -> list[list[str]]:
        script = str(HERE / "shapes_pgq_worker.py")
        return [[sys.executable, script, str(CONCURRENCY), str(CONCURRENCY // 2)]]


SYSTEMS = {
    "durable_jobs": Ours,
    "djtasks": DjTasks,
    "procrastinate": Procrastinate,
    "pgqueuer": PgQueuer,
}


# --------------------------------------------------------------------------- the worker


class RssSampler(threading.Thread):
    """Peak RSS (bytes) of the worker processes and all their children, every 50 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            total = 0
            for pid in self.pids:
                try:
                    proc = psutil.Process(pid)
                    tree = [proc, *proc.children(recursive=True)]
                except psutil.Error:
                    continue
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self.halt.wait(POLL_S)


def spawn(system: System, log_path: str) -> list[subprocess.Popen]:
    log = open(log_path, "ab")  # noqa: SIM115 (the workers write to it until stop())
    return [
        subprocess.Popen(
            cmd,
            env=system.env(),
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for cmd in system.worker_cmds()
    ]


def py_spy(pid: int) -> subprocess.Popen | None:
    """With BENCH_SHAPES_PYSPY=<file>: py-spy's raw stacks of the (first) worker process."""
    raw = os.environ.get("BENCH_SHAPES_PYSPY")
    if not raw:
        return None
    cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid)]
    cmd += ["--rate", "250", "--nonblocking", "--threads", "--format", "raw", "-o", raw]
    time.sleep(0.1)  # the process must exist for py-spy to attach
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(procs: list[subprocess.Popen], grace: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def drain(system: System, conn, workload: str, n: int, log_path: str) -> dict:
    """Spawn the worker; poll until done; times from spawn, first and last completion."""
    if workload == "S1":
        sql = f"SELECT (SELECT count(*) FROM bench_shape_row), ({system.pending_sql})"
    else:
        sql = f"SELECT {n} - ({system.pending_sql}), ({system.pending_sql})"
    conn.execute("CHECKPOINT")  # the same starting point for every run
    t_spawn = time.perf_counter()
    procs = spawn(system, log_path)
    spy = py_spy(procs[0].pid)
    sampler = RssSampler([p.pid for p in procs])
    sampler.start()
    t_first = t_end = None
    idle_since = None
    try:
        while time.perf_counter() < t_spawn + TIMEOUT_S:
            done, pending = conn.execute(sql).fetchone()
            now = time.perf_counter()
            if t_first is None and done > 0:
                t_first = now
            if done >= n:
                t_end = now
                break
            if pending == 0:  # nothing left to run but not all done: a lost job
                idle_since = idle_since or now
                if now - idle_since > 2:
                    break
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(POLL_S)
    finally:
        sampler.halt.set()
        sampler.join(2)
        if spy:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples when interrupted
            spy.wait(30)
        stop(procs)
    steady = t_end and t_first and t_end > t_first
    return {
        "wall_s": t_end - t_spawn if t_end else None,
        "jobs_per_s": n / (t_end - t_spawn) if t_end else None,
        "startup_s": t_first - t_spawn if t_first else None,
        "steady_jobs_per_s": n / (t_end - t_first) if steady else None,
        "peak_rss_mb": sampler.peak / 2**20,
        "processes": len(procs),
    }


def measure(system: System, workload: str, n: int, log_path: str) -> dict:
    conn = psycopg.connect(system.dsn, autocommit=True)
    for sql in [*system.reset_sql, "TRUNCATE bench_shape_row"]:
        conn.execute(sql)
    result: dict = {"workload": workload, "n": n}
    if workload == "S3":
        items = big_items()
        result["payload_bytes"] = len(json.dumps({"items": items}, separators=(",", ":")))
        t0 = time.perf_counter()
        for _ in range(n):
            system.enqueue_big(items)  # one call, one transaction each
        result["enqueue_jobs_per_s"] = n / (time.perf_counter() - t0)
    else:
        system.prefill(workload, n)
    result.update(drain(system, conn, workload, n, log_path))
    check = "SELECT count(*), count(DISTINCT job_ref) FROM bench_shape_row"
    rows, refs = conn.execute(check).fetchone()
    result["rows"], result["distinct_refs"] = rows, refs
    result["failed_or_unfinished"] = conn.execute(system.failed_sql).fetchone()[0]
    problems = []
    if workload == "S1" and (rows != n or refs != n):
        problems.append(f"{rows} rows ({refs} distinct jobs) for {n} jobs")
    if result["failed_or_unfinished"]:
        problems.append(f"{result['failed_or_unfinished']} jobs not successful")
    if result["wall_s"] is None:
        problems.append("did not finish")
    result["problems"] = problems
    conn.close()
    return result


def main() -> int:
    action, name = sys.argv[1], sys.argv[2]
    pg_url = os.environ["BENCH_PG_URL"].rstrip("/")
    system = SYSTEMS[name](pg_url)
    if action == "setup":
        with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{system.db}"')
            conn.execute(f'CREATE DATABASE "{system.db}"')
        with psycopg.connect(system.dsn, autocommit=True) as conn:
            conn.execute(ROW_TABLE)
        system.open()
        system.setup()
        print(json.dumps({"concurrency": system.concurrency}))
        return 0
    workload, n, log_path = sys.argv[3], int(sys.argv[4]), sys.argv[5]
    system.open()
    print(json.dumps(measure(system, workload, n, log_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
