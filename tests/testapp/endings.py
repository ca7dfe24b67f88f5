"""One job per way an attempt can end (tests/worker/test_endings.py runs each everywhere)."""

from __future__ import annotations

import time

from django.db import connection, transaction
from django.db.models import F

from django_durable_jobs import Cancel, FixedDelay, Retry, current_job, job
from tests.testapp.models import Counter

NOW = FixedDelay(0.0)


def _bump(key: str) -> None:
    Counter.objects.filter(key=key).update(value=F("value") + 1)


@job(max_attempts=2, retry=NOW)
def succeeds(key: str) -> str:
    _bump(key)
    return "done"


@job(max_attempts=2, retry=NOW)
def follow_up(key: str) -> str:
    _bump(key)
    return "followed"


@job(max_attempts=2, retry=NOW)
def raises(key: str) -> None:
    _bump(key)
    raise ValueError("broken on purpose")


@job(max_attempts=2, retry=NOW)
def asks_for_a_retry(key: str) -> str:
    _bump(key)
    context = current_job()
    assert context is not None
    if context.attempt == 1:
        raise Retry(delay=0)
    return "second time lucky"


@job(max_attempts=2, retry=NOW)
def cancels_itself(key: str) -> None:
    _bump(key)
    raise Cancel("no longer needed")


@job(max_attempts=1, timeout=0.5)
def times_out(key: str) -> None:
    """Loops in Python (short sleeps), so an inline run's timeout can interrupt it too."""
    _bump(key)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.01)


@job(max_attempts=2, retry=NOW)
def returns_the_unstorable(key: str) -> object:
    _bump(key)
    return object()


@job(max_attempts=1)
def leaves_atomic_open(key: str) -> str:
    """Enters an atomic block and never leaves it; the write inside must be rolled back."""
    transaction.atomic().__enter__()
    _bump(key)
    return "returned with a transaction open"


@job(max_attempts=1)
def leaves_begin_open(key: str) -> str:
    """Starts a transaction with raw SQL and returns; the write inside must be rolled back."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
    _bump(key)
    return "returned with a BEGIN open"


@job(max_attempts=1)
def watches_for_cancel(seconds: float) -> bool:
    """Runs across several heartbeats; returns whether a cancel was ever requested."""
    context = current_job()
    assert context is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if context.cancel_requested:
            return True
        time.sleep(0.02)
    return False


@job(max_attempts=2, retry=NOW)
def fails_once(key: str) -> str:
    """Raises on its first attempt, succeeds on the second."""
    _bump(key)
    context = current_job()
    assert context is not None
    if context.attempt == 1:
        raise ValueError("first attempt fails on purpose")
    return "second time lucky"


@job(max_attempts=1, retry=NOW)
def snoozes_once(key: str, seconds: float = 0.3) -> str:
    """Not ready on its first run: snoozes. One attempt only: a counted snooze would fail it."""
    from django_durable_jobs import Snooze

    _bump(key)
    if Counter.objects.get(key=key).value == 1:
        raise Snooze(seconds, "the export is not ready")
    return "ready now"
