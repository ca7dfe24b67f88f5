"""Our worker beside django-tasks-db on one MariaDB server, in the same minutes.

    python bench/mariadb.py            # BENCH_REPEATS (3) interleaved rounds, ~10 min
    python bench/mariadb.py --smoke    # BENCH_SCALE=0.02, W3 of 1,000 jobs, one round

The shared harness's workloads (``../shared/bench-peers/workloads.py``: W1 single
enqueue, W2 bulk enqueue, W3 drain of pre-enqueued no-op jobs) measured by the
harness's own functions (``runner.w1``, ``w2``, ``w3``: the same timers, the
same 50 ms polling of the pending count), with a MariaDB connection in place of
its psycopg one. The server is the one at BENCH_MYSQL_URL (default
``mysql://root@127.0.0.1:3306``): it is not started here, and nothing on it is
touched but two databases of our own, ``ddj_bench_ours`` and
``ddj_bench_djtasks``, created at the start and dropped at the end.

* ours: ``manage.py runworker`` (polling: MariaDB has no NOTIFY), with
  BENCH_MARIADB_DDJ_ARGS (default ``--poll-interval 0.05``); concurrency c is
  ``--concurrency c`` (threads in one process).
* django-tasks-db: ``manage.py db_worker`` with the harness's adapter and job
  module (adapters/djtasks.py, djproject/), Django pointed at MariaDB,
  persistent connections (CONN_MAX_AGE=None, the peer campaign's fair
  configuration). It runs one task at a time and has no concurrency option:
  concurrency c is c ``db_worker`` processes.

W3 runs at concurrency 1 and 8 (BENCH_W3_CONC). The harness issues a
PostgreSQL ``CHECKPOINT`` before each drain; MariaDB has no per-database
equivalent that leaves the shared server alone, so it is skipped here.

Each round runs both systems (rotated order); a cell is the median (min-max)
over rounds, and the ratio is ours ÷ django-tasks-db within each round.
``bench/run.py`` runs it as the system ``mariadb`` (BENCH_SYSTEMS).
Results: bench/results/<stamp>/ (raw JSON per system and round, mariadb.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import log

MYSQL_URL = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306").rstrip("/")
OURS = "durable_jobs"
PEER = "djtasks"
MYSQL = ["mysqlclient>=2.2", *common.COMMON]  # psycopg only because runner.py imports it
SYSTEMS: dict[str, dict] = {
    OURS: {
        "label": "django-durable-jobs",
        "venv": "durable_jobs_mysql",
        "packages": ["-e", str(common.ROOT), "django==6.1.*", *MYSQL],
        "db": "ddj_bench_ours",
    },
    PEER: {
        "label": "django-tasks-db",
        "venv": "djtasks_mysql",
        "packages": ["django==6.1.*", "django-tasks-db==0.13.*", *MYSQL],
        "db": "ddj_bench_djtasks",
        "env": {"BENCH_DJ_CONN_MAX_AGE": "None"},
    },
}
W3_CONC = "1,8"

# (workload key, field, label, decimals)
ROWS = [
    ("W1", "jobs_per_s", "W1 single enqueue, jobs/s", 0),
    ("W2", "jobs_per_s", "W2 bulk enqueue, jobs/s", 0),
]
W3_ROWS = [
    ("jobs_per_s", "spawn→empty jobs/s", 0),
    ("steady_jobs_per_s", "steady jobs/s (first job→empty)", 0),
    ("startup_s", "spawn→first job s", 2),
    ("worker_cpu_ms_per_job", "worker CPU ms/job", 2),
]


# --------------------------------------------------------------------------- inside a venv


class MariaDB:
    """runner.py's ``DB`` (``scalar``, ``execute``) on a MariaDB connection in autocommit."""

    def __init__(self, url: str, database: str | None = None) -> None:
        import MySQLdb

        parts = urlparse(url)
        self.conn = MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=database or "",
            autocommit=True,
        )

    def scalar(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def execute(self, sql: str) -> None:
        if sql == "CHECKPOINT":  # the harness's PostgreSQL-only step before a drain
            return
        with self.conn.cursor() as cur:
            cur.execute(sql)

    def close(self) -> None:
        self.conn.close()


def _adapter(system: str):
    """The system's harness adapter, pointed at MariaDB (settings, worker environment)."""
    sys.path.insert(0, str(common.SHARED))
    project = str(common.BENCH / "project")
    if system == OURS:
        path = common.BENCH / "adapters" / "durable_jobs.py"
        spec = importlib.util.spec_from_file_location("bench_adapter_durable_jobs", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        base, settings = module.Adapter, "bench_ddj_mysql_settings"
        extra = os.environ.get("BENCH_MARIADB_DDJ_ARGS", "--poll-interval 0.05")
        os.environ["BENCH_DDJ_ARGS"] = extra
    else:
        from adapters import djtasks

        base, settings = djtasks.Adapter, "bench_dt_mysql_settings"
        sys.path.insert(0, djtasks.PROJ)
    sys.path.insert(0, project)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings

    class OnMariaDB(base):
        db = SYSTEMS[system]["db"]

        def versions(self) -> dict:
            from importlib.metadata import version

            found = super().versions()
            found.pop("psycopg", None)
            return {**found, "mysqlclient": version("mysqlclient")}

        def worker_env(self) -> dict:
            env = super().worker_env()
            env["DJANGO_SETTINGS_MODULE"] = settings
            env["PYTHONPATH"] = os.pathsep.join([project, env.get("PYTHONPATH", "")])
            return env

    return OnMariaDB()


def measure(system: str) -> dict:
    """W1, W2 and W3 (each concurrency) once, as a result shaped like runner.py's."""
    os.environ.setdefault("BENCH_W3_CONC", W3_CONC)
    sys.path.insert(0, str(common.SHARED))
    import runner
    import workloads

    adapter = _adapter(system)
    server = MariaDB(MYSQL_URL)
    server.execute(f"CREATE DATABASE IF NOT EXISTS `{adapter.db}` CHARACTER SET utf8mb4")
    server.close()
    adapter.dsn = f"{MYSQL_URL}/{adapter.db}"
    adapter.setup()
    adapter.open()
    db = MariaDB(MYSQL_URL, adapter.db)
    wanted = [w for w in os.environ.get("BENCH_ONLY", "W1,W2,W3").split(",") if w]
    runs: dict[str, list[dict]] = {}
    try:
        for wl in ("W1", "W2"):
            if wl in wanted:
                fn = runner.w1 if wl == "W1" else runner.w2
                runs[wl] = [fn(adapter, db, workloads.WORKLOADS[wl])]
        if "W3" in wanted:
            cfg = workloads.WORKLOADS["W3"]
            for conc in cfg["concurrency"]:
                runs[f"W3_c{conc or 'default'}"] = [runner.w3(adapter, db, cfg, conc)]
        for sql in adapter.reset_sql:
            db.execute(sql)
        meta = {
            "versions": adapter.versions(),
            "python": sys.version.split()[0],
            "server": db.scalar("SELECT version()"),
            "notes": adapter.notes,
            "cpus": os.cpu_count(),
        }
    finally:
        db.close()
        adapter.close()
    return {"runs": runs, "meta": meta}


def drop() -> None:
    server = MariaDB(MYSQL_URL)
    for spec in SYSTEMS.values():
        server.execute(f"DROP DATABASE IF EXISTS `{spec['db']}`")
    server.close()


# --------------------------------------------------------------------------- from outside


def ensure_venvs() -> None:
    for system, spec in SYSTEMS.items():
        common.ensure_venv(system, spec)


def _in_venv(system: str, *args: str, results: Path | None = None) -> str:
    spec = SYSTEMS[system]
    env = common.system_env(OURS, "", **spec.get("env", {}))
    env.pop("BENCH_PG_URL", None)
    if results is not None:
        env["BENCH_SCRATCH"] = str(results / "scratch")
    env["BENCH_REPEATS"] = "1"
    python = common.venv_python(system, spec)
    proc = subprocess.run(
        [str(python), __file__, *args], env=env, capture_output=True, text=True, check=False
    )
    if results is not None:
        with open(results / f"mariadb-{system}.log", "a") as log_file:
            log_file.write(proc.stderr)
    if proc.returncode:
        where = f"see {results}/mariadb-{system}.log" if results else proc.stderr[-2000:]
        raise RuntimeError(f"mariadb {system} {' '.join(args)}: exit {proc.returncode}; {where}")
    return proc.stdout


def run_round(results: Path, number: int) -> dict:
    """One round: both systems, in an order rotated by ``number``; results kept as JSON."""
    results.mkdir(parents=True, exist_ok=True)
    systems = list(SYSTEMS)
    order = systems[number % 2 :] + systems[: number % 2]
    before = os.getloadavg()[0]
    rnd: dict = {}
    for system in order:
        log(f"mariadb round {number + 1}: {system}")
        rnd[system] = json.loads(_in_venv(system, "--measure", system, results=results))
        path = results / f"mariadb-{system}-{number + 1}.json"
        path.write_text(json.dumps(rnd[system], indent=1))
    rnd["load"] = f"{before:.1f}/{os.getloadavg()[0]:.1f}"
    return rnd


def drop_databases() -> None:
    _in_venv(OURS, "--drop")


def _value(result: dict, workload: str, field: str) -> float | None:
    runs = result["runs"].get(workload) or []
    return runs[0].get(field) if runs and runs[0] else None


def _spread(values: list[float], nd: int, prefix: str = "") -> str:
    if not values:
        return "n/a"
    fmt = f"{{:,.{nd}f}}"
    text = prefix + fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def table(rounds: list[dict]) -> str:
    """Medians (min-max) per system and the per-round ratio ours ÷ django-tasks-db."""
    first = rounds[0][OURS]
    keys = sorted(k for k in first["runs"] if k.startswith("W3_"))
    rows = [r for r in ROWS if r[0] in first["runs"]]
    for key in keys:
        conc = key.removeprefix("W3_c")
        for field, label, nd in W3_ROWS:
            rows.append((key, field, f"W3 drain c={conc}: {label}", nd))
    lines = [
        f"MariaDB {first['meta']['server']}, {first['meta']['cpus']} CPUs; "
        f"{len(rounds)} interleaved round(s); load average before/after each round: "
        + ", ".join(r["load"] for r in rounds),
        "Each cell: median (min–max) over rounds; ratio: ours ÷ django-tasks-db within each "
        "round, median (min–max). Throughput: ratio > 1 means we are faster; seconds and "
        "CPU: ratio < 1 means we take less.",
        "",
        f"| figure | {SYSTEMS[OURS]['label']} | {SYSTEMS[PEER]['label']} | ours ÷ theirs |",
        "|---|---|---|---|",
    ]
    for workload, field, label, nd in rows:
        ours = [v for r in rounds if (v := _value(r[OURS], workload, field)) is not None]
        theirs = [v for r in rounds if (v := _value(r[PEER], workload, field)) is not None]
        ratios = [
            a / b
            for r in rounds
            if (a := _value(r[OURS], workload, field)) and (b := _value(r[PEER], workload, field))
        ]
        lines.append(
            f"| {label} | {_spread(ours, nd)} | {_spread(theirs, nd)} | {_spread(ratios, 2, '×')} |"
        )
    lines += ["", "Versions and configurations:"]
    for system, spec in SYSTEMS.items():
        meta = rounds[-1][system]["meta"]
        lines.append(f"- {spec['label']}: {meta['versions']} (Python {meta['python']})")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(sys.argv[2])))
        return 0
    if sys.argv[1:2] == ["--drop"]:
        drop()
        return 0
    if "--smoke" in sys.argv[1:]:
        os.environ.setdefault("BENCH_SCALE", "0.02")
        os.environ.setdefault("BENCH_REPEATS", "1")
        os.environ.setdefault("BENCH_N_W3", "1000")  # a drain must outlast the 50 ms polling
    if not (common.SHARED / "runner.py").exists():
        sys.exit(f"the shared peer harness is missing: {common.SHARED} (set BENCH_PEERS_DIR)")
    ensure_venvs()
    out = common.RESULTS / time.strftime("%Y%m%dT%H%M%S")
    rounds = []
    try:
        for number in range(int(os.environ.get("BENCH_REPEATS", "3"))):
            rounds.append(run_round(out, number))
    finally:
        drop_databases()
    text = table(rounds)
    (out / "mariadb.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
