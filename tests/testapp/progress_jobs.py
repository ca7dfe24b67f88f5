"""Jobs that report progress (tests/worker/test_progress.py)."""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async

from django_durable_jobs import current_job, job
from tests.testapp.models import Counter

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task


def _released(key: str) -> bool:
    return Counter.objects.filter(key=key, value__gte=1).exists()


def _wait_for_release(key: str, timeout: float = 20.0) -> None:
    """Hold the job RUNNING until the test bumps the counter ``key``."""
    deadline = time.monotonic() + timeout
    while not _released(key) and time.monotonic() < deadline:
        time.sleep(0.02)


@job(max_attempts=1)
def burst_then_wait(key: str, count: int) -> str:
    """``count`` values in a few milliseconds (one write), then wait, then return."""
    context = current_job()
    assert context is not None
    for done in range(1, count + 1):
        context.set_progress(done, count, f"row {done}")
    _wait_for_release(key)
    return "done"


@job(max_attempts=1)
def step_by_step(key: str) -> str:
    """One value, wait for the test, the final value, return at once (within the second)."""
    context = current_job()
    assert context is not None
    context.set_progress(3, 10, "third")
    _wait_for_release(key)
    context.set_progress(10, 10, "all done")
    return "done"


@job(max_attempts=1)
async def async_reports(key: str) -> str:
    """From an event loop: no database call on the loop's thread (it would raise)."""
    context = current_job()
    assert context is not None
    context.set_progress(2, 4, "async")  # handed to the job's thread, not awaited
    await asyncio.sleep(0)
    while not await sync_to_async(_released)(key):
        await asyncio.sleep(0.02)
    for done in range(3, 5):
        await context.aset_progress(done, 4, "async")  # the second is throttled
    return "done"


@job(max_attempts=1, timeout=1.0)
def burst_then_hang(count: int) -> None:
    """Runs into its timeout: the watchdog records it, and the last value with it."""
    context = current_job()
    assert context is not None
    for done in range(1, count + 1):
        context.set_progress(done, count)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)


@job(max_attempts=1, atomic=True)
def atomic_reports(key: str, count: int) -> str:
    """Inside its own transaction: nothing written until the success commits with it."""
    Counter.objects.create(key=key)
    context = current_job()
    assert context is not None
    for done in range(1, count + 1):
        context.set_progress(done, count)
    return "done"


@job(max_attempts=2)
def reports_then_fails(count: int) -> None:
    context = current_job()
    assert context is not None
    for done in range(1, count + 1):
        context.set_progress(done, count * 2, "half way")
    raise ValueError("broken half way")


@job(max_attempts=1)
def bad_progress(done: float, total: float | None) -> None:
    context = current_job()
    assert context is not None
    context.set_progress(done, total)


@task
def task_reports(count: int) -> int:
    context = current_job()
    assert context is not None
    for done in range(1, count + 1):
        context.set_progress(done, count, "task")
    return count
