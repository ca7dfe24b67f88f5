"""The completer's bounded queue holds back executors, never the watchdog's start marks."""

from __future__ import annotations

import threading
import time

import pytest

from django_durable_jobs.worker.completer import MAX_PENDING, Completer


def test_start_marks_never_wait_behind_a_full_outcome_queue():
    completer = Completer(recorder=None)  # type: ignore[arg-type]  # not started: nothing drains
    for _ in range(MAX_PENDING):
        completer._queue.put_nowait(None)  # as full as a stalled database leaves it
    marked = threading.Event()

    def watchdog() -> None:
        completer.mark_started([(1, 7, 0.5)])
        marked.set()

    threading.Thread(target=watchdog, daemon=True).start()
    assert marked.wait(2), "mark_started() waited for room in the outcome queue"
    assert completer._marks == [(1, 7, 0.5)]


@pytest.mark.django_db(transaction=True)
def test_a_start_mark_that_waited_for_its_batch_keeps_the_real_start_time():
    """The mark carries when the attempt started; its age is taken when it is written."""
    from django_durable_jobs.constants import JobStatus
    from django_durable_jobs.db import get_backend
    from django_durable_jobs.worker.recorder import Recorder
    from tests.factories import make_job

    job = make_job(JobStatus.RUNNING, lease_token=3, started_at=None)
    backend = get_backend("default")
    completer = Completer(recorder=Recorder(backend))
    started = time.monotonic() - 2.0  # the attempt began 2 s ago...
    time.sleep(0.5)  # ...and its mark waited half a second for the next batch
    completer._mark([(job.id, 3, started)], finishing=set())
    job.refresh_from_db()
    age = (backend.db_now() - job.started_at).total_seconds()
    assert 2.4 <= age < 4.0  # not 2.0: the wait is counted
