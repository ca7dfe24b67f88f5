"""Where a worker's time goes: py-spy profiles of ``runworker`` draining no-op jobs.

    python bench/profile_worker.py             # 50,000 jobs, default settings
    python bench/profile_worker.py --smoke     # 2,000 jobs
    BENCH_DDJ_ARGS="--log-level WARNING" python bench/profile_worker.py   # a variant

Runs on a private PostgreSQL server (fsync on). Three drains of the same backlog:

* unprofiled: the reference rate; the CPU time of every worker thread and every
  PostgreSQL process, read from /proc; commits, row updates and WAL per job;
* py-spy in ``active`` mode (its default: threads running or runnable, an
  approximation of where the worker burns CPU);
* py-spy in ``wall`` mode (``--idle``: every thread at every sample, so waits on
  the database, on the inbox and on wake-ups show).

Samples are sorted by ``stacks.py``; then ``step_costs.py`` times each step of a
job alone. Prints the tables; raw stacks go to bench/results/.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import BACKLOG_SQL, JOB_TABLE, log
from stacks import summarize
from step_costs import step_costs

DB = "bench_ddj_profile"
RATE = int(os.environ.get("BENCH_PYSPY_RATE", "250"))


# --------------------------------------------------------------------------- drains


def _env(pg_url: str) -> dict:
    return common.ddj_env(pg_url, DB)


def _concurrency() -> int:
    args = os.environ.get("BENCH_DDJ_ARGS", "").replace("=", " ").split()
    if "--concurrency" in args:
        return int(args[args.index("--concurrency") + 1])
    return 8  # DURABLE_JOBS["CONCURRENCY"]'s default


class CpuMeter:
    """CPU seconds of the worker's threads and of the PostgreSQL processes, from /proc.

    Threads are told apart by creation order, which ``Worker`` fixes: the main
    thread (it only waits for the signal-safe body thread), the body thread (the
    claimer), the completer, the executors, the watchdog, then the heartbeat and
    listener threads (and the scheduler's, with periodic jobs).
    PostgreSQL processes are the postmaster's children except the poller's own.
    """

    def __init__(self, worker_pid: int, conn) -> None:
        import psutil

        self.psutil = psutil
        self.worker = psutil.Process(worker_pid)
        my_backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.my_backend = my_backend
        self.postmaster = psutil.Process(psutil.Process(my_backend).ppid())
        self.kinds: dict[int, str] = {}

    def _pg_kind(self, proc) -> str:
        if proc.pid not in self.kinds:
            title = " ".join(proc.cmdline())
            self.kinds[proc.pid] = (
                "PostgreSQL: backends serving the worker"
                if DB in title
                else "PostgreSQL: background (WAL writer, checkpointer...)"
            )
        return self.kinds[proc.pid]

    def snapshot(self) -> dict:
        snap: dict = {"threads": {}, "pg": {}}
        try:
            for t in self.worker.threads():
                snap["threads"][t.id] = t.user_time + t.system_time
        except self.psutil.Error:
            pass
        for child in self.postmaster.children():
            if child.pid == self.my_backend:
                continue
            try:
                ct = child.cpu_times()
                snap["pg"][child.pid] = (self._pg_kind(child), ct.user + ct.system)
            except self.psutil.Error:
                continue
        return snap

    def delta(self, first: dict, last: dict) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        main = self.worker.pid
        others = sorted(t for t in last["threads"] if t != main)
        concurrency = _concurrency()
        order = [
            "worker: claimer (body thread)",
            "worker: completer thread (writes outcomes)",
            *[f"worker: {concurrency} executor threads"] * concurrency,
            "worker: watchdog thread",
            "worker: heartbeat thread",
            "worker: listener thread",
        ]
        names = {main: "worker: main thread (waits for the body)"}
        for i, tid in enumerate(others):
            names[tid] = order[i] if i < len(order) else "worker: scheduler thread"
        for tid, cpu in last["threads"].items():
            out[names[tid]] += cpu - first["threads"].get(tid, 0.0)
        for pid, (kind, cpu) in last["pg"].items():
            out[kind] += cpu - first["pg"].get(pid, (kind, 0.0))[1]
        return dict(out)


def _busy() -> float:
    import psutil

    c = psutil.cpu_times()
    return c.user + c.nice + c.system + c.irq + c.softirq


def drain(pg_url: str, n: int, out: Path, mode: str | None, before=None) -> dict:
    """Drain ``n`` ready jobs with ``runworker``; py-spy attached unless mode is None.

    The worker is stopped (SIGTERM) once the queue is empty, not run with --burst:
    its threads must still be alive for their CPU times to be read.
    """
    import psycopg

    with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as conn:
        conn.execute(f"TRUNCATE {JOB_TABLE}")
        conn.execute(BACKLOG_SQL, [n])
        conn.execute("CHECKPOINT")
        stats_before = before() if before else None
        args = os.environ.get("BENCH_DDJ_ARGS", "").split()
        worker_log = open(out / f"worker-{mode or 'plain'}.log", "wb")  # noqa: SIM115
        t_spawn = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args],
            env=_env(pg_url),
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            meter = CpuMeter(proc.pid, conn)
            spy = None
            raw = out / f"pyspy-{mode}.txt"
            if mode:
                time.sleep(0.1)
                py_spy = str(Path(sys.executable).parent / "py-spy")
                options = ["--rate", str(RATE), "--nonblocking", "--threads", "--format", "raw"]
                if mode == "wall":
                    options.append("--idle")
                with open(out / f"pyspy-{mode}.err", "w") as err:
                    spy = subprocess.Popen(
                        [py_spy, "record", "--pid", str(proc.pid), *options, "-o", str(raw)],
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
            t_first = t_end = first = None
            last = meter.snapshot()
            while True:
                left = conn.execute(
                    f"SELECT count(*) FROM {JOB_TABLE} WHERE status IN ('READY','RUNNING')"
                ).fetchone()[0]
                now = time.perf_counter()
                snap = meter.snapshot()
                if t_first is None and left < n:
                    t_first, first, busy0 = now, last, _busy()
                if snap["threads"]:
                    last = snap
                if left == 0:
                    t_end, busy1 = now, _busy()
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        except BaseException:
            proc.kill()  # never leave a worker behind: it would drain the next run's jobs
            proc.wait()
            raise
        proc.terminate()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = status
        worker_log.close()
        if spy:
            spy.wait(timeout=60)
    cpu = usage.ru_utime + usage.ru_stime
    result = {
        "mode": mode or "unprofiled",
        "n": n,
        "jobs_per_s": n / (t_end - t_spawn) if t_end else None,
        "steady_jobs_per_s": n / (t_end - t_first) if t_end and t_first else None,
        "drain_s": (t_end - t_first) if t_end and t_first else None,
        "worker_cpu_s": cpu,
        "max_rss_mb": usage.ru_maxrss / 1024,
    }
    if stats_before:
        result["stats_before"] = stats_before
    if t_end and first:
        result["cpu_s"] = meter.delta(first, last)
        result["machine_cpu_s"] = busy1 - busy0
    if mode:
        result["profile"] = summarize(raw)
    return result


def report(runs: list[dict], rate: int) -> str:
    plain = next(r for r in runs if r["mode"] == "unprofiled")
    n = plain["n"]
    args = os.environ.get("BENCH_DDJ_ARGS", "")
    lines = [
        f"Drain of {n:,} no-op jobs by runworker {args}(defaults otherwise), "
        f"first job claimed -> queue empty. Unprofiled: {plain['steady_jobs_per_s']:,.0f} jobs/s, "
        f"{plain['drain_s']:.2f} s, max RSS {plain['max_rss_mb']:.0f} MB; "
        f"per job: {plain['commits_per_job']:.2f} commits in its database (claims + outcome "
        f"records + the harness's polls), {plain['row_updates_per_job']:.2f} row updates "
        f"({plain['hot_update_share']:.0%} HOT), {plain['wal_bytes_per_job']:,.0f} bytes of WAL.",
        "",
        "CPU per job during that drain, from /proc (no profiler attached):",
        "",
        "| process / thread | µs CPU per job | share of the machine's busy CPU |",
        "|---|---|---|",
    ]
    machine = plain["machine_cpu_s"]
    for name, sec in sorted(plain["cpu_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {sec * 1e6 / n:,.0f} | {sec / machine:.0%} |")
    rest = machine - sum(plain["cpu_s"].values())
    lines.append(
        f"| rest of the machine (the poller, other agents) | {rest * 1e6 / n:,.0f} "
        f"| {rest / machine:.0%} |"
    )
    lines.append(f"| **machine, all cores** | **{machine * 1e6 / n:,.0f}** | 100% |")
    for run in runs:
        if run["mode"] == "unprofiled":
            continue
        prof = run["profile"]
        roles = {k: v for k, v in prof["roles"].items() if k != "startup/other"}
        total = sum(roles.values())
        wall = run["mode"] == "wall"
        lines += [
            "",
            f"py-spy {'--idle (every thread, every sample)' if wall else '(active threads)'}, "
            f"{rate} Hz: {run['steady_jobs_per_s']:,.0f} jobs/s while profiled, "
            f"{total:,} samples outside start-up.",
            "",
            "| thread | where | share of samples | "
            + ("share of that thread kind's time |" if wall else "share of that kind's samples |"),
            "|---|---|---|---|",
        ]
        cats = sorted(
            ((k, v) for k, v in prof["categories"].items() if not k.startswith("startup")),
            key=lambda kv: -kv[1],
        )
        for key, count in cats:
            role, cat = key.split("|", 1)
            last = f"{count / roles[role]:.0%}"
            lines.append(f"| {role} | {cat} | {count / total:.1%} | {last} |")
        if not wall:
            lines += ["", "| innermost frame's layer | share of active samples |", "|---|---|"]
            ltotal = sum(prof["layers"].values())
            for layer, count in sorted(prof["layers"].items(), key=lambda kv: -kv[1]):
                lines.append(f"| {layer} | {count / ltotal:.1%} |")
    return "\n".join(lines)


def transactions_per_job(pg_url: str, n: int, out: Path) -> dict:
    """Commits in the worker's database per job during a drain (pg_stat_database)."""
    import psycopg

    def stats() -> tuple:
        with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as c:
            c.execute("SELECT pg_stat_clear_snapshot()")
            return c.execute(
                "SELECT d.xact_commit, t.n_tup_upd, t.n_tup_hot_upd, pg_current_wal_lsn()"
                " FROM pg_stat_database d, pg_stat_user_tables t"
                " WHERE d.datname = current_database() AND t.relname = %s",
                [JOB_TABLE],
            ).fetchone()

    def wal_bytes(a: str, b: str) -> int:
        with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as c:
            return c.execute("SELECT pg_wal_lsn_diff(%s, %s)", [b, a]).fetchone()[0]

    time.sleep(1.2)  # let the backlog's own statistics arrive first (PGSTAT_MIN_INTERVAL)
    result = drain(pg_url, n, out, None, before=stats)
    time.sleep(1.2)
    after = stats()
    before = result.pop("stats_before")
    result["commits_per_job"] = (after[0] - before[0]) / n
    result["row_updates_per_job"] = (after[1] - before[1]) / n
    result["hot_update_share"] = (after[2] - before[2]) / max(after[1] - before[1], 1)
    result["wal_bytes_per_job"] = float(wal_bytes(before[3], after[3])) / n
    return result


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    n = int(os.environ.get("BENCH_PROFILE_JOBS", "2000" if smoke else "50000"))
    python = common.ensure_venv("durable_jobs")
    if not common.running_in(python):
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    out = common.RESULTS / f"profile-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    with common.private_server() as pg_url:
        import psycopg

        with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB}"')
            conn.execute(f'CREATE DATABASE "{DB}"')
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v0"], env=_env(pg_url), check=True
        )
        runs = []
        for mode in (None, "active", "wall"):
            log(f"drain of {n:,} jobs, profile: {mode or 'none'}")
            if mode is None:
                runs.append(transactions_per_job(pg_url, n, out))
            else:
                runs.append(drain(pg_url, n, out, mode))
        log("per-step costs, one thread")
        steps = step_costs(pg_url, DB)
    (out / "profile.json").write_text(json.dumps({"runs": runs, "steps": steps}, indent=1))
    text = report(runs, RATE)
    text += "\n\nEach step alone, one thread, 2,000 jobs "
    text += "(wall includes the round trip and commit):\n\n"
    text += "| step | wall µs per job | worker CPU µs per job |\n|---|---|---|\n"
    text += "\n".join(f"| {label} | {wall:,.0f} | {cpu:,.0f} |" for label, wall, cpu, _ in steps)
    (out / "profile.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
