"""``manage.py check`` reports TASKS mistakes on every Django version (issue 20, item 6).

Django 6 registers its tasks check only when ``django.tasks`` is imported,
which nothing did at start-up: a misspelled option of our backend, or a
misspelled backend path, passed ``manage.py check`` silently. Each test runs
``check`` in a fresh process, as a user would, so the registration at start-up
is what is tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage_py_check(tmp_path: Path, tasks: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "typo_settings.py").write_text(
        f"from tests.settings import *  # noqa\nTASKS = {tasks}\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "typo_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


OURS = "django_durable_jobs.tasks_backend.DurableJobsBackend"


def test_a_misspelled_option_of_our_backend_is_a_check_error(tmp_path):
    result = manage_py_check(
        tmp_path, f"{{'default': {{'BACKEND': {OURS!r}, 'OPTIONS': {{'max_atempts': 5}}}}}}"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "django_durable_jobs.E020" in output
    assert "unknown option 'max_atempts'" in output
    assert "HINT: The options and their values: https://" in output  # a URL, not a repo file


def test_a_misspelled_backend_path_is_a_check_error_not_a_traceback(tmp_path):
    result = manage_py_check(tmp_path, f"{{'default': {{'BACKEND': {OURS + 'd'!r}}}}}")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "django_durable_jobs.E022" in output
    assert "DurableJobsBackendd" in output
    assert f"backend is {OURS!r}" in output
    assert "Traceback" not in output


def test_good_tasks_settings_pass(tmp_path):
    result = manage_py_check(tmp_path, f"{{'default': {{'BACKEND': {OURS!r}}}}}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
