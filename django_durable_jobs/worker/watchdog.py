"""Timeouts: stop a job that runs past its timeout, from outside its thread.

A job past its timeout is handled in three steps, in this order:

1. it is marked timed out, so its thread will not record anything itself;
2. ``JobTimeout`` is raised inside its thread (``PyThreadState_SetAsyncExc``),
   which stops Python code, also a loop that never yields;
3. in a worker, a replacement thread takes its slot at once, and the timeout
   is recorded (fenced), so the job is retried per its policy even if the
   thread never returns.

A thread stuck in C code (a blocking call without a timeout) cannot be
interrupted; if it is still in the job ``STUCK_GRACE`` seconds after its
timeout, the pool asks for the process to be recycled (see ``process.py``).

The same watchdog sends the start mark of each job it finds running at two
checks in a row (see ``pool.py``): a job running for two tenths of a second
has its evidence; a shorter one gets it from its outcome.
``Deadline`` is the one-job version for jobs run inline (immediate mode,
``run_pending_jobs``).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..connections import close_all
from ..exceptions import JobTimeout
from ..failures import clean_text

if TYPE_CHECKING:
    from .pool import JobPool, Slot

logger = logging.getLogger("django_durable_jobs.worker")

#: Seconds a timed-out job's thread may stay stuck before the process is recycled.
STUCK_GRACE = 5.0
#: Seconds between watchdog checks: the precision of timeouts.
WATCHDOG_INTERVAL = 0.1


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


class Watchdog:
    """A thread that checks the pool's running jobs every ``WATCHDOG_INTERVAL`` seconds."""

    def __init__(self, pool: JobPool) -> None:
        self.pool = pool
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durable-jobs-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(WATCHDOG_INTERVAL):
                self.check(time.monotonic())
        finally:
            close_all()

    def check(self, now: float) -> None:
        pool = self.pool
        expired: list[Slot] = []
        unmarked: list[Slot] = []
        stuck = False
        with pool.lock:
            for slot in pool.slots.values():
                if slot.timed_out_at is None:
                    if slot.deadline is not None and now >= slot.deadline and slot.in_job:
                        slot.timed_out_at = now
                        slot.stack = thread_stack(slot.thread_id)  # before it unwinds
                        raise_in_thread(slot.thread_id, JobTimeout)
                        expired.append(slot)
                    elif not slot.marked and slot.in_job:
                        # Marked when seen running at two checks in a row: a job shorter
                        # than a check interval is marked by its outcome, for free.
                        if slot.seen_running:
                            slot.marked = True
                            unmarked.append(slot)
                        slot.seen_running = True
                elif slot.in_job and now - slot.timed_out_at > STUCK_GRACE:
                    stuck = True
        if unmarked:
            pool.completer.mark_started(
                [(slot.job.id, slot.job.lease_token, slot.started) for slot in unmarked]
            )
        for slot in expired:
            pool.timed_out(slot)
        if stuck and not pool.wants_recycle.is_set():
            logger.error(
                "a timed-out job's thread is stuck in code that cannot be interrupted; "
                "recycling this worker process to free it"
            )
            pool.wants_recycle.set()
            pool.on_slot_freed()


class Deadline:
    """Raise ``JobTimeout`` in this thread if the block runs past ``seconds`` (inline runs)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._armed = False
        self.fired = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        if not self.seconds:
            yield
            return
        thread_id = threading.get_ident()

        def fire() -> None:
            with self._lock:
                if self._armed:
                    self.fired = True
                    raise_in_thread(thread_id, JobTimeout)

        timer = threading.Timer(self.seconds, fire)
        timer.daemon = True
        with self._lock:
            self._armed = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            self._disarm()

    def _disarm(self) -> None:
        """Stop the timer from firing; clear an interruption that came too late to land.

        An interruption landing during this very call is absorbed by the retry.
        """
        while True:
            try:
                with self._lock:
                    self._armed = False
                    if self.fired:
                        raise_in_thread(threading.get_ident(), None)
                return
            except JobTimeout:
                continue
