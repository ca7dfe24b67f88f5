"""Helpers of the backend contract suite: prepared jobs, claims, outcomes, racing threads.

Every test talks to ``get_backend("default")`` on the database of the run
(``TEST_DB``); arranging a state the API cannot reach (a lease in the past, a
paused queue) goes through the ORM, which is vendor-neutral.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connections

from django_durable_jobs.constants import AttemptOutcome, JobStatus
from django_durable_jobs.db import ClaimedJob, Outcome, get_backend
from django_durable_jobs.models import Job
from django_durable_jobs.rows import PreparedJob
from tests.testapp.jobs import add

ALIAS = "default"


def prepared(tag: Any = 0, **fields: Any) -> PreparedJob:
    """A job as ``enqueue`` prepares it (``add(tag, 0)``), with ``fields`` replaced."""
    return dataclasses.replace(add.prepare(tag, 0), **fields)


def insert(*jobs: PreparedJob) -> list[int | None]:
    return get_backend(ALIAS).insert(list(jobs), notify=False)


def insert_one(tag: Any = 0, **fields: Any) -> int:
    (job_id,) = insert(prepared(tag, **fields))
    assert job_id is not None
    return job_id


def claim(
    *,
    worker: uuid.UUID | None = None,
    queues: list[str] | None = None,
    limit: int = 100,
    lease: float = 60,
) -> list[ClaimedJob]:
    return get_backend(ALIAS).claim(
        worker_id=worker or uuid.uuid4(), queues=queues, limit=limit, lease_seconds=lease
    )


def claim_ids(**kwargs: Any) -> list[int]:
    return [job.id for job in claim(**kwargs)]


def succeed(job: ClaimedJob, result: str = "3") -> Outcome:
    return Outcome(job, JobStatus.SUCCESSFUL, result_json=result, duration=0.1)


def error(attempt: int, message: str = "boom") -> dict[str, Any]:
    """A history entry of a failed attempt (``FAILED_ATTEMPT_OUTCOMES``)."""
    return {
        "attempt": attempt,
        "outcome": AttemptOutcome.ERROR.value,
        "exception_class": "builtins.ValueError",
        "message": message,
        "traceback": None,
    }


def give_back(**kwargs: Any) -> list[tuple[int, str, bool]]:
    options: dict[str, Any] = {
        "limit": 100,
        "outcome": AttemptOutcome.WORKER_LOST.value,
        "message": "worker lost",
        "final_message": "worker lost, no attempt left",
    }
    return get_backend(ALIAS).give_back(**{**options, **kwargs})


def row(job_id: int) -> Job:
    return Job.objects.using(ALIAS).get(id=job_id)


def now() -> datetime:
    return get_backend(ALIAS).db_now()


def expire_leases(*job_ids: int) -> None:
    """Move these jobs' leases into the past (their worker stopped heartbeating)."""
    Job.objects.using(ALIAS).filter(id__in=job_ids).update(
        lease_expires_at=now() - timedelta(seconds=60)
    )


def close_to(value: datetime | None, expected: datetime, seconds: float = 5.0) -> bool:
    return value is not None and abs((value - expected).total_seconds()) <= seconds


def in_threads(count: int, work: Callable[[int], Any], *, timeout: float = 60) -> list[Any]:
    """Run ``work(index)`` in ``count`` threads started together; their results, in order.

    Each thread has its own database connection (Django's are per thread) and
    closes it when done: PostgreSQL allows only so many. An exception in a
    thread fails the test.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), (
        f"threads still running after {timeout}s"
    )
    if errors:
        raise errors[0]
    return results


class Holder:
    """Another connection (a thread) that holds a write on a job's row in an open transaction.

    PostgreSQL and MySQL lock the row; SQLite's one write lock is taken for the
    whole database. ``release()`` commits (or ``rollback=True``) and waits for the thread.
    """

    def __init__(self, job_id: int, *, rollback: bool = False, timeout: float = 15) -> None:
        from django.db import transaction
        from django.db.models import F

        self._locked = threading.Event()
        self._release = threading.Event()
        self._error: list[BaseException] = []

        def hold() -> None:
            try:
                with transaction.atomic(using=ALIAS):
                    Job.objects.using(ALIAS).filter(id=job_id).update(priority=F("priority"))
                    self._locked.set()
                    self._release.wait(timeout)
                    if rollback:
                        transaction.set_rollback(True, using=ALIAS)
            except BaseException as exc:
                self._error.append(exc)
            finally:
                self._locked.set()
                connections.close_all()

        self._thread = threading.Thread(target=hold)

    def __enter__(self) -> Holder:
        self._thread.start()
        assert self._locked.wait(15)
        if self._error:
            raise self._error[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self._error:
            raise self._error[0]
