"""Maintenance services run by every worker, coordinated through the database.

One service per module, each safe to run from many workers at once:

* ``rescuer``: jobs whose worker is gone go back to READY (or FAILED);
* ``expirer``: READY jobs past their expiry time end CANCELLED, "expired";
* ``groups``: group callbacks whose members ended some other way are released;
* ``workers``: rows of workers that stopped heartbeating are removed;
* ``pruner``: finished jobs past their retention are deleted in small batches.
"""

from __future__ import annotations

from datetime import timedelta

from ..db import Backend
from .expirer import expire_due_jobs
from .groups import release_finished_groups
from .pruner import PRUNE_TIME_SHARE, prune_finished_jobs
from .rescuer import RESCUE_BATCH, rescue_dead_worker, rescue_expired_leases
from .workers import remove_dead_workers

__all__ = [
    "RESCUE_BATCH",
    "expire_due_jobs",
    "prune_finished_jobs",
    "release_finished_groups",
    "remove_dead_workers",
    "rescue_dead_worker",
    "rescue_expired_leases",
    "run_maintenance",
]


def run_maintenance(backend: Backend, *, lease_seconds: float, heartbeat_interval: float) -> None:
    """One round of every maintenance service; called from each worker's heartbeat thread."""
    rescue_expired_leases(backend)
    expire_due_jobs(backend)  # before the groups: an expired member releases its callback now
    release_finished_groups(backend.alias)
    remove_dead_workers(
        backend.alias, timedelta(seconds=max(lease_seconds * 2, heartbeat_interval * 5))
    )
    prune_finished_jobs(backend, budget=heartbeat_interval * PRUNE_TIME_SHARE)
