"""Write the Sphinx inventories (objects.inv format) of the Django and Python pages we link to.

The docs build must work without network access, so instead of fetching the full
inventories we list the few targets the docs use. Add a line here when a page needs
a new one, then run ``python docs/_inventories/make_inventories.py``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).parent

DJANGO = [
    # (name, domain:role, uri relative to https://docs.djangoproject.com/en/stable/, display)
    ("django.db.transaction.atomic", "py:function", "topics/db/transactions/#$", "-"),
    ("django.db.transaction.on_commit", "py:function", "topics/db/transactions/#$", "-"),
    ("django.test.TestCase", "py:class", "topics/testing/tools/#$", "-"),
    ("django.test.TransactionTestCase", "py:class", "topics/testing/tools/#$", "-"),
    (
        "django.test.TestCase.captureOnCommitCallbacks",
        "py:method",
        "topics/testing/tools/#$",
        "-",
    ),
    ("django.tasks.task", "py:function", "ref/tasks/#$", "-"),
    ("django.tasks.Task", "py:class", "ref/tasks/#$", "-"),
    ("django.tasks.TaskResult", "py:class", "ref/tasks/#$", "-"),
    ("django.tasks.TaskContext", "py:class", "ref/tasks/#$", "-"),
    ("django.tasks.TaskResultStatus", "py:class", "ref/tasks/#$", "-"),
    ("django.tasks.backends.base.BaseTaskBackend", "py:class", "ref/tasks/#$", "-"),
    ("django.tasks.signals.task_enqueued", "py:data", "ref/signals/#$", "-"),
    ("django.tasks.signals.task_started", "py:data", "ref/signals/#$", "-"),
    ("django.tasks.signals.task_finished", "py:data", "ref/signals/#$", "-"),
    ("django.dispatch.Signal", "py:class", "topics/signals/#$", "-"),
    # Settings, as labels: {ref}`django:std-setting-TASKS`.
    ("std-setting-TASKS", "std:label", "ref/settings/#$", "TASKS"),
    ("std-setting-DATABASES", "std:label", "ref/settings/#$", "DATABASES"),
    ("std-setting-LOGGING", "std:label", "ref/settings/#$", "LOGGING"),
    (
        "std-setting-SILENCED_SYSTEM_CHECKS",
        "std:label",
        "ref/settings/#$",
        "SILENCED_SYSTEM_CHECKS",
    ),
    ("ref/checks", "std:doc", "ref/checks/", "System check framework"),
    ("topics/async", "std:doc", "topics/async/", "Asynchronous support"),
    ("topics/tasks", "std:doc", "topics/tasks/", "Tasks"),
    ("topics/logging", "std:doc", "topics/logging/", "Logging"),
]

PYTHON = [
    ("asyncio", "py:module", "library/asyncio.html#module-$", "-"),
    ("logging", "py:module", "library/logging.html#module-$", "-"),
    ("datetime.datetime", "py:class", "library/datetime.html#$", "-"),
    ("datetime.timedelta", "py:class", "library/datetime.html#$", "-"),
]


def write(path: Path, project: str, version: str, entries: list[tuple[str, str, str, str]]):
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} {role} 1 {uri} {display}\n" for name, role, uri, display in entries)
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
    write(HERE / "django.inv", "Django", "stable", DJANGO)
    write(HERE / "python.inv", "Python", "3", PYTHON)
