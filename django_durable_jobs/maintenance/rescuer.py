"""Give back the jobs of workers that are gone: lease expired, or process known dead.

Rescue takes rows with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or inside the
single SQLite writer's transaction, so any number of workers can run it.
"""

from __future__ import annotations

import logging
import uuid

from ..constants import AttemptOutcome
from ..db import Backend
from ..models import Worker
from ..worker.outcomes import LOST_LEASE_FINAL_MESSAGE, LOST_LEASE_MESSAGE, LOST_PROCESS_FINAL_HINT

logger = logging.getLogger("django_durable_jobs.maintenance")

RESCUE_BATCH = 500


def rescue_expired_leases(backend: Backend) -> int:
    """Return jobs whose worker stopped heartbeating to READY (FAILED when no attempt is left).

    A job charged an attempt only if it is known to have started (see ``worker.pool``).
    """
    total = 0
    while True:
        rescued = backend.give_back(
            limit=RESCUE_BATCH,
            outcome=AttemptOutcome.WORKER_LOST,
            message=LOST_LEASE_MESSAGE,
            final_message=LOST_LEASE_FINAL_MESSAGE,
        )
        for job_id, status, counted in rescued:
            if counted:
                logger.warning(
                    "job #%s: its worker was lost (lease expired); now %s", job_id, status
                )
            else:
                logger.info(
                    "job #%s: claimed by a worker that was lost before the job started; "
                    "back to READY, not counted",
                    job_id,
                )
        total += len(rescued)
        if len(rescued) < RESCUE_BATCH:
            return total


def rescue_dead_worker(
    backend: Backend, worker_id: uuid.UUID, why: str, *, count_attempt: bool = True
) -> list[tuple[int, str, bool]]:
    """Give back the jobs of a worker process known to be dead (its supervisor saw it exit).

    Faster than waiting for the lease: the process is gone, so nothing else can
    be running its jobs. Only the jobs known to have started are charged an
    attempt (see ``worker.pool``); ``count_attempt=False`` charges none (a
    worker killed at shutdown). Returns ``(id, new status, counted)``.
    """
    message = f"worker lost: {why}"
    rescued: list[tuple[int, str, bool]] = []
    while True:
        batch = backend.give_back(
            limit=RESCUE_BATCH,
            worker_id=worker_id,
            uncount=not count_attempt,
            outcome=AttemptOutcome.WORKER_LOST if count_attempt else AttemptOutcome.INTERRUPTED,
            message=message if count_attempt else f"interrupted by shutdown: {why}",
            final_message=message + LOST_PROCESS_FINAL_HINT,
        )
        rescued += batch
        if len(batch) < RESCUE_BATCH:
            break
    Worker.objects.using(backend.alias).filter(id=worker_id).delete()
    return rescued
