"""End READY jobs whose expiry time passed (``expires=``): CANCELLED, reason "expired".

The claim never starts such a job (its candidates exclude it), so without this
service it would only sit in the backlog. Each batch takes the longest-expired
jobs from a partial index (READY jobs with an expiry) with ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, or inside the single SQLite writer, so any number of
workers can run it; the update re-checks the condition on every row, so a job
that was claimed in between is left alone. CANCELLED, not FAILED: nothing went
wrong with the job, its sender said it was no longer worth running; it counts
in no failure figure, a group's callback still runs (``groups`` releases it in
the same maintenance round), and ``then`` follow-ups do not.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

from django.db import OperationalError, connections, transaction
from django.db.models import F, Q, TextField, Value
from django.db.models.functions import Concat, Now
from django.utils import timezone

from ..constants import AttemptOutcome, JobStatus
from ..db import Backend
from ..db.expressions import JSONArrayAppend, JSONObject, TimestampText
from ..models import Job

logger = logging.getLogger("django_durable_jobs.maintenance")

#: Jobs per batch, and batches per round (bounded, so a heartbeat is never late
#: because of a large backlog of expired jobs; the next round goes on).
EXPIRE_BATCH = 500
EXPIRE_MAX_BATCHES = 10

#: The jobs this service ends: READY (waiting to start, to retry, or for a group's
#: members) and past their expiry, on the database clock.
DUE = Q(status=JobStatus.READY, expires_at__isnull=False, expires_at__lte=Now())


def _updates() -> dict[str, object]:
    from ..operations.jobs import _unique_key_in  # operations import the db layer

    entry = JSONObject(
        attempt=F("attempts"),
        outcome=AttemptOutcome.EXPIRED.value,
        exception_class=None,
        message=Concat(
            Value("not started before it expired at "),
            TimestampText("expires_at"),
            output_field=TextField(),
        ),
        traceback=None,
        worker=None,
        started_at=None,
        at=timezone.now().isoformat(),
    )
    return {
        "status": JobStatus.CANCELLED,
        "finished_at": Now(),
        "errors": JSONArrayAppend("errors", entry),
        "unique_key": _unique_key_in(JobStatus.CANCELLED),
    }


def expire_due_jobs(
    backend: Backend, *, batch_size: int = EXPIRE_BATCH, max_batches: int = EXPIRE_MAX_BATCHES
) -> int:
    """One round: end up to ``batch_size * max_batches`` expired READY jobs; how many."""
    alias = backend.alias
    lock = connections[alias].features.has_select_for_update_skip_locked
    due = Job.objects.using(alias).filter(DUE).order_by("expires_at")
    total = 0
    for _ in range(max_batches):
        try:
            # PostgreSQL: lock the batch, skipping rows another expirer holds. SQLite:
            # no transaction (a read that turns into a write could not wait for the
            # lock); the update re-checks every row instead.
            with transaction.atomic(using=alias) if lock else nullcontext():
                ids = list(
                    (due.select_for_update(skip_locked=True) if lock else due).values_list(
                        "id", flat=True
                    )[:batch_size]
                )
                if not ids:
                    break
                done = Job.objects.using(alias).filter(DUE, id__in=ids).update(**_updates())
        except OperationalError as exc:
            if "database is locked" not in str(exc).lower():
                raise
            logger.debug("expiry skipped this round: the database is locked by another writer")
            break
        total += done
        if len(ids) < batch_size:
            break
    if total:
        logger.info("%s job(s) expired before they started: now CANCELLED", total)
    return total
