"""The worker process: claim ready jobs, hand them to the pool, stay alive through faults.

Threads, each with its own database connection:

* the main thread claims as many jobs as the pool has free slots, in one
  statement (with queue weights: one per queue, shared by weight, see
  ``fairness.py``), then sleeps until a slot frees, a NOTIFY arrives or the
  poll interval passes;
* the pool's executor threads run jobs (``pool.py``, ``execution.py``), its
  completer writes their outcomes in batches (``completer.py``,
  ``recorder.py``) and its watchdog enforces timeouts (``watchdog.py``);
* the heartbeat thread renews the worker row and its jobs' leases, tells a
  running job when its row was taken away (cancelled, rescued), and runs the
  maintenance services (``heartbeat.py``);
* on PostgreSQL, the listener thread turns NOTIFYs into wake-ups (``listener.py``).

Shutdown is staged: the first SIGTERM/SIGINT stops claiming and lets running
jobs finish for ``shutdown_timeout`` seconds; then (or at a second signal)
unfinished jobs are released to READY without counting the attempt.

A worker whose timed-out job is stuck in uninterruptible code recycles
itself: it stops gracefully, then re-executes itself (``recycle="exec"``) or
exits with ``EXIT_RECYCLE`` for its supervisor to restart (``"exit"``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from types import FrameType
from typing import Any, Literal

from django.conf import settings as django_settings
from django.db import IntegrityError

from ..conf import app_settings
from ..connections import (
    Backoff,
    close_all,
    close_connection,
    is_database_unavailable,
    tidy_connections,
)
from ..db import Backend, get_backend
from ..logutil import RateLimitedLog
from ..models import Worker as WorkerRow
from ..rates import rate_limits_declared
from ..rows import ClaimedJob
from ..scheduler import Scheduler
from .fairness import FairClaimer, QueuesArgument, parse_queues
from .heartbeat import Heartbeat
from .listener import Listener
from .memory import resident_megabytes
from .pool import JobPool
from .recorder import Recorder

logger = logging.getLogger("django_durable_jobs.worker")

#: The default cap on claiming ahead (``PREFETCH = None``), per thread. The pool
#: claims ahead only what its threads finish during one claim round trip, so the
#: cap binds only for jobs of well under a millisecond: 8 per thread left the
#: 10,000-job no-op drain claim-bound (6,500 jobs/s), 32 gave 8,000 (bench/run.py).
PREFETCH_PER_THREAD = 32

#: Exit status of a worker that stopped to be restarted (EX_TEMPFAIL).
EXIT_RECYCLE = 75
#: Seconds after the first claim by which the background threads start (see
#: ``Worker._start_background``), however long the first jobs take.
BACKGROUND_DELAY = 0.25
#: Seconds past a rate-limit permit's release at which an idle worker looks again.
PERMIT_MARGIN = 0.005


def _default_poll_interval(backend: Backend) -> float:
    """``POLL_INTERVAL`` if the project sets it, else the backend's default, else ours.

    A database without NOTIFY (MariaDB/MySQL) polls sooner by default: an idle
    claim there is two small reads, and polling is its only wake-up.
    """
    declared = getattr(django_settings, "DURABLE_JOBS", None) or {}
    if "POLL_INTERVAL" not in declared and backend.default_poll_interval is not None:
        return backend.default_poll_interval
    return float(app_settings.POLL_INTERVAL)


class Worker:
    """Runs jobs until stopped. Every option defaults to the ``DURABLE_JOBS`` settings.

    ``queues``: names to take jobs from (None: all queues), or with weights:
    ``{"emails": 3, "reports": 1}`` or ``["emails:3", "reports:1"]`` (each claim
    shared by weight; docs/howto/flow-control.md); a bad name or weight raises
    ``InvalidJobOptions``. ``burst``: return
    once no job is ready and none is running. ``max_jobs``: stop after claiming
    that many. ``max_memory``: MB of resident memory past which the worker stops
    claiming, lets its running jobs finish (however long they take) and is
    recycled (see ``recycle``). ``install_signal_handlers``: handle SIGTERM/SIGINT (main thread
    only). ``scheduler``: also enqueue the PERIODIC entries' ticks (in a
    thread). ``worker_id``: the uuid to run under (a supervisor chooses its
    children's). ``recycle``: what to do when the process must be recycled
    (None: just stop). ``parent_pid``: stop if that process (the supervisor)
    goes away. ``run()`` returns the process exit status.
    """

    def __init__(
        self,
        *,
        queues: QueuesArgument = None,
        concurrency: int | None = None,
        burst: bool = False,
        max_jobs: int | None = None,
        max_memory: float | None = None,
        shutdown_timeout: float | None = None,
        poll_interval: float | None = None,
        listen: bool | None = None,
        database: str | None = None,
        install_signal_handlers: bool = True,
        scheduler: bool = True,
        worker_id: uuid.UUID | None = None,
        recycle: Literal["exec", "exit"] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        settings = app_settings
        selection = parse_queues(queues)
        self.queues = selection.names
        self.queue_weights = selection.weights
        self._queue_label = selection.describe()
        self.fair = FairClaimer(selection.weights) if selection.weights and selection.fair else None
        self.concurrency = concurrency or settings.CONCURRENCY
        # The default cap on claiming ahead is per claim statement: a weighted worker makes
        # one per queue (at 32 per thread overall, a:1,b:1 drained no-op jobs 16 % slower
        # than a,b on PostgreSQL; per queue, 4 to 9 %).
        per_claim = len(self.queues or ()) if self.fair else 1
        self.prefetch = (
            PREFETCH_PER_THREAD * self.concurrency * per_claim
            if settings.PREFETCH is None
            else settings.PREFETCH
        )
        self.burst = burst
        self.max_jobs = max_jobs
        self.max_memory = max_memory
        self._memory_exceeded = False
        self._next_memory_check = 0.0
        self.shutdown_timeout = (
            settings.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        self.lease_seconds = float(settings.LEASE_SECONDS)
        self.heartbeat_interval = float(settings.HEARTBEAT_INTERVAL)
        self.alias = database or settings.DATABASE
        self.backend = get_backend(self.alias)
        self.poll_interval = poll_interval or _default_poll_interval(self.backend)
        self.listen = (
            settings.LISTEN_NOTIFY if listen is None else listen
        ) and self.backend.supports_listen_notify
        self.install_signal_handlers = install_signal_handlers
        self.recycle = recycle
        self.parent_pid = parent_pid
        # The periodic scheduler runs in its own thread, also without PERIODIC entries
        # (database entries may appear at any time); a broken PERIODIC entry raises
        # PeriodicConfigError here, before anything starts.
        self.scheduler = Scheduler(database=self.alias) if scheduler else None

        self.id = worker_id or uuid.uuid4()
        self.exit_code = 0
        self._crash: BaseException | None = None
        self._claimed_total = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._force = threading.Event()
        self._background_stop = threading.Event()
        self._background: list[threading.Thread] = []
        self._background_started = False
        self.db_log = RateLimitedLog(logger)
        self.recorder = Recorder(
            self.backend, worker_id=self.id, give_up=self._force, log=self.db_log
        )
        self.pool = JobPool(
            size=self.concurrency,
            prefetch=self.prefetch,
            backend=self.backend,
            worker_id=self.id,
            recorder=self.recorder,
            on_slot_freed=self._wake.set,
        )

    @property
    def processed(self) -> int:
        return self.pool.processed

    # -- public ------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped (or, in burst mode, until nothing is ready); return the exit code."""
        if self._install_signal_handlers():
            # A signal handler runs in the main thread between two bytecodes; had that
            # thread been inside Event.wait(), holding the event's lock, the handler's
            # stop() would wait for that lock forever. So the work runs in its own
            # thread and the main thread holds no lock of ours while it waits.
            body = threading.Thread(target=self._work_catching, name="durable-jobs-main")
            body.start()
            while body.is_alive():
                body.join(0.5)
            if self._crash is not None:
                raise self._crash
        else:
            self._work()
        logger.info("worker %s stopped after %s jobs", self.id, self.processed)
        if (self.pool.wants_recycle.is_set() or self._memory_exceeded) and not self._force.is_set():
            return self._recycled()
        return self.exit_code

    def _work_catching(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # re-raised by run() in the main thread
            self._crash = exc

    def _work(self) -> None:
        logger.info(
            "worker %s starting: pid=%s queues=%s concurrency=%s database=%s (%s)",
            self.id,
            os.getpid(),
            self._queue_label,
            self.concurrency,
            self.alias,
            self.backend.vendor,
        )
        try:
            if self._register():
                self.pool.start()
                try:
                    self._claim_loop()
                finally:
                    self._shutdown()
        finally:
            close_all()

    def stop(self, *, force: bool = False) -> None:
        """Stop claiming; with ``force``, release running jobs without waiting."""
        self._stop.set()
        if force:
            self._force.set()
        self._wake.set()

    # -- start -------------------------------------------------------------------
    def _install_signal_handlers(self) -> bool:
        """Handle SIGTERM/SIGINT, if asked and possible (main thread only)."""
        if not self.install_signal_handlers:
            return False
        if threading.current_thread() is not threading.main_thread():
            return False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self._stop.is_set():
            logger.warning(
                "%s received: no new jobs; running jobs get %ss to finish (send it again to stop "
                "now)",
                name,
                self.shutdown_timeout,
            )
            self.stop()
        else:
            logger.warning("%s received again: releasing running jobs and stopping now", name)
            self.stop(force=True)

    def _register(self) -> bool:
        """Insert this worker's row, retrying while the database is unreachable."""
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                self.backend.prepare_worker_connection()
                self.upsert_row()
                return True
            except Exception as exc:
                self.trouble("register", exc)
                self._stop.wait(backoff.next())
        return False

    def upsert_row(self) -> None:
        """Insert this worker's row; one plain INSERT (a read-then-write transaction
        would fail at once on a busy SQLite database instead of waiting its turn)."""
        row = WorkerRow(
            id=self.id,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            queues=self.queues or [],
            concurrency=self.concurrency,
            meta={"queue_weights": self.queue_weights} if self.queue_weights else {},
        )
        with contextlib.suppress(IntegrityError):  # a retried insert that had committed
            row.save(using=self.alias, force_insert=True)

    def _start_background(self) -> None:
        """Start the heartbeat, listener and scheduler threads (once).

        Called once the first jobs have run, or the first claim found none (or
        failed), and at the latest ``BACKGROUND_DELAY`` after the first claim: their
        start-up (connections, the listener's LISTEN and probe, the scheduler's
        first pass) would otherwise compete with the first jobs for the CPU, the
        GIL and the database. Nothing is lost by the wait: the first heartbeat is
        due a heartbeat interval later anyway, the listener wakes the claimer once
        it listens (catching up on whatever was enqueued meanwhile), and the
        scheduler's first pass enqueues the ticks due by then.
        """
        if self._background_started:
            return
        self._background_started = True
        loops: list[tuple[str, Any]] = [("heartbeat", Heartbeat(self).run)]
        if self.listen:
            listener = Listener(
                self.backend,
                queues=self.queues,
                wake=self._wake,
                poll_interval=self.poll_interval,
                log=self.db_log,
            )
            loops.append(("listener", listener.run))
        if self.scheduler is not None:
            loops.append(("scheduler", self.scheduler.run))
        for name, loop in loops:
            thread = threading.Thread(
                target=loop, args=(self._background_stop,), name=f"durable-jobs-{name}", daemon=True
            )
            thread.start()
            self._background.append(thread)

    # -- claiming ------------------------------------------------------------------
    def _over_memory(self) -> bool:
        """Past ``max_memory``? Read at most once a second; once past, it stays past."""
        if self.max_memory is None or self._memory_exceeded:
            return self._memory_exceeded
        now = time.monotonic()
        if now >= self._next_memory_check:
            self._next_memory_check = now + 1.0
            used = resident_megabytes()
            if used > self.max_memory:
                self._memory_exceeded = True
                logger.warning(
                    "worker %s holds %.0f MB, over --max-memory %.0f MB: no more claims; "
                    "recycling once its %s running job(s) finish",
                    self.id,
                    used,
                    self.max_memory,
                    len(self.pool.running()),
                )
        return self._memory_exceeded

    def _claim_limit(self) -> int:
        if self._over_memory():
            return 0
        free = self.pool.free_slots()
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self._claimed_total)
        return max(free, 0)

    def _claim(self, limit: int) -> tuple[list[ClaimedJob], Exception | None]:
        """Up to ``limit`` jobs: one statement, or (weighted) one per queue, shared by weight.

        With weights, a failing statement still returns the jobs claimed before it
        (with the error): they are this worker's now and must run.
        """
        if self.fair is None:
            jobs = self.backend.claim(
                worker_id=self.id,
                queues=self.queues,
                limit=limit,
                lease_seconds=self.lease_seconds,
            )
            return jobs, None
        return self.fair.claim(self._claim_one, limit)

    def _claim_one(self, queue: str, limit: int) -> list[ClaimedJob]:
        return self.backend.claim(
            worker_id=self.id, queues=[queue], limit=limit, lease_seconds=self.lease_seconds
        )

    def _claim_loop(self) -> None:
        backoff = Backoff()
        background_due = time.monotonic() + BACKGROUND_DELAY
        while not self._stop.is_set():
            if self.pool.wants_recycle.is_set():
                return
            self._wake.clear()
            # Measured before claiming: an outcome written during the claim may have
            # enqueued a follow-up (the next step) that this claim could not see yet.
            was_idle = self.pool.idle()
            limit = self._claim_limit() if self.pool.should_claim() else 0
            claimed: list[ClaimedJob] = []
            if limit:
                claim_started = time.monotonic()
                try:
                    with self.pool.claim_lock:  # the heartbeat sees a claim whole, or not yet
                        claimed, failure = self._claim(limit)
                        self.pool.submit(claimed)
                    self._claimed_total += len(claimed)
                    if failure is not None:
                        raise failure
                except Exception as exc:
                    self._start_background()
                    self.trouble("claim", exc)
                    self._stop.wait(backoff.next())
                    continue
                backoff.reset()
                self.pool.prefetch.note_claim(time.monotonic() - claim_started)
                self.db_log.recovered("claim", "database reachable again: claiming resumed")
            if not self._background_started:
                found_none = limit and not claimed
                if found_none or self.pool.processed or time.monotonic() >= background_due:
                    self._start_background()
            quota_used = self.max_jobs is not None and self._claimed_total >= self.max_jobs
            if (quota_used or self._over_memory()) and self.pool.idle():
                return
            if self.burst and was_idle and limit and not claimed:
                return
            if claimed and len(claimed) == limit and self._claim_limit():
                continue  # a full batch: more may be ready, and slots freed meanwhile
            wait = self._idle_wait(limit, claimed)
            if not self._background_started:
                wait = min(wait, max(background_due - time.monotonic(), 0.0))
            self._wake.wait(wait)

    def _idle_wait(self, limit: int, claimed: list[ClaimedJob]) -> float:
        """The poll interval; shorter when a rate limit may be what held jobs back.

        Only where rate limits exist (a job definition or a queue declares one):
        the wait then ends when the next logged start leaves its window, so a
        backlog behind a limit drains at the limit's pace, not at the poll's.
        Such wake-ups are bounded by the rate-limited starts themselves.
        """
        if not limit or len(claimed) >= limit or not rate_limits_declared():
            return self.poll_interval
        try:
            seconds = self.backend.seconds_to_next_permit()
        except Exception as exc:
            self.trouble("claim", exc)
            return self.poll_interval
        if seconds is None:
            return self.poll_interval
        return min(self.poll_interval, max(seconds + PERMIT_MARGIN, PERMIT_MARGIN))

    # -- trouble -----------------------------------------------------------------------
    def trouble(self, what: str, exc: BaseException) -> None:
        """Log at a bounded rate and drop this thread's connection so the next try reconnects."""
        if is_database_unavailable(exc):
            self.db_log.log(
                logging.WARNING,
                what,
                "database unavailable during %s (%s: %s); retrying with backoff",
                what,
                type(exc).__name__,
                str(exc).strip()[:300],
            )
        else:
            self.db_log.log(logging.ERROR, what, "%s failed", what, exc_info=True)
        close_connection(self.alias)

    # -- shutdown -----------------------------------------------------------------------
    def _shutdown(self) -> None:
        self._stop.set()
        self.pool.close()
        deadline = time.monotonic() + self.shutdown_timeout
        while not self._force.is_set() and time.monotonic() < deadline and not self.pool.idle():
            self._wake.wait(0.05)
            self._wake.clear()
        self.pool.release_unfinished()
        self.pool.stop()
        self._background_stop.set()
        for thread in self._background:
            thread.join(timeout=5)
        try:
            tidy_connections()
            WorkerRow.objects.using(self.alias).filter(id=self.id).delete()
        except Exception:
            logger.warning("could not remove worker row %s; it expires by itself", self.id)
        if self._force.is_set():
            self.exit_code = 1

    def _recycled(self) -> int:
        if self.recycle == "exec":
            logger.warning("re-executing this worker process to recycle it")
            sys.stdout.flush()
            sys.stderr.flush()
            # The same command line, with the same interpreter options (-m django...).
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])  # noqa: S606
        if self.recycle == "exit":
            return EXIT_RECYCLE
        return self.exit_code
