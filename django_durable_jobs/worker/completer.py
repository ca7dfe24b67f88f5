"""Batched, fenced outcome writes: one statement for many finished jobs.

Per-job claim and completion is commit-bound (about 1,800 jobs/s in raw SQL on
a small machine); batching is what makes a database queue fast. Executor
threads hand outcomes to the completer and move on to their next job; the
completer thread writes whatever has accumulated in one statement, so batches
grow by themselves while a write is in flight, and no outcome waits for a
timer. The queue is bounded: when the database is slow, executor threads wait
instead of piling up outcomes in memory.

The completer also writes *start marks*: the evidence that a job claimed
ahead really started (see ``pool.py``), for jobs the watchdog found running;
a mark whose job's outcome is in the same batch is dropped (the outcome marks it).

Guarantee kept: every write is still conditional on the job's lease token.
What it costs: outcomes that a killed process had not written yet (at most a
few milliseconds' worth) are lost with it, so those jobs run again after their
lease expires — the at-least-once promise, with a slightly larger window.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Literal

from ..connections import close_all
from ..rows import Outcome
from .recorder import Recorder, Written, log_outcome

logger = logging.getLogger("django_durable_jobs.worker")

#: Most outcomes written by one statement.
MAX_BATCH = 500
#: Most outcomes waiting to be written before executor threads wait: one batch, queued
#: while the one before it is written. More buys nothing (when outcomes come faster than
#: the completer writes them, batches are full either way) and costs memory: each one
#: holds its job's row, so a 2,000-deep queue kept the worker 1.5 MB higher on a
#: 100,000-job drain (bench/startup.py).
MAX_PENDING = MAX_BATCH


class Ticket:
    """An executor's claim on its outcome's write: wait for it, then learn if it happened."""

    __slots__ = ("_done", "written")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.written = Written()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def done(self, written: Written) -> None:
        self.written = written
        self._done.set()


#: A start mark: ``(job id, lease token, time.monotonic() when the attempt started)``; its
#: age is taken when it is written, so a mark that waited for the next batch is not late.
Mark = tuple[int, int, float]


class Completer:
    """A thread that writes outcomes in batches (see the module docstring).

    ``on_written(outcomes)`` is called after each batch, written or not (a
    forced stop gives up); ``on_drained`` when nothing is left to write.
    """

    def __init__(
        self,
        recorder: Recorder,
        *,
        on_written: Callable[[list[Outcome]], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self.recorder = recorder
        self.on_written = on_written
        self.on_drained = on_drained
        # Outcomes with their tickets; "wake" (start marks are waiting); None: stop.
        self._queue: queue.Queue[tuple[Outcome, Ticket | None] | Literal["wake"] | None] = (
            queue.Queue(MAX_PENDING)
        )
        self._marks: list[Mark] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(
            target=self._run, name="durable-jobs-completer", daemon=True
        )
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def submit(self, outcome: Outcome, *, wait: bool = False) -> Ticket | None:
        """Queue an outcome; with ``wait``, a ticket to wait on for its write."""
        ticket = Ticket() if wait else None
        with self._lock:
            self._pending += 1
        self._queue.put((outcome, ticket))
        return ticket

    def mark_started(self, marks: list[Mark]) -> None:
        """Queue start marks (written with the next batch; never waited for).

        Kept beside the bounded outcome queue, not in it: the watchdog calls this,
        and must not wait behind a full queue (a slow database) to enforce timeouts.
        """
        with self._lock:
            self._marks.extend(marks)
        with contextlib.suppress(queue.Full):  # a full queue wakes the completer anyway
            self._queue.put_nowait("wake")

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every submitted outcome is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the thread."""
        if not self._started:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                item = self._queue.get()
                batch: list[tuple[Outcome, Ticket | None]] = []
                while True:
                    if item is None:
                        stopping = True
                    elif item != "wake":
                        batch.append(item)
                    if stopping or len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                with self._lock:
                    marks, self._marks = self._marks, []
                if marks:
                    self._mark(marks, {outcome.job.id for outcome, _ in batch})
                if batch:
                    self._write(batch)
        finally:
            close_all()

    def _mark(self, marks: list[Mark], finishing: set[int]) -> None:
        """Write start marks, except for jobs whose outcome (which marks them too) is here."""
        now = time.monotonic()
        ages = [(job_id, token, now - started) for job_id, token, started in marks]
        ages = [mark for mark in ages if mark[0] not in finishing]
        if not ages:
            return
        try:
            self.recorder.backend.mark_started(ages)
        except Exception:
            # Only evidence for a rescue: without it, a lost job runs again uncounted.
            logger.warning("writing %s start mark(s) failed", len(marks), exc_info=True)

    def _write(self, batch: list[tuple[Outcome, Ticket | None]]) -> None:
        outcomes = [outcome for outcome, _ in batch]
        written = Written()
        try:
            written = self.recorder.record(outcomes)
            for outcome in outcomes:
                log_outcome(outcome)
        except Exception:
            # The recorder retries outages itself; anything else is a bug of ours.
            # The jobs stay RUNNING and come back when their leases expire.
            logger.exception("writing %s outcomes failed", len(batch))
        finally:
            for _, ticket in batch:
                if ticket is not None:
                    ticket.done(written)
            if self.on_written is not None:
                self.on_written(outcomes)
            with self._idle:
                self._pending -= len(batch)
                drained = not self._pending
                if drained:
                    self._idle.notify_all()
            if drained and self.on_drained is not None:
                self.on_drained()  # the worker may be waiting for "all written" (burst, stop)
