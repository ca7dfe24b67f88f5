"""The completer's bounded queue holds back executors, never the watchdog's start marks."""

from __future__ import annotations

import threading

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
