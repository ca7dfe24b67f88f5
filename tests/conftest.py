"""Shared fixtures: real worker subprocesses, waiting on database state, vendor markers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


#: Django's vendor name for each TEST_DB (tests/settings.py).
VENDORS = {"postgres": "postgresql", "mariadb": "mysql", "sqlite": "sqlite"}


def pytest_collection_modifyitems(config, items):
    vendor = VENDORS.get(os.environ.get("TEST_DB", "sqlite"), "sqlite")
    for item in items:
        if vendor != "postgresql" and item.get_closest_marker("postgres_only"):
            item.add_marker(
                pytest.mark.skip(reason="needs PostgreSQL (runs in the PostgreSQL pass)")
            )
        if vendor != "mysql" and item.get_closest_marker("mariadb_only"):
            item.add_marker(pytest.mark.skip(reason="needs MariaDB (runs in the MariaDB pass)"))
        if vendor == "sqlite" and item.get_closest_marker("concurrent_writers"):
            item.add_marker(
                pytest.mark.skip(
                    reason="needs concurrent writers (runs in the PostgreSQL and MariaDB passes)"
                )
            )


def wait_for(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05):
    """Poll ``condition`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


def wait_until_started(handle, timeout: float = 20.0) -> None:
    """Wait until the job's row shows that an attempt started (its start mark).

    A worker killed before that gives the job back uncounted (docs/topics/lifecycle.md):
    tests about a started attempt being lost wait for this first.
    """
    from django_durable_jobs.models import Job

    wait_for(
        lambda: Job.objects.filter(
            id=handle.id, status="RUNNING", started_at__isnull=False
        ).exists(),
        timeout=timeout,
    )


class WorkerProcess:
    """A ``manage.py runworker`` subprocess on the test database."""

    def __init__(
        self,
        args: list[str],
        settings: dict | None,
        log_path: Path,
        env: dict | None = None,
        new_session: bool = False,
    ) -> None:
        env = {
            **os.environ,
            **(env or {}),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DDJ_USE_TEST_DB": "1",
            "DDJ_TEST_SETTINGS": json.dumps(settings or {}),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            # SIGABRT (sent by wait() on a timeout) dumps every thread's stack to the log.
            "PYTHONFAULTHANDLER": "1",
        }
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "runworker", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,  # its own process group (killpg)
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code; on a timeout, fail with the worker's log and thread stacks."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            pytest.fail(
                f"worker did not exit within {timeout}s; its log:\n{self.output()[-20000:]}"
            )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker subprocesses: ``start_worker("--burst", settings={...})``."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, settings: dict | None = None, env: dict | None = None, new_session=False
    ) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(list(args), settings, log_path, env, new_session)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def _reset_settings_cache():
    from django_durable_jobs.conf import app_settings

    app_settings.reset()
    yield
    app_settings.reset()
