"""The executor pool: threads that run claimed jobs and hand their outcomes to the completer.

The pool *holds* every job from its claim until its outcome is written (or it
is released): ``held()`` is what the heartbeat renews, by lease token, and
the invariant it checks (every RUNNING row of this worker is a held job).

Jobs claimed ahead of free threads (the prefetch) wait in a local queue. A
claim does not count as a start: a job's row records that it started (its
``started_at``) only once a thread is in it: through the *start mark* the
watchdog sends for each job it finds running at two checks in a row (within
two tenths of a second), or through its outcome. If the process dies, the
rescue charges an attempt only to the jobs with that evidence; the others
(claimed ahead, or lost within their first moments) go back to READY uncounted
and are flagged ``orphaned``. An orphaned job's next attempt writes
its start mark *before* it runs, so a job that kills its worker every time is
charged from its second crash on and ends FAILED; the jobs that were merely
claimed beside it are never charged. (Atomic jobs are marked before they run
too: see ``_marks_first``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from .. import registry
from ..connections import close_all
from ..context import JobContext
from ..db import Backend
from ..exceptions import JobTimeout
from ..meta import ORPHANED
from ..retry import DEFAULT_RETRY
from ..rows import ClaimedJob, Outcome
from . import outcomes
from .completer import Completer
from .execution import context_for, execute
from .outcomes import Attempt
from .prefetch import AdaptivePrefetch
from .recorder import Recorder, log_outcome, wants_announcement
from .watchdog import Watchdog, raise_in_thread

logger = logging.getLogger("django_durable_jobs.worker")


def _expired(expires_at: datetime) -> bool:
    """Is ``expires_at`` past on this host's clock? (A claimed job waits in the local
    queue for a free thread: the claim's own check, on the database clock, was earlier.)"""
    now = timezone.now()
    if timezone.is_aware(expires_at) and timezone.is_naive(now):  # USE_TZ = False
        expires_at = timezone.make_naive(expires_at)
    elif timezone.is_naive(expires_at) and timezone.is_aware(now):
        expires_at = timezone.make_aware(expires_at, UTC)
    return expires_at <= now


