"""Deleting finished jobs older than ``DURABLE_JOBS["RETENTION"]`` allows, in small batches.

Workers call ``prune_expired`` from their maintenance round; ``manage.py jobs
purge`` calls it on demand. Each batch is one short ``DELETE`` of at most
``batches.BATCH_SIZE`` rows, the oldest first, read from the (status,
finished_at) index (not in id order: see ``batches.run_in_batches``); on
PostgreSQL the batch skips rows another worker is deleting (``SKIP LOCKED``),
so any number of workers can prune at once without waiting on each other.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from ..conf import DEFAULTS, app_settings
from ..constants import JobStatus
from ..db import get_backend
from ..models import Job
from . import batches


def retention_periods() -> dict[str, timedelta | None]:
    """Per final status, how long its jobs are kept (None: forever), defaults filled in."""
    configured = app_settings.RETENTION
    merged: dict[str, Any] = {**DEFAULTS["RETENTION"], **(configured or {})}
    periods: dict[str, timedelta | None] = {}
    for status in sorted(JobStatus.finished()):
        value = merged.get(status)
        if value is None or isinstance(value, timedelta):
            periods[status] = value
        else:
            periods[status] = timedelta(seconds=float(value))
    return periods


@dataclasses.dataclass
class PruneResult:
    deleted: dict[str, int]
    remaining: bool

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def prune_expired(
    database: str | None = None,
    *,
    max_batches: int | None = None,
    now: datetime | None = None,
    periods: dict[str, timedelta | None] | None = None,
) -> PruneResult:
    """Delete finished jobs past their retention; at most ``max_batches`` batches per status.

    ``remaining`` says whether a status stopped at its batch limit with more to delete.
    """
    alias = database or app_settings.DATABASE
    now = now or get_backend(alias).db_now()
    periods = retention_periods() if periods is None else periods
    limit = None if max_batches is None else max_batches * batches.BATCH_SIZE
    deleted: dict[str, int] = {}
    remaining = False
    for status, period in periods.items():
        if period is None:
            continue
        count, more = batches.run_in_batches(
            Job.objects.using(alias),
            Q(status=status, finished_at__lt=now - period),
            lambda batch: batch.delete()[0],
            limit=limit,
            skip_locked=True,
            walk="finished_at",  # oldest first, through the (status, finished_at) index
        )
        deleted[status] = count
        remaining = remaining or more
    return PruneResult(deleted, remaining)
