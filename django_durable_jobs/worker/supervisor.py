"""``runworker --processes N``: a parent that keeps N worker processes alive.

The parent runs no jobs. It starts each child with a worker uuid of its own
choosing, so that when a child dies (a job called ``os._exit``, the OOM killer,
a segfault in a C extension) it can give that child's jobs back at once
instead of waiting for their leases to expire. It restarts children that exit,
with a growing delay for children that keep dying young (no crash loop), and
at once for children that recycled themselves. At shutdown it forwards one
SIGTERM to each child, and kills a child still alive after its shutdown
timeout (a job stuck in C code holding the interpreter), releasing its jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from ..connections import close_all
from ..db import Backend
from ..maintenance import rescue_dead_worker
from .process import EXIT_RECYCLE

logger = logging.getLogger("django_durable_jobs.supervisor")

#: A child that lived shorter than this and failed counts as crashing young.
YOUNG = 30.0
#: Seconds a child gets past its own shutdown timeout before it is killed.
KILL_GRACE = 10.0


@dataclass
class Child:
    slot: int
    worker_id: uuid.UUID
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"process exited with status {code}"


class Supervisor:
    """Keeps ``processes`` children running; ``run()`` returns the exit status.

    ``child_argv(worker_id)`` returns the command line of one child. In
    ``burst`` mode children that exit with 0 are not replaced, and the parent
    exits when all have.
    """

    def __init__(
        self,
        *,
        processes: int,
        child_argv: Callable[[uuid.UUID], list[str]],
        backend: Backend,
        shutdown_timeout: float,
        burst: bool = False,
    ) -> None:
        self.processes = processes
        self.child_argv = child_argv
        self.backend = backend
        self.shutdown_timeout = shutdown_timeout
        self.burst = burst
        self.children: dict[int, Child] = {}
        self._stop = threading.Event()
        self._signals = 0
        self._failures: dict[int, int] = {}
        self._restart_at: dict[int, float] = {}

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logger.info("supervisor %s starting %s worker processes", os.getpid(), self.processes)
        for slot in range(self.processes):
            self._start(slot)
        while not self._stop.is_set():
            self._reap()
            self._restart_due()
            if self.burst and not self.children and not self._restart_at:
                return 0
            # A plain sleep, not self._stop.wait(): the signal handler sets _stop, and
            # had it interrupted this thread inside wait(), holding the event's lock,
            # set() would wait for that lock forever.
            time.sleep(0.2)
        return self._shutdown()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.warning("%s received: stopping %s worker processes", name, len(self.children))
        else:
            logger.warning("%s received again: telling workers to stop now", name)
        # Children run in their own sessions, so a terminal's Ctrl-C reaches only
        # this process: each child gets exactly the signals forwarded here.
        for child in list(self.children.values()):  # a copy: the loop may be changing it
            self._send(child, signal.SIGTERM)
        self._stop.set()

    def _start(self, slot: int) -> None:
        worker_id = uuid.uuid4()
        process = subprocess.Popen(self.child_argv(worker_id), start_new_session=True)
        self.children[slot] = Child(slot, worker_id, process)
        logger.info("worker process %s started (pid %s)", worker_id, process.pid)

    def _reap(self) -> None:
        for slot, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            del self.children[slot]
            lived = time.monotonic() - child.started
            if code == 0:
                if not self.burst:
                    self._restart_at[slot] = time.monotonic()  # --max-jobs recycling
                continue
            if code == EXIT_RECYCLE:
                logger.warning("worker process %s recycled itself; restarting it", child.worker_id)
                self._restart_at[slot] = time.monotonic()
                continue
            self._lost(child, describe_exit(code))
            failures = self._failures.get(slot, 0) + 1 if lived < YOUNG else 1
            self._failures[slot] = failures
            # The first failure restarts at once; repeated young deaths wait 1, 2, 4... 30 s.
            delay = 0.0 if failures == 1 else min(30.0, 2.0 ** (failures - 2))
            logger.error(
                "worker process %s %s after %.1fs; restarting it%s",
                child.worker_id,
                describe_exit(code),
                lived,
                f" in {delay:.0f}s" if delay else "",
            )
            self._restart_at[slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now and not self._stop.is_set():
                del self._restart_at[slot]
                self._start(slot)

    def _lost(self, child: Child, why: str, *, count_attempt: bool = True) -> None:
        """Give the dead child's jobs back now, rather than after their leases expire."""
        try:
            rescued = rescue_dead_worker(
                self.backend, child.worker_id, why, count_attempt=count_attempt
            )
        except Exception:
            logger.exception(
                "could not give back the jobs of %s; they return when their leases expire",
                child.worker_id,
            )
            close_all()
            return
        for job_id, status, counted in rescued:
            if counted:
                logger.warning(
                    "job #%s of lost worker %s is now %s", job_id, child.worker_id, status
                )
            else:
                logger.info(
                    "job #%s was claimed by lost worker %s but had not started: back to "
                    "READY, not counted",
                    job_id,
                    child.worker_id,
                )

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.shutdown_timeout + KILL_GRACE
        while self.children and time.monotonic() < deadline:
            for slot, child in list(self.children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self.children[slot]
                if code not in (0, 1, EXIT_RECYCLE):
                    self._lost(child, describe_exit(code))
            time.sleep(0.1)
        for child in self.children.values():
            logger.error(
                "worker process %s did not stop in time; killing it and releasing its jobs",
                child.worker_id,
            )
            self._send(child, signal.SIGKILL)
            child.process.wait()
            self._lost(child, "stopped by its supervisor at shutdown", count_attempt=False)
        logger.info("supervisor stopped")
        return 1 if self._signals > 1 else 0

    @staticmethod
    def _send(child: Child, signum: int) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                child.process.send_signal(signum)
