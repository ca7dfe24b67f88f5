"""Many worker processes on one PostgreSQL: 1, 4, 16, 32 ``runworker``s, direct and via PgBouncer.

    python bench/many_workers.py            # BENCH_REPEATS (3) rounds
    python bench/many_workers.py --smoke    # 1 and 4 processes, 4,000 jobs, one round

One private server (fsync on, ``max_connections = 500``, pg_stat_statements,
``log_lock_waits`` with ``deadlock_timeout = 100ms``) and, for the second mode, Debian's
PgBouncer in transaction mode in front of it (``default_pool_size = 20``; the workers
with ``LISTEN_NOTIFY`` and ``PREPARED_STATEMENTS`` off and Django's
``DISABLE_SERVER_SIDE_CURSORS``, as docs/howto/pgbouncer.md says). In each round, for
each mode and process count N (the order rotates between rounds):

1. N ``runworker --concurrency C`` processes start (separate processes, as on N
   machines; C = BENCH_MANY_CONC, default 8) and the bench waits until all N have
   registered and sat idle for 2 s. Then it counts the TCP connections each worker
   process holds (to the server, or to PgBouncer) and the server's client backends.
2. M no-op jobs (BENCH_MANY_JOBS, default 60,000) are inserted in one statement. The
   workers find them at their next poll (or NOTIFY: none is sent, so every mode waits
   for a poll); the drain is timed from the rows themselves: M / (last ``finished_at``
   - first ``started_at``). Every job must end SUCCESSFUL after exactly one attempt;
   anything else is printed as a failure.
3. During the drain pg_stat_activity is sampled every 50 ms: the share of samples in
   which any backend waits on a heavyweight lock. After it: the claim statement's mean
   and max execution time (pg_stat_statements, reset before the drain), the server
   log's lock waits longer than 100 ms, pg_stat_database's deadlock count, the spread
   of jobs over the workers, and through PgBouncer the mean time a client waited for a
   server connection (``SHOW STATS``).

Target (issue 21 item 3): 32 processes >= 80 % of the best count's throughput, no
deadlocks; the connections per idle worker stated.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import BACKLOG_SQL, JOB_TABLE, log

DB = "bench_ddj_many"
WORKER_TABLE = "django_durable_jobs_worker"
BOUNCER_PORT = int(os.environ.get("BENCH_PGBOUNCER_PORT", "56432"))
SERVER_CONF = {
    "max_connections": "500",
    "shared_preload_libraries": "'pg_stat_statements'",
    "log_lock_waits": "on",
    "deadlock_timeout": "'100ms'",
}
POOLER_SETTINGS = {"LISTEN_NOTIFY": False, "PREPARED_STATEMENTS": False}


class Bouncer:
    """Debian's PgBouncer in transaction mode in front of the private server."""

    def __init__(self, server_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ddj-bench-pgbouncer-"))
        self.server_port = server_port
        self.proc: subprocess.Popen | None = None

    def start(self) -> Bouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise SystemExit("pgbouncer not found: apt-get install pgbouncer")
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {BOUNCER_PORT}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir}/userlist.txt\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\nmax_client_conn = 2000\ndefault_pool_size = 20\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir}/pgbouncer.log\n"
        )
        argv = [binary, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres")
            argv = ["runuser", "-u", "postgres", "--", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise SystemExit(f"pgbouncer exited; see {self.dir}/pgbouncer.log")
        log(f"PgBouncer (transaction mode) on 127.0.0.1:{BOUNCER_PORT}")
        return self

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{BOUNCER_PORT}"

    def stats(self, psycopg) -> tuple[int, int]:
        """(transactions, microseconds clients waited for a server connection) for DB."""
        with psycopg.connect(f"{self.url}/pgbouncer", autocommit=True) as conn:
            conn.prepare_threshold = None
            cur = conn.cursor()
            cur.execute("SHOW STATS")
            names = [d.name for d in cur.description]
            for row in cur.fetchall():
                item = dict(zip(names, row, strict=True))
                if item["database"] == DB:
                    return int(item["total_xact_count"]), int(item["total_wait_time"])
        return 0, 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def tcp_to(process, port: int) -> int:
    """Established TCP connections of ``process`` to ``port`` on loopback."""
    connections = getattr(process, "net_connections", None) or process.connections
    return sum(
        1
        for c in connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
    )


def _tree(proc: subprocess.Popen) -> list:
    """The worker process and its children (``--processes``), as psutil processes."""
    import psutil

    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


def start_workers(n: int, env: dict, out: Path, tag: str) -> list[subprocess.Popen]:
    conc = os.environ.get("BENCH_MANY_CONC", "8")
    procs = []
    for i in range(n):
        with open(out / f"{tag}-worker{i}.log", "wb") as worker_log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "django", "runworker", "--concurrency", conc],
                    env=env,
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_registered(conn, procs: list[subprocess.Popen], timeout: float = 180) -> float:
    """Seconds until every worker has its row (each has then made its connections)."""
    t0 = time.perf_counter()
    while True:
        (count,) = conn.execute(f"SELECT count(*) FROM {WORKER_TABLE}").fetchone()
        if count >= len(procs):
            return time.perf_counter() - t0
        dead = [p.args for p in procs if p.poll() is not None]
        if dead or time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"workers did not all start ({count}/{len(procs)}; exited: {dead})")
        time.sleep(0.2)


