"""The heartbeat: renew the worker row and its jobs' leases, keep the invariant, run maintenance.

Every ``HEARTBEAT_INTERVAL`` seconds:

* the worker's row gets a new ``heartbeat_at`` (inserted again if it was
  removed as dead during an outage);
* the leases of the jobs the pool holds are renewed, **by lease token**: a job
  this process does not hold is never renewed, so a predecessor's job under a
  reused ``--worker-id`` is not kept alive by the newcomer;
* a held job whose row was taken away (cancelled by an operator, rescued after
  a missed lease) is asked to stop, as is a job whose cancel was requested;
* the invariant: every RUNNING row of this worker is a job the pool holds;
  any other row is given back at once (the rules of a lost worker: counted
  only if it had started), and logged once;
* one round of the maintenance services.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from django.db.models.functions import Now

from ..connections import close_all, tidy_connections
from ..constants import AttemptOutcome, JobStatus
from ..maintenance import RESCUE_BATCH, run_maintenance
from ..models import Job
from ..models import Worker as WorkerRow

if TYPE_CHECKING:
    from .process import Worker

logger = logging.getLogger("django_durable_jobs.worker")

ORPHAN_MESSAGE = (
    "worker lost: this job's RUNNING row named this worker, but no thread of it was "
    "running the job (a killed process whose worker id was reused?)"
)


class Heartbeat:
    """The heartbeat thread of one worker (see the module docstring)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._reported: set[int] = set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(self.worker.heartbeat_interval):
                self.beat()
        finally:
            close_all()

    def beat(self) -> None:
        worker = self.worker
        if worker.parent_pid is not None and os.getppid() != worker.parent_pid:
            logger.error("the supervisor (pid %s) is gone; stopping", worker.parent_pid)
            worker.stop()
        try:
            tidy_connections()
            updated = (
                WorkerRow.objects.using(worker.alias)
                .filter(id=worker.id)
                .update(heartbeat_at=Now())
            )
            if not updated:  # removed as dead during an outage: we are back
                worker.upsert_row()
            self.renew()
            self.keep_invariant()
            run_maintenance(
                worker.backend,
                lease_seconds=worker.lease_seconds,
                heartbeat_interval=worker.heartbeat_interval,
            )
        except Exception as exc:
            worker.trouble("heartbeat", exc)
            return
        worker.db_log.recovered("heartbeat", "database reachable again: heartbeats resumed")

    def renew(self) -> None:
        """Renew the held jobs' leases; ask the ones taken away, or to be cancelled, to stop."""
        worker, pool = self.worker, self.worker.pool
        held = pool.held()
        if not held:
            return
        renewed = worker.backend.renew_leases(held, worker.lease_seconds)
        cancelled = {job_id for job_id, requested in renewed.items() if requested}
        missing = set(held) - set(renewed)
        lost: set[int] = set()
        if missing:
            # Not renewed: finished meanwhile, locked by another statement right
            # now, or really taken away. Only the last counts.
            rows = Job.objects.using(worker.alias).filter(id__in=missing)
            current = {
                job_id: (token, status)
                for job_id, token, status in rows.values_list("id", "lease_token", "status")
            }
            still_running = {slot.job.id for slot in pool.running() if not slot.finished}
            lost = {
                job_id
                for job_id in missing & still_running
                if current.get(job_id, (None, None)) != (held[job_id], JobStatus.RUNNING)
            }
        if lost:
            logger.warning(
                "job(s) %s no longer held by this worker (cancelled, or rescued after a "
                "missed lease); asking them to stop",
                ", ".join(f"#{job_id}" for job_id in sorted(lost)),
            )
        if lost | cancelled:
            pool.cancel(lost | cancelled)

    def keep_invariant(self) -> None:
        """Give back RUNNING rows of this worker that no thread of it runs (logged once)."""
        worker, pool = self.worker, self.worker.pool
        with pool.claim_lock:  # no claim between the snapshot and the read
            held = pool.held()
            rows = list(
                Job.objects.using(worker.alias)
                .filter(worker_id=worker.id, status=JobStatus.RUNNING)
                .values_list("id", "lease_token")[:RESCUE_BATCH]
            )
        orphans = [job_id for job_id, token in rows if held.get(job_id) != token]
        if not orphans:
            return
        given = worker.backend.give_back(
            limit=len(orphans),
            worker_id=worker.id,
            job_ids=orphans,
            outcome=AttemptOutcome.WORKER_LOST,
            message=ORPHAN_MESSAGE,
            final_message=ORPHAN_MESSAGE + "; no attempts left",
        )
        for job_id, status, counted in given:
            if job_id not in self._reported:
                self._reported.add(job_id)
                logger.error(
                    "job #%s was RUNNING under this worker's id but not running here; "
                    "given back: now %s%s",
                    job_id,
                    status,
                    "" if counted else " (it had not started: not counted)",
                )
