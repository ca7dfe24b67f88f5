"""``python -m django runworker ...`` with timestamps at each start-up step (bench/startup.py).

    python startup_probe.py MARKS.json runworker --concurrency 8

What ``python -m django`` does (``execute_from_command_line``), with the steps
wrapped: ``django.setup()`` (split into the apps' modules and models, and each
app's ``ready()``), loading the command's module, the system checks, the
worker's construction, its registration (the first connection and the worker
row), its threads, the first claim and the first outcome batch written. Each
mark is ``time.time()``, so the parent can put its spawn instant in front, and
the process's CPU time (``time.process_time()``, every thread, from exec); the
marks are written to MARKS.json once the first outcome is committed.
"""

from __future__ import annotations

import time

T0, CPU0 = time.time(), time.process_time()

import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

#: (step, wall clock, CPU seconds of the whole process since it started)
MARKS: list[tuple[str, float, float]] = [("probe starts", T0, CPU0)]
_lock = threading.Lock()
_done = False


def mark(name: str) -> None:
    with _lock:
        MARKS.append((name, time.time(), time.process_time()))


def dump() -> None:
    global _done
    with _lock:
        if _done:
            return
        _done = True
        data = list(MARKS)
    with open(sys.argv[1], "w") as f:
        json.dump(data, f)


def wrap(owner: object, attr: str, before: str | None, after: str | None, once: bool = True):
    original = getattr(owner, attr)
    seen = []

    def wrapper(*args, **kwargs):
        first = not seen
        seen.append(1)
        if before and (first or not once):
            mark(before)
        result = original(*args, **kwargs)
        if after and (first or not once):
            mark(after)
        return result

    setattr(owner, attr, wrapper)
    return original


def main() -> None:
    import django.core.management as management

    mark("import django.core.management")
    import django
    from django.apps.config import AppConfig

    wrap(django, "setup", "django.setup() starts", "django.setup() ends")

    create = AppConfig.create.__func__
    readies: list[str] = []

    def timed_create(cls, entry):
        config = create(cls, entry)
        ready = config.ready

        def timed_ready():
            if not readies:
                mark("apps and models imported")
            readies.append(config.label)
            ready()
            mark(f"ready() {config.label}")

        config.ready = timed_ready
        return config

    AppConfig.create = classmethod(timed_create)

    def load(app_name: str, name: str):
        mark("command module import starts")
        command = original_load(app_name, name)
        mark("command module imported")
        instrument_worker()
        return command

    original_load = management.load_command_class
    management.load_command_class = load

    from django.core.management.base import BaseCommand

    wrap(BaseCommand, "check", "system checks start", "system checks end")
    management.execute_from_command_line(["django", *sys.argv[2:]])


def instrument_worker() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from django_durable_jobs.worker import pool, process, recorder

    wrap(process.Worker, "__init__", "Worker() starts", "Worker() built")
    wrap(process.Worker, "_register", "register starts", "worker row written")
    wrap(BaseDatabaseWrapper, "connect", "first connect starts", "first connection open")
    wrap(pool.JobPool, "start", None, "executor pool started")
    wrap(process.Worker, "_claim", "first claim starts", "first claim returned")
    record = recorder.Recorder.record

    def timed_record(self, outcomes):
        mark("first outcome write starts")
        written = record(self, outcomes)
        mark("first outcome committed")
        dump()
        recorder.Recorder.record = record
        return written

    recorder.Recorder.record = timed_record


if __name__ == "__main__":
    main()