def cell(
    conn,
    psycopg,
    n: int,
    mode: str,
    env: dict,
    jobs: int,
    ports: dict,
    out: Path,
    server,
    bouncer: Bouncer | None,
) -> dict:
    """One process count in one mode: start, idle connections, one drain, its figures."""

    conn.execute(f"TRUNCATE {JOB_TABLE}, {WORKER_TABLE}")
    procs = start_workers(n, env, out, f"{mode}-{n}")
    try:
        startup = wait_registered(conn, procs)
        time.sleep(2.0)
        per_worker = [sum(tcp_to(p, ports[mode]) for p in _tree(w)) for w in procs]
        (backends,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = %s AND pid <> pg_backend_pid()",
            [DB],
        ).fetchone()
        conn.execute("SELECT pg_stat_statements_reset()")
        (deadlocks0,) = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [DB]
        ).fetchone()
        log_offset = server.log_size()
        stats0 = bouncer.stats(psycopg) if bouncer else (0, 0)
        load0 = os.getloadavg()[0]
        conn.execute(BACKLOG_SQL, [jobs])
        t0 = time.perf_counter()
        samples = lock_samples = 0
        waiters: collections.Counter[str] = collections.Counter()
        while True:
            (left,) = conn.execute(
                f"SELECT count(*) FROM {JOB_TABLE} WHERE status IN ('READY', 'RUNNING')"
            ).fetchone()
            waiting = conn.execute(
                "SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 70)"
                " FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ).fetchall()
            samples += 1
            lock_samples += bool(waiting)
            waiters.update(f"{event}: {query}" for event, query in waiting)
            if left == 0:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{mode} x{n}: {left} jobs left after 600 s")
            time.sleep(0.05)
        stats1 = bouncer.stats(psycopg) if bouncer else (0, 0)
        (first, last, ok, once, spread) = conn.execute(
            f"""SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)),
                       count(*) FILTER (WHERE status = 'SUCCESSFUL'),
                       count(*) FILTER (WHERE attempts = 1),
                       (SELECT array_agg(c ORDER BY c) FROM
                           (SELECT count(*) AS c FROM {JOB_TABLE} GROUP BY worker_id) AS per)
                FROM {JOB_TABLE}"""
        ).fetchone()
        claim = conn.execute(
            "SELECT sum(calls), sum(total_exec_time) / nullif(sum(calls), 0), max(max_exec_time),"
            " sum(shared_blks_hit + shared_blks_read), sum(rows)"
            " FROM pg_stat_statements WHERE query LIKE '%%candidates AS%%SKIP LOCKED%%'"
        ).fetchone()
        (db_ms, db_blocks) = conn.execute(
            "SELECT sum(total_exec_time), sum(shared_blks_hit + shared_blks_read)"
            " FROM pg_stat_statements s JOIN pg_database d"
            " ON d.oid = s.dbid WHERE d.datname = %s",
            [DB],
        ).fetchone()
        (deadlocks1,) = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [DB]
        ).fetchone()
        server_log = server.log_since(log_offset)
        lock_waits = server_log.count("still waiting for")
        (out / f"{mode}-{n}-server.log").write_text(server_log)
        busy_conns = [sum(tcp_to(p, ports[mode]) for p in _tree(w)) for w in procs]
        rss = sum(p.memory_info().rss for w in procs for p in _tree(w))
    finally:
        stop_workers(procs)
    xacts = stats1[0] - stats0[0]
    return {
        "mode": mode,
        "n": n,
        "jobs": jobs,
        "startup_s": startup,
        "idle_conns_per_worker": per_worker,
        "server_backends_idle": backends,
        "conns_per_worker_after_drain": busy_conns,
        "jobs_per_s": jobs / float(last - first),
        "ok": ok,
        "once": once,
        "spread": [int(c) for c in spread or []],
        "claims": int(claim[0] or 0),
        "claim_mean_ms": float(claim[1] or 0),
        "claim_max_ms": float(claim[2] or 0),
        "db_ms_per_job": float(db_ms or 0) / jobs,
        # Buffers touched: the database's work, unlike its times, not stretched by a busy CPU.
        "claim_blocks_per_job": float(claim[3] or 0) / jobs,
        "db_blocks_per_job": float(db_blocks or 0) / jobs,
        "jobs_per_claim": float(claim[4] or 0) / max(int(claim[0] or 0), 1),
        "lock_sample_share": lock_samples / max(samples, 1),
        "lock_waits_over_100ms": lock_waits,
        "lock_waiters": waiters.most_common(8),
        "deadlocks": deadlocks1 - deadlocks0,
        "pool_wait_ms_per_xact": (stats1[1] - stats0[1]) / 1000 / xacts if xacts else None,
        "rss_mb": rss / 2**20,
        "load": [load0, os.getloadavg()[0]],
    }


