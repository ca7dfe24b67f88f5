"""Maintenance services run by every worker, coordinated through the database.

Each service is safe to run from many workers at once: rescue claims expired
rows with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or inside the single SQLite
writer's transaction, worker cleanup is an idempotent delete, and pruning
deletes small batches that skip rows another worker is deleting.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from .constants import AttemptOutcome
from .db import Backend
from .followups import release_finished_groups
from .models import Worker

logger = logging.getLogger("django_durable_jobs.maintenance")

RESCUE_BATCH = 500
#: Seconds between two pruning rounds of one process (sooner while a backlog remains).
PRUNE_INTERVAL = 60.0
#: Batches (of ``operations.batches.BATCH_SIZE`` rows) per status in one round:
#: bounded, so a heartbeat is never late because of a large first prune.
PRUNE_MAX_BATCHES = 5

_next_prune: dict[str, float] = {}
_prune_lock = threading.Lock()


def rescue_expired_leases(backend: Backend) -> int:
    """Return jobs whose worker stopped heartbeating to READY (FAILED when no attempt is left)."""
    total = 0
    while True:
        rescued = backend.give_back(limit=RESCUE_BATCH)
        for job_id, status in rescued:
            logger.warning("job #%s: its worker was lost (lease expired); now %s", job_id, status)
        total += len(rescued)
        if len(rescued) < RESCUE_BATCH:
            return total


def rescue_dead_worker(
    backend: Backend, worker_id: uuid.UUID, why: str, *, count_attempt: bool = True
) -> list[tuple[int, str]]:
    """Give back the jobs of a worker process known to be dead (its supervisor saw it exit).

    Faster than waiting for the lease: the process is gone, so nothing else can
    be running its jobs.
    """
    message = f"worker lost: {why}"
    rescued: list[tuple[int, str]] = []
    while True:
        batch = backend.give_back(
            limit=RESCUE_BATCH,
            worker_id=worker_id,
            uncount=not count_attempt,
            outcome=AttemptOutcome.WORKER_LOST if count_attempt else AttemptOutcome.INTERRUPTED,
            message=message if count_attempt else f"interrupted by shutdown: {why}",
            final_message=f"{message}; no attempts left (a job that kills its worker process "
            "every time ends here: see the attempt history)",
        )
        rescued += batch
        if len(batch) < RESCUE_BATCH:
            break
    Worker.objects.using(backend.alias).filter(id=worker_id).delete()
    return rescued


def remove_dead_workers(alias: str, dead_after: timedelta) -> int:
    """Delete worker rows whose last heartbeat is older than ``dead_after`` (database clock)."""
    cutoff = ExpressionWrapper(Now() - dead_after, output_field=DateTimeField())
    deleted, _ = Worker.objects.using(alias).filter(heartbeat_at__lt=cutoff).delete()
    return deleted


def prune_finished_jobs(backend: Backend, *, force: bool = False) -> int:
    """Delete finished jobs past ``DURABLE_JOBS["RETENTION"]``, a few batches per round.

    Runs at most every ``PRUNE_INTERVAL`` seconds per process and database,
    and again at the next call while expired jobs remain.
    """
    from .operations.retention import prune_expired  # operations import models and db

    with _prune_lock:
        now = time.monotonic()
        if not force and now < _next_prune.get(backend.alias, 0.0):
            return 0
        _next_prune[backend.alias] = now + PRUNE_INTERVAL
    result = prune_expired(backend.alias, max_batches=PRUNE_MAX_BATCHES)
    if result.remaining:
        with _prune_lock:
            _next_prune[backend.alias] = 0.0
    if result.total:
        logger.info(
            "pruned %s finished jobs past their retention (%s)%s",
            result.total,
            ", ".join(f"{status} {n}" for status, n in sorted(result.deleted.items()) if n),
            "; more to do" if result.remaining else "",
        )
    return result.total


def run_maintenance(backend: Backend, *, lease_seconds: float, heartbeat_interval: float) -> None:
    """One round of every maintenance service; called from each worker's heartbeat thread."""
    rescue_expired_leases(backend)
    release_finished_groups(backend.alias)
    remove_dead_workers(
        backend.alias, timedelta(seconds=max(lease_seconds * 2, heartbeat_interval * 5))
    )
    prune_finished_jobs(backend)
