"""What every bench/ script shares: paths, the private PostgreSQL server, the virtualenvs.

Stdlib only: these scripts run with any Python 3.11+, and each system under test
runs in its own virtualenv under ``bench/.venvs/`` (created on first use).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: The team's peer harness (workloads, runner, peer adapters); beside a clean clone in CI.
SHARED = Path(os.environ.get("BENCH_PEERS_DIR", ROOT.parent / "shared" / "bench-peers")).resolve()
VENVS = Path(os.environ.get("BENCH_VENVS", BENCH / ".venvs"))
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", BENCH / "results"))
PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
PY312 = os.environ.get("BENCH_PYTHON", "/root/.pyenv/versions/3.12.1/bin/python3.12")

# One virtualenv per system. Versions are pinned to the ones the peer campaign measured, so
# numbers stay comparable across runs; our project is installed editable from this checkout.
COMMON = ["psycopg[binary]>=3.2", "psutil"]
SYSTEMS: dict[str, dict] = {
    "durable_jobs": {
        "label": "django-durable-jobs",
        "venv": "durable_jobs",
        "packages": ["-e", str(ROOT), "django==6.1.*", *COMMON, "py-spy", "pyinstrument"],
    },
    "pgqueuer": {
        "label": "pgqueuer",
        "venv": "pgqueuer",
        "packages": ["pgqueuer==1.6.*", "asyncpg", *COMMON],
    },
    "procrastinate": {
        "label": "procrastinate",
        "venv": "procrastinate",
        "packages": ["procrastinate==3.10.*", *COMMON],
    },
    "djtasks": {
        "label": "django-tasks-db",
        "venv": "djtasks",
        "packages": ["django==6.1.*", "django-tasks-db==0.13.*", *COMMON],
        # The fair configuration from the peer campaign: persistent connections (with
        # Django's default CONN_MAX_AGE=0, db_worker reconnects every loop: 2.3x slower).
        "env": {"BENCH_DJ_CONN_MAX_AGE": "None"},
    },
}


JOB_TABLE = "django_durable_jobs_job"

#: ``n`` READY no-op jobs in one statement (what enqueue_many writes, without the Python side).
BACKLOG_SQL = f"""
INSERT INTO {JOB_TABLE} (name, queue, priority, status, args, kwargs, errors, attempts,
    max_attempts, run_at, enqueued_at, lease_token, unique_states, waiting_for, meta)
SELECT 'noop', 'default', 0, 'READY', jsonb_build_array(g), '{{}}'::jsonb, '[]'::jsonb, 0, 5,
       now(), now(), 0, 0, 0, '{{}}'::jsonb
FROM generate_series(1, %s) AS g
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- virtualenvs


def venv_python(system: str, spec: dict | None = None) -> Path:
    return VENVS / (spec or SYSTEMS[system])["venv"] / "bin" / "python"


def running_in(python: Path) -> bool:
    """Is this process the virtualenv of ``python`` (not merely another venv, such as .venv)?"""
    return Path(sys.prefix).resolve() == python.parent.parent.resolve()


def ensure_venv(system: str, spec: dict | None = None) -> Path:
    """Create (or refresh, when its package list changed) the virtualenv of ``system``.

    ``spec`` (``venv`` and ``packages``, as in SYSTEMS) is for virtualenvs that are not
    one of run.py's PostgreSQL systems (bench/mariadb.py's).
    """
    spec = spec or SYSTEMS[system]
    path = VENVS / spec["venv"]
    stamp = path / ".bench-packages"
    wanted = json.dumps(spec["packages"])
    if stamp.exists() and stamp.read_text() == wanted and (path / "bin" / "python").exists():
        compile_sources(path / "bin" / "python")
        return path / "bin" / "python"
    log(f"creating virtualenv {path} ({' '.join(spec['packages'])})")
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([PY312, "-m", "venv", str(path)], check=True)
    pip = [
        str(path / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *spec["packages"]], check=True)
    stamp.write_text(wanted)
    compile_sources(path / "bin" / "python")
    return path / "bin" / "python"