class Server(common.PrivateServer):
    """The private server, with its log readable from an offset (lock waits)."""

    def log_size(self) -> int:
        path = self.dir / "pg.log"
        return path.stat().st_size if path.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.dir / "pg.log", "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    counts = [
        int(c)
        for c in os.environ.get("BENCH_WORKER_COUNTS", "1,4" if smoke else "1,4,16,32").split(",")
    ]
    jobs = int(os.environ.get("BENCH_MANY_JOBS", "4000" if smoke else "60000"))
    rounds = 1 if smoke else int(os.environ.get("BENCH_REPEATS", "3"))
    modes = os.environ.get("BENCH_MANY_MODES", "direct,pgbouncer").split(",")
    python = common.ensure_venv("durable_jobs")
    if not common.running_in(python):
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    import psycopg

    out = common.RESULTS / f"many-workers-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    server = Server(conf=SERVER_CONF).start()
    bouncer = Bouncer(server.port).start() if "pgbouncer" in modes else None
    results: list[dict] = []
    try:
        pg_url = server.url
        env = common.fresh_ddj_database(pg_url, DB)
        envs = {"direct": env}
        if bouncer:
            envs["pgbouncer"] = {
                **env,
                "BENCH_DSN": f"{bouncer.url}/{DB}",
                "BENCH_DJ_POOLER": "transaction",
                "BENCH_DDJ_SETTINGS": json.dumps(POOLER_SETTINGS),
            }
        ports = {"direct": server.port, "pgbouncer": BOUNCER_PORT}
        cells = [(mode, n) for mode in modes for n in counts]
        with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            for r in range(rounds):
                order = cells[r % len(cells) :] + cells[: r % len(cells)]
                for mode, n in order:
                    load = os.getloadavg()[0]
                    log(f"round {r + 1}/{rounds}: {mode}, {n} worker process(es), load {load:.1f}")
                    res = cell(
                        conn, psycopg, n, mode, envs[mode], jobs, ports, out, server, bouncer
                    )
                    res["round"] = r
                    results.append(res)
                    log(f"  {res['jobs_per_s']:,.0f} jobs/s; claim {res['claim_mean_ms']:.2f} ms")
                    (out / "many_workers.json").write_text(json.dumps(results, indent=1))
    finally:
        if bouncer:
            bouncer.stop()
        server.stop()
    text = report(results, counts, modes, rounds)
    (out / "many_workers.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def report(results: list[dict], counts: list[int], modes: list[str], rounds: int) -> str:
    conc = os.environ.get("BENCH_MANY_CONC", "8")
    lines = [
        f"N runworker processes (--concurrency {conc}) on one PostgreSQL, "
        f"{results[0]['jobs']:,} no-op jobs per drain, {rounds} round(s), median (min–max).",
        "",
        "| mode | processes | jobs/s | share of the mode's best | claim mean / max ms | "
        "DB ms per job | buffers per job: claim / all | jobs per claim | lock-wait samples | "
        "lock waits > 100 ms | deadlocks | "
        "conns per worker idle / after drain | server backends idle | pool wait ms / xact | "
        "RSS MB all | jobs per worker min–max | exactly once |",
        "|" + "---|" * 17,
    ]
    failures: list[str] = []
    summary: list[str] = []
    for mode in modes:
        rows = {n: [r for r in results if r["mode"] == mode and r["n"] == n] for n in counts}
        best = max(statistics.median(x["jobs_per_s"] for x in rs) for rs in rows.values() if rs)
        for n, rs in rows.items():
            if not rs:
                continue
            rate = statistics.median(x["jobs_per_s"] for x in rs)
            exact = all(x["ok"] == x["jobs"] == x["once"] for x in rs)
            if not exact:
                failures.append(f"{mode} x{n}: not every job SUCCESSFUL after one attempt")
            waits = [
                x["pool_wait_ms_per_xact"] for x in rs if x["pool_wait_ms_per_xact"] is not None
            ]
            spread = rs[-1]["spread"] or [0]
            lines.append(
                f"| {mode} | {n} | {_med([x['jobs_per_s'] for x in rs])} | {rate / best:.0%} | "
                f"{statistics.median(x['claim_mean_ms'] for x in rs):.2f} / "
                f"{max(x['claim_max_ms'] for x in rs):.0f} | "
                f"{statistics.median(x['db_ms_per_job'] for x in rs):.3f} | "
                f"{statistics.median(x['claim_blocks_per_job'] for x in rs):.1f} / "
                f"{statistics.median(x['db_blocks_per_job'] for x in rs):.1f} | "
                f"{statistics.median(x['jobs_per_claim'] for x in rs):.0f} | "
                f"{statistics.median(x['lock_sample_share'] for x in rs):.0%} | "
                f"{sum(x['lock_waits_over_100ms'] for x in rs)} | "
                f"{sum(x['deadlocks'] for x in rs)} | "
                f"{statistics.median(c for x in rs for c in x['idle_conns_per_worker']):.0f} / "
                f"{statistics.median(c for x in rs for c in x['conns_per_worker_after_drain']):.0f}"
                " | "
                f"{statistics.median(x['server_backends_idle'] for x in rs):.0f} | "
                f"{f'{statistics.median(waits):.2f}' if waits else '–'} | "
                f"{statistics.median(x['rss_mb'] for x in rs):,.0f} | "
                f"{min(spread):,}–{max(spread):,} | {'yes' if exact else 'NO'} |"
            )
        if rows[max(counts)]:
            share = statistics.median(x["jobs_per_s"] for x in rows[max(counts)]) / best
            verdict = "met" if share >= 0.8 else "NOT met"
            summary.append(
                f"{mode}: {max(counts)} processes at {share:.0%} of the best count "
                f"(target >= 80 %: {verdict})."
            )
    lines += ["", *summary]
    loads = [x["load"] for x in results]
    lines += [
        "",
        "Load average (1 min) at drain start / end: median "
        f"{statistics.median(x[0] for x in loads):.1f} / "
        f"{statistics.median(x[1] for x in loads):.1f}.",
    ]
    lines += [f"FAILURE: {f}" for f in failures]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
