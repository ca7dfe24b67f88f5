"""Bounded batches and capped counts: how operations touch millions of rows safely.

A batch reads at most ``BATCH_SIZE`` ids, then changes those rows with one
short statement that re-checks the operation's condition on each of them, so
a job that moved on meanwhile (claimed, finished) is left alone. Nothing but
ids and counts is loaded into Python, and no lock outlives its batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

from django.db import OperationalError, connections, transaction
from django.db.models import Q, QuerySet

from ..connections import is_retryable_conflict
from ..models import Job

BATCH_SIZE = 1000
#: Refused jobs of a filter are counted up to this many (then reported as "N+").
COUNT_CAP = 10_000
_RETRIES = 3


def capped_count(queryset: QuerySet[Job], cap: int) -> tuple[int, bool]:
    """Count up to ``cap`` rows; return ``(count, exact)`` (``exact`` is False at the cap)."""
    count = queryset.order_by().values("id")[: cap + 1].count()
    if count > cap:
        return cap, False
    return count, True


def _transient(exc: OperationalError) -> bool:
    """A deadlock, a serialization failure or a busy SQLite file: worth another try."""
    return is_retryable_conflict(exc) or "database is locked" in str(exc).lower()


def run_in_batches(
    queryset: QuerySet[Job],
    condition: Q,
    change: Callable[[QuerySet[Job]], int],
    *,
    limit: int | None = None,
    skip_locked: bool = False,
) -> tuple[int, bool]:
    """Apply ``change`` to the rows of ``queryset`` meeting ``condition``, a batch at a time.

    Batches walk the ids upwards (``id > last``), so each row is looked at
    once, however many rows earlier batches changed. Each batch reads at most
    ``BATCH_SIZE`` ids, then hands ``change`` a queryset of those ids still
    meeting ``condition`` (a job that moved on in between is left alone);
    ``change`` returns how many rows it changed. ``skip_locked``
    (PostgreSQL) passes over rows another transaction holds, for work several
    processes share. Returns ``(changed, more_remain)``.
    """
    alias = queryset.db
    candidates = queryset.filter(condition).order_by("id")
    done = 0
    last = 0
    while True:
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - done)
        if size <= 0:
            return done, candidates.filter(id__gt=last).exists()
        batch = _one_batch(
            alias, candidates.filter(id__gt=last), condition, change, size, skip_locked
        )
        if batch is None:
            return done, False
        changed, last = batch
        done += changed


def _one_batch(
    alias: str,
    candidates: QuerySet[Job],
    condition: Q,
    change: Callable[[QuerySet[Job]], int],
    size: int,
    skip_locked: bool,
) -> tuple[int, int] | None:
    """One batch: ``(changed, highest id seen)``, or None when no candidate is left."""
    lock = skip_locked and connections[alias].features.has_select_for_update_skip_locked
    for attempt in range(_RETRIES):
        try:
            # Ids are read first (bounded), not in an IN (subquery): with
            # LIMIT and SKIP LOCKED, PostgreSQL may re-run such a subquery
            # and go past the limit.
            with transaction.atomic(using=alias) if lock else nullcontext():
                ids_query = candidates.select_for_update(skip_locked=True) if lock else candidates
                ids = list(ids_query.values_list("id", flat=True)[:size])
                if not ids:
                    return None
                changed = change(Job.objects.using(alias).filter(condition, id__in=ids))
                return changed, ids[-1]
        except OperationalError as exc:
            if attempt == _RETRIES - 1 or not _transient(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    return None  # pragma: no cover - the loop returns or raises
