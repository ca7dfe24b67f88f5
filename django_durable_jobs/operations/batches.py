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
from typing import Any

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
    walk: str = "id",
) -> tuple[int, bool]:
    """Apply ``change`` to the rows of ``queryset`` meeting ``condition``, a batch at a time.

    Batches walk the ids upwards (``id > last``), so each row is looked at
    once, however many rows earlier batches changed. Each batch reads at most
    ``BATCH_SIZE`` ids, then hands ``change`` a queryset of those ids still
    meeting ``condition`` (a job that moved on in between is left alone);
    ``change`` returns how many rows it changed. ``skip_locked``
    (PostgreSQL) passes over rows another transaction holds, for work several
    processes share. Returns ``(changed, more_remain)``.

    ``walk`` names another column to walk upwards instead, one an index of the
    condition is ordered by (retention: ``finished_at``, the (status,
    finished_at) index): the next batch starts at the last value seen
    (``>=``: values repeat), so ``change`` must take its rows out of
    ``condition``, as a delete does. Walking ids there would have PostgreSQL
    read the primary key from the lowest id, past every row kept, to the
    first one to change, batch after batch (seconds each at 20 million rows,
    bench/large_tables.py).
    """
    alias = queryset.db
    candidates = queryset.filter(condition).order_by(walk)
    done = 0
    last = 0 if walk == "id" else None
    while True:
        rest = candidates
        if last is not None:
            rest = candidates.filter(**{f"{walk}__{'gt' if walk == 'id' else 'gte'}": last})
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - done)
        if size <= 0:
            return done, rest.exists()
        batch = _one_batch(alias, rest, condition, change, size, skip_locked, walk)
        if batch is None:
            return done, False
        changed, last = batch
        done += changed
        if not changed and walk != "id":
            return done, True  # rows read again and again, none changed: next round


def _one_batch(
    alias: str,
    candidates: QuerySet[Job],
    condition: Q,
    change: Callable[[QuerySet[Job]], int],
    size: int,
    skip_locked: bool,
    walk: str = "id",
) -> tuple[int, Any] | None:
    """One batch: ``(changed, last value of walk seen)``, or None when no candidate is left."""
    lock = skip_locked and connections[alias].features.has_select_for_update_skip_locked
    for attempt in range(_RETRIES):
        try:
            # Ids are read first (bounded), not in an IN (subquery): with
            # LIMIT and SKIP LOCKED, PostgreSQL may re-run such a subquery
            # and go past the limit.
            with transaction.atomic(using=alias) if lock else nullcontext():
                ids_query = candidates.select_for_update(skip_locked=True) if lock else candidates
                fields = ("id",) if walk == "id" else ("id", walk)
                rows = list(ids_query.values_list(*fields)[:size])
                if not rows:
                    return None
                ids = [row[0] for row in rows]
                changed = change(Job.objects.using(alias).filter(condition, id__in=ids))
                return changed, rows[-1][-1]
        except OperationalError as exc:
            if attempt == _RETRIES - 1 or not _transient(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    return None  # pragma: no cover - the loop returns or raises
