"""MariaDB restarted while workers run: every job ends once, nothing is left RUNNING.

A throwaway MariaDB server (its own data directory and port, started as the
``mysql`` user) so that the shared server is never restarted. The test
process talks to it with mysqlclient directly; the workers and the setup
commands are Django processes pointed at it with ``DDJ_TEST_DB_PORT``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for

pytestmark = [pytest.mark.mariadb_only, pytest.mark.slow]

JOBS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ThrowawayMariaDB:
    """A private mariadbd on a free port; ``restart()`` stops it cleanly and starts it again."""

    def __init__(self) -> None:
        if shutil.which("mariadb-install-db") is None or not Path("/usr/sbin/mariadbd").exists():
            pytest.fail("the MariaDB server binaries are needed (Debian: mariadb-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="ddj-mariadb-"))
        self.port = _free_port()
        shutil.chown(self.dir, "mysql", "mysql")
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.dir / "server.log", "ab") as log:
            self.proc = self._spawn(log)
        wait_for(self.answers, timeout=30, interval=0.2)

    def _spawn(self, log) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.dir / 'sock'}",
                f"--pid-file={self.dir / 'pid'}",
                "--user=mysql",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def answers(self) -> bool:
        import MySQLdb

        try:
            MySQLdb.connect(host="127.0.0.1", port=self.port, user="root").close()
        except MySQLdb.Error:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean shutdown, as a service restart does
            self.proc.wait(timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def query(self, database: str, sql: str) -> list[tuple]:
        import MySQLdb

        connection = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", db=database)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            connection.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def server() -> Iterator[ThrowawayMariaDB]:
    instance = ThrowawayMariaDB()
    try:
        yield instance
    finally:
        instance.remove()


def _django(server: ThrowawayMariaDB, *args: str) -> None:
    """A Django command on the throwaway server's copy of the test database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DDJ_USE_TEST_DB": "1",
        "DDJ_TEST_DB_PORT": str(server.port),
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run([sys.executable, "-m", "django", *args], cwd=ROOT, env=env, check=True)


def test_a_server_restart_while_workers_run_ends_every_job_once(server, start_worker):
    from django.conf import settings

    database = settings.DATABASES["default"]["TEST"]["NAME"]
    server.query("mysql", f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    _django(server, "migrate", "--noinput", "-v", "0")
    _django(
        server,
        "shell",
        "-c",
        "from django_durable_jobs import enqueue_many\n"
        "from tests.testapp import jobs\n"
        "from tests.testapp.models import Counter\n"
        f"Counter.objects.bulk_create(Counter(key=f'r-{{i}}') for i in range({JOBS}))\n"
        f"enqueue_many(jobs.slow_db_job.prepare(f'r-{{i}}', 0.2) for i in range({JOBS}))\n",
    )
    env = {"DDJ_TEST_DB_PORT": str(server.port)}
    settings_ = {"LEASE_SECONDS": 3.0, "HEARTBEAT_INTERVAL": 0.5}
    workers = [
        start_worker("--concurrency", "4", "--poll-interval", "0.2", env=env, settings=settings_)
        for _ in range(2)
    ]

    def finished() -> int:
        rows = server.query(
            database, "SELECT count(*) FROM django_durable_jobs_job WHERE status = 'SUCCESSFUL'"
        )
        return rows[0][0]

    wait_for(lambda: finished() >= 8, timeout=60)
    server.restart()  # mid-drain: jobs running, outcomes in flight
    restarted_at = time.monotonic()
    try:
        wait_for(lambda: finished() == JOBS, timeout=90)
    except BaseException:
        rows = server.query(
            database,
            "SELECT status, count(*), max(attempts) FROM django_durable_jobs_job GROUP BY status",
        )
        print("statuses:", rows, "\n", workers[0].output()[-6000:])
        raise
    print(f"\nall {JOBS} jobs done {time.monotonic() - restarted_at:.1f}s after the restart")

    statuses = server.query(
        database, "SELECT status, count(*) FROM django_durable_jobs_job GROUP BY status"
    )
    assert statuses == [("SUCCESSFUL", JOBS)]
    counters = [row[0] for row in server.query(database, "SELECT value FROM testapp_counter")]
    assert len(counters) == JOBS
    assert min(counters) >= 2  # every job ran to its end at least once (two writes per run)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()[-5000:]
        log = worker.output()
        assert "database unavailable" in log or "claiming resumed" in log, log[-5000:]