def compile_sources(python: Path) -> None:
    """Write the bytecode of our package and of the harness, as pip does for a wheel.

    Where PYTHONDONTWRITEBYTECODE is set (sandboxes, many containers), our editable
    install would otherwise be compiled from source at every worker start (about
    60 ms of the spawn -> first job time), which the peers, installed from wheels
    with their bytecode, never pay. compileall writes whatever that variable says.
    """
    sources = [ROOT / "django_durable_jobs", BENCH / "project", BENCH / "adapters"]
    subprocess.run([str(python), "-m", "compileall", "-q", *map(str, sources)], check=True)
    subprocess.run([str(python), "-m", "compileall", "-q", "-l", str(BENCH)], check=True)


# --------------------------------------------------------------------------- PostgreSQL


def _free_port(preferred: int) -> int:
    for port in [preferred, *range(preferred + 1, preferred + 50)]:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port near {preferred}")


class PrivateServer:
    """A throw-away PostgreSQL 15 cluster: durable defaults (fsync, synchronous_commit on).

    Created with initdb in a temporary directory and run as the ``postgres`` user
    (initdb refuses root), on a non-default loopback port. ``stop()`` removes it.
    """

    def __init__(self, port: int | None = None, conf: dict[str, str] | None = None) -> None:
        self.port = _free_port(port or int(os.environ.get("BENCH_PG_PORT", "55433")))
        #: postgresql.conf lines beyond the defaults below (they win: written last).
        self.conf = conf or {}
        self.dir = Path(tempfile.mkdtemp(prefix="ddj-bench-pg-"))
        self.data = self.dir / "data"
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _as_postgres(self, *argv: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def start(self) -> PrivateServer:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            self._as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# bench/: a private server, durable defaults (fsync, synchronous_commit on)\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                "unix_socket_directories = ''\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "fsync = on\nsynchronous_commit = on\n"
            )
            conf.writelines(f"{key} = {value}\n" for key, value in self.conf.items())
        subprocess.run(
            self._as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "pg.log"),
                "-w",
                "start",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.running = True
        atexit.register(self.stop)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: sys.exit(1))
        log(f"private PostgreSQL on 127.0.0.1:{self.port} ({self.data})")
        return self

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        subprocess.run(
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)
        log("private PostgreSQL stopped and removed")


@contextlib.contextmanager
def private_server():
    """The server given by BENCH_PG_URL, or a private one started (and removed) here."""
    if os.environ.get("BENCH_PG_URL"):
        yield os.environ["BENCH_PG_URL"].rstrip("/")
        return
    server = PrivateServer().start()
    try:
        yield server.url
    finally:
        server.stop()


# --------------------------------------------------------------------------- systems


def system_env(system: str, pg_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(SYSTEMS[system].get("env", {}))
    env["BENCH_PG_URL"] = pg_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def ddj_env(pg_url: str, db: str, **extra: str) -> dict[str, str]:
    """The environment of our bench project's Django (runworker, migrate) on database ``db``."""
    return system_env(
        "durable_jobs",
        pg_url,
        BENCH_DSN=f"{pg_url}/{db}",
        DJANGO_SETTINGS_MODULE="bench_ddj_settings",
        PYTHONPATH=str(BENCH / "project"),
        **extra,
    )


def fresh_ddj_database(pg_url: str, db: str) -> dict[str, str]:
    """Database ``db`` created anew with our migrations applied; returns its ``ddj_env``.

    Run from our virtualenv (psycopg, Django).
    """
    import psycopg

    with psycopg.connect(f"{pg_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
        conn.execute(f'CREATE DATABASE "{db}"')
    env = ddj_env(pg_url, db)
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=env, check=True)
    return env


def run_runner(system: str, pg_url: str, results: Path, **extra: str) -> dict:
    """One ``runner.py`` pass of the shared harness for ``system``; returns its result JSON."""
    results.mkdir(parents=True, exist_ok=True)
    before = set(results.glob(f"{system}-*.json"))
    env = system_env(system, pg_url, BENCH_RESULTS=str(results), **extra)
    cmd = [str(venv_python(system)), str(BENCH / "peer_runner.py"), system]
    out = results / f"{system}.log"
    with open(out, "a") as log_file:
        proc = subprocess.run(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, check=False)
    new = sorted(set(results.glob(f"{system}-*.json")) - before)
    if proc.returncode or not new:
        raise RuntimeError(f"{system}: runner.py failed (exit {proc.returncode}); see {out}")
    return json.loads(new[-1].read_text())
