"""Delete finished jobs past their retention, a few bounded batches per round."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from ..db import Backend
from ..models import FailedAttempts, RateStart

logger = logging.getLogger("django_durable_jobs.maintenance")

#: Seconds between two pruning rounds of one process (sooner while a backlog remains).
PRUNE_INTERVAL = 60.0
#: How long the per-minute failure tally is kept (the dashboard shows the last hour).
FAILED_ATTEMPTS_KEPT = timedelta(days=7)
#: Batches (of ``operations.batches.BATCH_SIZE`` rows) per status in one round.
PRUNE_MAX_BATCHES = 5
#: While expired rows remain, rounds go on for up to this share of the heartbeat
#: interval (2 s of every 10 s): one round alone (500 rows/s per status and worker)
#: fell behind a busy worker's finished jobs, and a round of batches at 20 million
#: rows takes well under a second (bench/large_tables.py), so the heartbeat's lease
#: renewal is late by a fraction of its interval at most.
PRUNE_TIME_SHARE = 0.2

#: Rate-limit starts out of their window deleted per batch (small rows, one index).
RATE_STARTS_BATCH = 10_000

_next_prune: dict[str, float] = {}
_prune_lock = threading.Lock()


def prune_finished_jobs(backend: Backend, *, force: bool = False, budget: float = 0.0) -> int:
    """Delete finished jobs past ``DURABLE_JOBS["RETENTION"]``, in bounded rounds of batches.

    One round of batches, then more while expired rows remain and ``budget``
    seconds have not passed.

    Also drops the failure tally's minutes older than ``FAILED_ATTEMPTS_KEPT``
    and the rate limits' logged starts that have left their window.

    Runs at most every ``PRUNE_INTERVAL`` seconds per process and database,
    and again at the next call while expired jobs remain.
    """
    from ..operations.retention import prune_expired  # operations import models and db

    with _prune_lock:
        now = time.monotonic()
        if not force and now < _next_prune.get(backend.alias, 0.0):
            return 0
        _next_prune[backend.alias] = now + PRUNE_INTERVAL
    deadline = time.monotonic() + budget
    result = prune_expired(backend.alias, max_batches=PRUNE_MAX_BATCHES)
    while result.remaining and time.monotonic() < deadline:
        more = prune_expired(backend.alias, max_batches=PRUNE_MAX_BATCHES)
        for status, count in more.deleted.items():
            result.deleted[status] = result.deleted.get(status, 0) + count
        result.remaining = more.remaining
    # At most one row per minute: a week's worth is 10,080 small rows.
    FailedAttempts.objects.using(backend.alias).filter(
        minute__lt=backend.db_now() - FAILED_ATTEMPTS_KEPT
    ).delete()
    starts_remain = prune_rate_starts(backend)
    if result.remaining or starts_remain:
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


def prune_rate_starts(backend: Backend) -> bool:
    """Delete rate-limit starts past their window, in bounded batches; True if more remain."""
    expired = RateStart.objects.using(backend.alias).filter(until__lt=backend.db_now())
    for _ in range(PRUNE_MAX_BATCHES):
        ids = list(expired.order_by("until").values_list("id", flat=True)[:RATE_STARTS_BATCH])
        if ids:
            RateStart.objects.using(backend.alias).filter(id__in=ids).delete()
        if len(ids) < RATE_STARTS_BATCH:
            return False
    return True