@dataclasses.dataclass(eq=False)
class Slot:
    """A job being run by a thread of the pool."""

    job: ClaimedJob
    context: JobContext
    thread_id: int
    started: float
    deadline: float | None
    cancel: threading.Event
    in_job: bool = False
    timed_out_at: float | None = None
    stack: str | None = None
    #: The job returned: its outcome is being recorded, so its row may already be final.
    finished: bool = False
    #: The row says the job started (a start mark was sent, or written before it ran).
    marked: bool = False
    #: The watchdog found it running once already (it marks it the next time).
    seen_running: bool = False

    def attempt(self, worker_id: uuid.UUID) -> Attempt:
        elapsed = time.monotonic() - self.started
        started_at = timezone.now() - timedelta(seconds=elapsed)
        return Attempt(self.job, worker_id, started_at.isoformat())


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
        self.backend = backend
        self.worker_id = worker_id
        self.recorder = recorder
        self.prefetch = AdaptivePrefetch(size, prefetch)
        self.completer = Completer(recorder, on_written=self._forget, on_drained=on_slot_freed)
        self.watchdog = Watchdog(self)
        self.on_slot_freed = on_slot_freed
        self.processed = 0
        self.wants_recycle = threading.Event()
        #: Guards ``slots`` and the counters; the watchdog takes it too.
        self.lock = threading.Lock()
        #: Held by the claimer from a claim to its submit, and by the heartbeat while it
        #: compares this worker's RUNNING rows with ``held()``.
        self.claim_lock = threading.Lock()
        self.slots: dict[int, Slot] = {}
        self._held: dict[int, int] = {}
        self._queue: queue.SimpleQueue[ClaimedJob | None] = queue.SimpleQueue()
        self._in_flight = 0
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._spawned = 0

    # -- capacity ------------------------------------------------------------
    def free_slots(self) -> int:
        """Jobs to claim now: idle threads plus the prefetch allowance."""
        with self.lock:
            return self.size + self.prefetch.allowance - self._in_flight

    def should_claim(self) -> bool:
        """Claim now, or wait for a bigger batch?

        While claimed jobs still wait in the local queue, the threads have work:
        wait until half the capacity is free (fewer, bigger claims). When nothing
        waits, claim at once for whatever is free, so no thread goes idle.
        """
        with self.lock:
            allowance = self.prefetch.allowance
            free = self.size + allowance - self._in_flight
            waiting = self._in_flight - len(self.slots)
        return free > 0 and (waiting <= 0 or free >= (self.size + allowance + 1) // 2)

    def idle(self) -> bool:
        """No job running and no outcome waiting to be written."""
        with self.lock:
            if self._in_flight:
                return False
        return self.completer.pending == 0

    def running(self) -> list[Slot]:
        """Jobs whose threads are in them now (timed-out ones included)."""
        with self.lock:
            return list(self.slots.values())

    def held(self) -> dict[int, int]:
        """Every job this pool holds, by id: its lease token (claimed, until written)."""
        with self.lock:
            return dict(self._held)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.completer.start()
        for _ in range(self.size):
            self._spawn()
        self.watchdog.start()

    def _spawn(self) -> None:
        self._spawned += 1
        thread = threading.Thread(
            target=self._thread_main, name=f"durable-jobs-executor-{self._spawned}", daemon=True
        )
        with self.lock:
            self._threads.add(thread)
        thread.start()

    def submit(self, jobs: list[ClaimedJob]) -> None:
        with self.lock:
            self._in_flight += len(jobs)
            for job in jobs:
                self._held[job.id] = job.lease_token
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
                leftovers.append(outcomes.released_unstarted(job))
                with self.lock:
                    self._in_flight -= 1
        running = [
            slot for slot in self.running() if slot.timed_out_at is None and not slot.finished
        ]
        for slot in running:
            interrupted = outcomes.interrupted_by_shutdown(slot.attempt(self.worker_id))
            interrupted.started, interrupted.context = slot.started, slot.context
            interrupted.duration = time.monotonic() - slot.started
            leftovers.append(interrupted)
        if leftovers:
            written = self.recorder.record_and_announce(leftovers)
            self._forget(leftovers)
            if running:
                logger.warning(
                    "released %s running job(s) at shutdown: %s",
                    sum(slot.job.id in written.ids for slot in running),
                    ", ".join(f"#{slot.job.id}" for slot in running),
                )

    def stop(self) -> None:
        """End the threads; outcomes already handed to the completer are written first."""
        with self.lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        self.watchdog.stop()
        self.completer.stop()

    def cancel(self, job_ids: set[int]) -> None:
        """Tell running jobs (through ``JobContext.cancel_requested``) to stop."""
        with self.lock:
            for job_id in job_ids:
                slot = self.slots.get(job_id)
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
                    released = outcomes.released_unstarted(job)
                    self.recorder.record([released])
                    self._forget([released])
                    self._free(None)
                    continue
                if job.expires_at is not None and _expired(job.expires_at):
                    expired = outcomes.expired_unstarted(job, self.worker_id)
                    self.recorder.record([expired])
                    self._forget([expired])
                    self._free(None)
                    continue
                if self._run(job):
                    return  # timed out: a replacement thread has this slot now
        finally:
            close_all()
            with self.lock:
                self._threads.discard(threading.current_thread())

    def _run(self, job: ClaimedJob) -> bool:
        """Run one job; True when it timed out (this thread then retires)."""
        cancel = threading.Event()
        started = time.monotonic()
        slot = Slot(
            job=job,
            context=context_for(job, self.worker_id, cancel),
            thread_id=threading.get_ident(),
            started=started,
            deadline=started + job.timeout if job.timeout else None,
            cancel=cancel,
        )
        with self.lock:
            self.slots[job.id] = slot
        try:
            # (No tidy here: execute() leaves this thread's connections ready for the next job.)
            if self._marks_first(job) and not self._mark_before_start(slot):
                return False
            with self.lock:
                slot.in_job = True
            outcome: Outcome | None = None
            written = None
            # A JobTimeout landing in the worker's code around the job is handled below.
            with contextlib.suppress(JobTimeout):
                outcome, written = execute(
                    job,
                    backend=self.backend,
                    recorder=self.recorder,
                    worker_id=self.worker_id,
                    context=slot.context,
                )
            if self._leave(slot):
                close_all()  # the job was interrupted: its connections may be mid-protocol
                return True
            assert outcome is not None
            slot.finished = True
            self.prefetch.note_job(outcome.duration or 0.0)
            if written is not None:  # an atomic job's own transaction wrote it
                self._forget([outcome])
                log_outcome(outcome)
                self.recorder.announce([outcome], written)
                return False
            announce = wants_announcement(outcome)
            if not announce:
                outcome.context = None  # nothing will read it: do not keep it queued
            ticket = self.completer.submit(outcome, wait=announce)
            if ticket is not None:
                ticket.wait()
                self.recorder.announce([outcome], ticket.written)
            return False
        except JobTimeout:
            self._leave(slot)
            close_all()
            return True
        except Exception as exc:
            # A bug of ours around the job (execute itself never raises): the job
            # is recorded, never left RUNNING.
            logger.exception("internal error while running job #%s", job.id)
            close_all()  # whatever state our failure left the connections in
            if not slot.finished:
                slot.finished = True
                internal = outcomes.internal_error(slot.attempt(self.worker_id), exc)
                internal.started = slot.started
                self.completer.submit(internal)
            return False
        finally:
            if slot.timed_out_at is None:
                self._free(slot)
            else:
                with self.lock:
                    self.slots.pop(job.id, None)

    @staticmethod
    def _marks_first(job: ClaimedJob) -> bool:
        """Write this job's start mark before it runs, rather than while it runs?

        Yes for an orphaned job (it may be the one that kills its worker), and for
        an atomic job: on SQLite its transaction holds the only write lock while
        it runs, so the watchdog's mark could not land before it ends.
        """
        if job.meta_dict.get(ORPHANED):
            return True
        definition = registry.find(job.name)
        return definition is not None and definition.atomic

    def _mark_before_start(self, slot: Slot) -> bool:
        """Write an orphaned job's start mark before it runs; False: do not run it."""
        job = slot.job
        try:
            marked = self.backend.mark_started([(job.id, job.lease_token, 0.0)])
        except Exception:
            logger.warning(
                "job #%s: could not mark it started; releasing it", job.id, exc_info=True
            )
            slot.finished = True
            self.completer.submit(outcomes.released_unstarted(job))
            return False
        if job.id not in marked:  # taken away meanwhile (cancelled, rescued)
            self._forget([outcomes.released_unstarted(job)])
            return False
        slot.marked = True
        return True

    def _leave(self, slot: Slot) -> bool:
        """Mark the slot's thread as out of the job; True if the job timed out meanwhile.

        Once ``in_job`` is false (under the lock), the watchdog never interrupts
        this thread again, and a pending interruption is cleared here; an
        interruption landing during this very call is absorbed by the retry.
        """
        while True:
            try:
                with self.lock:
                    slot.in_job = False
                    if slot.timed_out_at is not None:
                        raise_in_thread(slot.thread_id, None)
                    return slot.timed_out_at is not None
            except JobTimeout:
                continue

    def _forget(self, written: list[Outcome]) -> None:
        """These jobs' outcomes are written (or given up): the pool no longer holds them."""
        with self.lock:
            for outcome in written:
                if self._held.get(outcome.job.id) == outcome.job.lease_token:
                    del self._held[outcome.job.id]

    def _free(self, slot: Slot | None) -> None:
        with self.lock:
            if slot is not None:
                self.slots.pop(slot.job.id, None)
            self._in_flight -= 1
            self.processed += 1
            allowance = self.prefetch.allowance
            free = self.size + allowance - self._in_flight
            waiting = self._in_flight - len(self.slots)
        # Wake the claimer only when it would claim (see should_claim): about one
        # wake-up per batch rather than per job.
        if waiting <= 0 or free >= (self.size + allowance + 1) // 2:
            self.on_slot_freed()

    # -- timeouts (called by the watchdog) ---------------------------------------------
    def timed_out(self, slot: Slot) -> None:
        """Replace the thread now, record the timeout (retried per the job's policy), free the slot.

        The slot is freed only once the outcome is written: until then the pool is
        not idle, so a ``--burst`` worker or a shutdown cannot end with the job
        still RUNNING (its thread is gone, and the outcome not yet written).
        """
        job = slot.job
        self._spawn()
        definition = registry.find(job.name)
        policy = definition.retry if definition is not None else DEFAULT_RETRY
        outcome = outcomes.timed_out(slot.attempt(self.worker_id), policy, slot.stack)
        outcome.started, outcome.context = slot.started, slot.context
        outcome.duration = time.monotonic() - slot.started
        try:
            self.recorder.record_and_announce([outcome])
        finally:
            self._forget([outcome])
            self._free(None)
        log_outcome(outcome)
