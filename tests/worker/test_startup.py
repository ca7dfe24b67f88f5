"""Start-up: what a worker imports, and its background threads starting after the first claim.

The heartbeat, listener and scheduler threads start once the first jobs have
run (or the first claim found none), so their connections do not compete with
the first jobs; ``BACKGROUND_DELAY`` bounds that wait, so a long first job
never leaves its worker without a heartbeat.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job, Worker
from tests.conftest import wait_for
from tests.testapp import jobs

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_long_first_job_still_has_its_lease_renewed(start_worker, tmp_path):
    # One slot, and more jobs than it: after the first claim the pool is full, so only
    # BACKGROUND_DELAY starts the heartbeat before the first job ends (3 s from now).
    marker = tmp_path / "running"
    first = jobs.sleeper.enqueue(3.0, str(marker))
    for _ in range(3):
        jobs.sleeper.enqueue(3.0)
    worker = start_worker("--concurrency", "1", settings={"HEARTBEAT_INTERVAL": 0.2})
    wait_for(marker.exists)
    claimed = Job.objects.get(id=first.id)
    wait_for(
        lambda: Job.objects.get(id=first.id).lease_expires_at > claimed.lease_expires_at,
        timeout=2,
    )
    assert Job.objects.get(id=first.id).status == JobStatus.RUNNING
    assert Worker.objects.filter(pid=worker.pid).exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


@pytest.mark.postgres_only
def test_a_job_enqueued_while_the_first_ones_run_is_not_left_for_the_poll(start_worker):
    """The listener starts after the first claim; once listening it wakes the claimer."""
    for _ in range(20):
        jobs.noop.enqueue()
    worker = start_worker("--poll-interval", "30")
    wait_for(lambda: not Job.objects.exclude(status=JobStatus.SUCCESSFUL).exists())
    late = jobs.add.enqueue(1, 2)
    wait_for(lambda: Job.objects.get(id=late.id).status == JobStatus.SUCCESSFUL, timeout=5)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


#: A fresh process: django.setup() of the test project, then runworker's module and checks.
IMPORTS = """
import json, sys
import django
django.setup()
from django.core.management import load_command_class
from django.core import checks
load_command_class("django_durable_jobs", "runworker")
checks.run_checks(tags=["models", "compatibility"])
ours = ("django_durable_jobs", "django.tasks")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(ours))))
"""


def loaded_modules(tmp_path: Path, settings_text: str) -> set[str]:
    (tmp_path / "startup_settings.py").write_text(settings_text)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "startup_settings",
        "DDJ_USE_TEST_DB": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    out = subprocess.run(
        [sys.executable, "-c", IMPORTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_a_worker_does_not_import_what_only_the_admin_and_the_cli_use(tmp_path):
    loaded = loaded_modules(tmp_path, "from tests.settings import *  # noqa\n")
    assert "django_durable_jobs.admin" in loaded  # autodiscovered, as in any project
    assert "django_durable_jobs.worker.process" in loaded
    unused = {
        "django_durable_jobs.worker.supervisor",  # only with --processes
        "django_durable_jobs.operations.jobs",  # the admin's actions, when one is taken
        "django_durable_jobs.operations.health",
        "django_durable_jobs.operations.job_history",
        "django_durable_jobs.operations.retention",
    }
    assert not unused & loaded


def test_without_tasks_settings_django_tasks_is_not_imported(tmp_path):
    """TASKS left at Django's default: nothing of the project's to check."""
    loaded = loaded_modules(
        tmp_path,
        "from tests.settings import *  # noqa\n"
        "del TASKS\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'django_tasks']\n",
    )
    assert "django_durable_jobs.tasks_checks" in loaded
    assert not {m for m in loaded if m.startswith("django.tasks")}


def test_with_tasks_settings_django_tasks_is_checked(tmp_path):
    import django

    loaded = loaded_modules(tmp_path, "from tests.settings import *  # noqa\n")
    if django.VERSION >= (6, 0):
        assert "django.tasks.checks" in loaded
    else:  # the backport's checks, registered by its app
        assert "django_durable_jobs.tasks_checks" in loaded


def test_operations_names_resolve_lazily_to_the_functions():
    import importlib

    from django_durable_jobs import operations

    for name in operations.__all__:
        assert getattr(operations, name) is not None
    importlib.import_module("django_durable_jobs.operations.job_history")
    assert callable(operations.history)
    assert operations.history.__module__ == "django_durable_jobs.operations.job_history"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        operations.nope  # noqa: B018
