"""The executor pool: threads that run claimed jobs, and the watchdog that enforces timeouts.

A job past its timeout is handled in three steps, in this order:

1. it is marked timed out, so its thread will not record anything itself;
2. ``JobTimeout`` is raised inside its thread (``PyThreadState_SetAsyncExc``),
   which stops Python code, also a loop that never yields;
3. a replacement thread takes its slot at once, and the timeout is recorded
   (fenced), so the job is retried per its policy even if the thread never
   returns.

A thread stuck in C code (a blocking call without a timeout) cannot be
interrupted; if it is still in the job ``STUCK_GRACE`` seconds after its
timeout, the pool asks for the process to be recycled (see ``Worker``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from . import registry
from .completer import Completer
from .connections import (
    close_all,
    database_writable,
    is_database_unavailable,
    is_read_only_error,
    tidy_connections,
)
from .constants import AttemptOutcome, JobStatus
from .db import Backend, ClaimedJob, Outcome
from .exceptions import JobTimeout, UnknownJob
from .execution import execute, failure_outcome
from .failures import clean_text, history_entry
from .recorder import Recorder, log_outcome

logger = logging.getLogger("django_durable_jobs.worker")

#: Seconds a timed-out job's thread may stay stuck before the process is recycled.
STUCK_GRACE = 5.0
#: Seconds between watchdog checks: the precision of timeouts.
WATCHDOG_INTERVAL = 0.1
#: Delay before a job interrupted by a database outage runs again.
OUTAGE_RETRY_DELAY = 1.0


def raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in another thread at its next bytecode; None clears a pending one."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)
    if changed > 1:  # never happens with a valid id; undo rather than hit several threads
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


def thread_stack(thread_id: int) -> str | None:
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return None
    stack = "".join(traceback.format_stack(frame))
    return clean_text(f"Where the job was when it timed out:\n{stack}", 100_000)


@dataclasses.dataclass(eq=False)
class Slot:
    """A job being run by a thread of the pool."""

    job: ClaimedJob
    thread_id: int
    started: float
    deadline: float | None
    cancel: threading.Event
    in_job: bool = False
    timed_out_at: float | None = None
    stack: str | None = None
    #: The job returned: its outcome is being recorded, so its row may already be final.
    finished: bool = False


class JobPool:
    """``size`` threads taking claimed jobs from a queue; tracks free slots for the claimer."""

    def __init__(
        self,
        *,
        size: int,
        prefetch: int = 0,
        backend: Backend,
        worker_id: uuid.UUID,
        recorder: Recorder,
        on_slot_freed: Callable[[], None],
    ) -> None:
        self.size = size
        self.max_prefetch = prefetch
        self.backend = backend
        self.worker_id = worker_id
        self.recorder = recorder
        self.completer = Completer(recorder, on_drained=on_slot_freed)
        self.on_slot_freed = on_slot_freed
        self.processed = 0
        self.wants_recycle = threading.Event()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._in_flight = 0
        self._slots: dict[int, Slot] = {}
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._watchdog_stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._spawned = 0
        # Moving averages behind the adaptive prefetch (seconds).
        self._job_seconds: float | None = None
        self._claim_seconds = 0.001

    # -- capacity ------------------------------------------------------------
    @property
    def prefetch(self) -> int:
        """Jobs to claim ahead of free threads: what the threads finish during one claim.

        ``size * claim time / job time``, from moving averages, capped by
        ``max_prefetch``: fast jobs are claimed in deep batches (claims stop
        being the bottleneck), slow jobs not ahead at all (no hoarding while
        other workers are idle). None before the first job finishes.
        """
        if not self.max_prefetch or self._job_seconds is None:
            return 0
        ahead = self.size * self._claim_seconds / max(self._job_seconds, 1e-5)
        return min(self.max_prefetch, int(ahead + 0.5))

    def note_claim(self, seconds: float) -> None:
        """Feed the claim round-trip time to the adaptive prefetch."""
        self._claim_seconds += 0.2 * (seconds - self._claim_seconds)

    def free_slots(self) -> int:
        """Jobs to claim now: idle threads plus the prefetch allowance."""
        with self._lock:
            return self.size + self.prefetch - self._in_flight

    def should_claim(self) -> bool:
        """Claim now, or wait for a bigger batch?

        While claimed jobs still wait in the local queue, the threads have work:
        wait until half the capacity is free (fewer, bigger claims). When nothing
        waits, claim at once for whatever is free, so no thread goes idle.
        """
        with self._lock:
            free = self.size + self.prefetch - self._in_flight
            waiting = self._in_flight - len(self._slots)
        return free > 0 and (waiting <= 0 or free >= self._claim_threshold)

    @property
    def _claim_threshold(self) -> int:
        """Half the capacity (threads + prefetch), rounded up."""
        return (self.size + self.prefetch + 1) // 2

    def idle(self) -> bool:
        """No job running and no outcome waiting to be written."""
        with self._lock:
            if self._in_flight:
                return False
        return self.completer.pending == 0

    def running(self) -> list[Slot]:
        """Jobs whose threads are in them now (timed-out ones included)."""
        with self._lock:
            return list(self._slots.values())

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.completer.start()
        for _ in range(self.size):
            self._spawn()
        self._watchdog = threading.Thread(
            target=self._watch, name="durable-jobs-watchdog", daemon=True
        )
        self._watchdog.start()

    def _spawn(self) -> None:
        self._spawned += 1
        thread = threading.Thread(
            target=self._thread_main, name=f"durable-jobs-executor-{self._spawned}", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def submit(self, jobs: list[ClaimedJob]) -> None:
        with self._lock:
            self._in_flight += len(jobs)
        for job in jobs:
            self._queue.put(job)

    def close(self) -> None:
        """Stop starting jobs: queued ones are released by the threads that take them."""
        self._closing.set()

    def release_unfinished(self) -> None:
        """At shutdown: put queued and running jobs back to READY, attempt not counted."""
        self._closing.set()
        leftovers: list[Outcome] = []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                leftovers.append(self._release(job, started=False))
                with self._lock:
                    self._in_flight -= 1
        running = [slot.job for slot in self.running() if slot.timed_out_at is None]
        leftovers += [self._release(job, started=True) for job in running]
        if leftovers:
            written = self.recorder.record(leftovers)
            if running:
                logger.warning(
                    "released %s running job(s) at shutdown: %s",
                    sum(job.id in written for job in running),
                    ", ".join(f"#{job.id}" for job in running),
                )

    def stop(self) -> None:
        """End the threads; outcomes already handed to the completer are written first."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        self._watchdog_stop.set()
        self.completer.stop()

    def cancel(self, job_ids: set[int]) -> None:
        """Tell running jobs (through ``JobContext.cancel_requested``) to stop."""
        with self._lock:
            for job_id in job_ids:
                slot = self._slots.get(job_id)
                if slot is not None:
                    slot.cancel.set()

    # -- running a job ---------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                if self._closing.is_set():
                    self.recorder.record([self._release(job, started=False)])
                    self._free(job, None)
                    continue
                try:
                    if self._run(job):
                        return  # timed out: a replacement thread has this slot now
                except Exception:
                    # A bug of ours must not cost a thread; the job, if unrecorded, is
                    # rescued when its lease expires.
                    logger.exception("internal error while running job #%s", job.id)
        finally:
            close_all()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run(self, job: ClaimedJob) -> bool:
        """Run one job; True when it timed out (this thread then retires)."""
        timeout = job.timeout
        started = time.monotonic()
        slot = Slot(
            job=job,
            thread_id=threading.get_ident(),
            started=started,
            deadline=started + timeout if timeout else None,
            cancel=threading.Event(),
        )
        with self._lock:
            self._slots[job.id] = slot
        outcome: Outcome | None = None
        recorded = False
        try:
            tidy_connections()
            with self._lock:
                slot.in_job = True
            # A JobTimeout landing in the worker's code around the job is handled below.
            with contextlib.suppress(JobTimeout):
                outcome, recorded = execute(
                    job, backend=self.backend, worker_id=self.worker_id, cancel_event=slot.cancel
                )
            if self._leave(slot):
                close_all()  # the job was interrupted: its connections may be mid-protocol
                return True
            slot.finished = True
            assert outcome is not None
            seconds = time.monotonic() - started
            self._note_job(seconds)
            if recorded:
                log_outcome(outcome, seconds)
            else:
                self.completer.submit(self._outage_aware(outcome), seconds)
            return False
        except JobTimeout:
            self._leave(slot)
            close_all()
            return True
        finally:
            if slot.timed_out_at is None:
                self._free(job, slot)
            else:
                with self._lock:
                    self._slots.pop(job.id, None)

    def _leave(self, slot: Slot) -> bool:
        """Mark the slot's thread as out of the job; True if the job timed out meanwhile.

        Once ``in_job`` is false (under the lock), the watchdog never interrupts
        this thread again, and a pending interruption is cleared here; an
        interruption landing during this very call is absorbed by the retry.
        """
        while True:
            try:
                with self._lock:
                    slot.in_job = False
                    if slot.timed_out_at is not None:
                        raise_in_thread(slot.thread_id, None)
                    return slot.timed_out_at is not None
            except JobTimeout:
                continue

    def _note_job(self, seconds: float) -> None:
        previous = self._job_seconds
        self._job_seconds = seconds if previous is None else previous + 0.1 * (seconds - previous)

    def _free(self, job: ClaimedJob, slot: Slot | None) -> None:
        with self._lock:
            if slot is not None:
                self._slots.pop(job.id, None)
            self._in_flight -= 1
            self.processed += 1
            free = self.size + self.prefetch - self._in_flight
            waiting = self._in_flight - len(self._slots)
        # Wake the claimer only when it would claim (see should_claim): about one
        # wake-up per batch rather than per job.
        if waiting <= 0 or free >= self._claim_threshold:
            self.on_slot_freed()

    def _outage_aware(self, outcome: Outcome) -> Outcome:
        """A failure caused by a database outage is an interruption, not an attempt."""
        if outcome.cause is None or outcome.status not in (JobStatus.READY, JobStatus.FAILED):
            return outcome
        if not is_database_unavailable(outcome.cause):
            return outcome  # the job's own error (the common case: no probe needed)
        # A read-only session is never the job's fault, even if the database is
        # writable again by now (the probe reconnects this thread either way).
        writable = database_writable(self.backend.alias)
        if writable and not is_read_only_error(outcome.cause):
            return outcome  # the database answers: the job's own query failed, it counts
        job = outcome.job
        entry = history_entry(
            attempt=job.attempt,
            outcome=AttemptOutcome.INTERRUPTED,
            message="interrupted: the database was unavailable during the job "
            f"({(outcome.error or {}).get('message', '')[:300]}); it will run again "
            "(this attempt is not counted)",
            worker_id=self.worker_id,
        )
        return Outcome(
            job, JobStatus.READY, error=entry, retry_delay=OUTAGE_RETRY_DELAY, uncount=True
        )

    def _release(self, job: ClaimedJob, *, started: bool) -> Outcome:
        """Back to READY without counting the attempt: the job did not fail, we stopped."""
        entry = None
        if started:
            entry = history_entry(
                attempt=job.attempt,
                outcome=AttemptOutcome.INTERRUPTED,
                message="interrupted by shutdown: the worker stopped before the job finished; "
                "it will run again (this attempt is not counted)",
                worker_id=self.worker_id,
            )
        return Outcome(job, JobStatus.READY, error=entry, uncount=True)

    # -- timeouts ----------------------------------------------------------------
    def _watch(self) -> None:
        try:
            while not self._watchdog_stop.wait(WATCHDOG_INTERVAL):
                now = time.monotonic()
                expired: list[Slot] = []
                stuck = False
                with self._lock:
                    for slot in self._slots.values():
                        if slot.timed_out_at is None:
                            if slot.deadline is not None and now >= slot.deadline and slot.in_job:
                                slot.timed_out_at = now
                                slot.stack = thread_stack(slot.thread_id)  # before it unwinds
                                raise_in_thread(slot.thread_id, JobTimeout)
                                expired.append(slot)
                        elif slot.in_job and now - slot.timed_out_at > STUCK_GRACE:
                            stuck = True
                for slot in expired:
                    self._timed_out(slot)
                if stuck and not self.wants_recycle.is_set():
                    logger.error(
                        "a timed-out job's thread is stuck in code that cannot be interrupted; "
                        "recycling this worker process to free it"
                    )
                    self.wants_recycle.set()
                    self.on_slot_freed()
        finally:
            close_all()

    def _timed_out(self, slot: Slot) -> None:
        """Free the slot now, and record the timeout so the job is retried per its policy."""
        job = slot.job
        self._spawn()
        self._free(job, None)
        try:
            definition = registry.get(job.name)
        except UnknownJob:
            definition = None
        exc = JobTimeout(f"timed out after {job.timeout:g}s (the job's timeout)")
        started_at = timezone.now() - timedelta(seconds=time.monotonic() - slot.started)
        outcome = failure_outcome(
            job,
            definition,
            exc,
            worker_id=self.worker_id,
            started_at=started_at.isoformat(),
            traceback_text=slot.stack,
        )
        self.recorder.record([outcome])
        log_outcome(outcome, time.monotonic() - slot.started)
