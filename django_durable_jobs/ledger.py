"""The periodic-tick ledger: enqueue a tick exactly once, read an entry's history, prune it.

A tick is (entry name, fire time as a UTC instant). Its ledger row and its job
are written in one transaction, so a tick is either enqueued with its row or
not at all, and the unique (schedule, fire_time) constraint lets exactly one of
several schedulers win it. A row without a job records a tick that was
deliberately not run (entry disabled, or its previous run still pending with
``overlap=False``), so a scheduler that starts later does not take it for a
missed tick.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.utils import timezone

from .constants import JobStatus
from .db import get_backend
from .db.ticks import claim_tick
from .enqueue import insert_now
from .models import Job, ScheduleTick
from .periodic import PeriodicEntry

#: Ledger rows are kept this long (longer when an entry's ``max_delay`` needs it); the
#: newest row of each entry, and its newest row with a job, are always kept.
TICK_RETENTION = timedelta(days=7)


class TickOutcome(enum.Enum):
    ENQUEUED = "enqueued"
    TAKEN = "taken"  # another scheduler has this tick
    DISABLED = "disabled"
    OVERLAP = "overlap"  # the previous run is still READY or RUNNING


@dataclasses.dataclass(frozen=True)
class TickResult:
    outcome: TickOutcome
    job_id: int | None = None
    blocking_job_id: int | None = None  # with OVERLAP: the run still pending


def aware(value: datetime) -> datetime:
    """A datetime read from the database, as an aware UTC instant (also with USE_TZ=False)."""
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.astimezone(UTC)


def _db_value(value: datetime) -> datetime:
    return value if settings.USE_TZ else timezone.make_naive(value)


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def active_run(entry: PeriodicEntry, alias: str) -> int | None:
    """The id of a run of this entry that is still READY or RUNNING, if any."""
    return (
        Job.objects.using(alias)
        .filter(
            name=entry.job,
            status__in=[JobStatus.READY, JobStatus.RUNNING],
            meta__schedule=entry.name,
        )
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )


def enqueue_tick(
    entry: PeriodicEntry,
    fire_time: datetime,
    alias: str,
    *,
    enabled: bool = True,
    manual: bool = False,
) -> TickResult:
    """Record the tick and, if it is ours to run, enqueue its job: one transaction.

    Losing the tick to another scheduler is a quiet ``TAKEN``, never an error.
    """
    prepared = entry.prepare()
    meta: dict[str, str | bool] = {"schedule": entry.name, "fire_time": iso_utc(fire_time)}
    if manual:
        meta["manual"] = True
    prepared.meta_json = json.dumps(meta)
    with transaction.atomic(using=alias):
        tick_id = claim_tick(alias, entry.name, _db_value(fire_time))
        if tick_id is None:
            return TickResult(TickOutcome.TAKEN)
        if not enabled:
            return TickResult(TickOutcome.DISABLED)
        if not entry.overlap:
            blocking = active_run(entry, alias)
            if blocking is not None:
                if manual:  # a refused "run now" leaves no trace
                    transaction.set_rollback(True, using=alias)
                return TickResult(TickOutcome.OVERLAP, blocking_job_id=blocking)
        (job_id,) = insert_now([prepared], alias)
        ScheduleTick.objects.using(alias).filter(id=tick_id).update(job_id=job_id)
    return TickResult(TickOutcome.ENQUEUED, job_id)


def last_fire_times(names: list[str], alias: str) -> dict[str, datetime]:
    """The newest ledger fire time of each entry that has one."""
    rows = (
        ScheduleTick.objects.using(alias)
        .filter(schedule__in=names)
        .values("schedule")
        .annotate(last=Max("fire_time"))
        .values_list("schedule", "last")
    )
    return {name: aware(last) for name, last in rows}


def recorded_between(name: str, start: datetime, end: datetime, alias: str) -> int:
    """How many ledger rows ``name`` has in (start, end)."""
    return (
        ScheduleTick.objects.using(alias)
        .filter(schedule=name, fire_time__gt=_db_value(start), fire_time__lt=_db_value(end))
        .count()
    )


def last_run(name: str, alias: str) -> tuple[datetime, int] | None:
    """The fire time and job id of the entry's newest tick that enqueued a job."""
    row = (
        ScheduleTick.objects.using(alias)
        .filter(schedule=name, job_id__isnull=False)
        .order_by("-fire_time")
        .values_list("fire_time", "job_id")
        .first()
    )
    if row is None or row[1] is None:
        return None
    return aware(row[0]), row[1]


def prune_ticks(alias: str, now: datetime, keep: timedelta = TICK_RETENTION) -> int:
    """Delete ledger rows older than ``keep``, but never an entry's newest row or newest run."""
    newer = ScheduleTick.objects.filter(
        schedule=OuterRef("schedule"), fire_time__gt=OuterRef("fire_time")
    )
    deleted, _ = (
        ScheduleTick.objects.using(alias)
        .filter(fire_time__lt=_db_value(now - keep))
        .filter(Exists(newer))
        .filter(Q(job_id__isnull=True) | Exists(newer.filter(job_id__isnull=False)))
        .delete()
    )
    return deleted


class Clock(Protocol):
    """Where the scheduler reads the time and waits; tests pass a fake one."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> None: ...


class DatabaseClock:
    """The database's clock (PostgreSQL ``now()``; the host clock for SQLite)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def now(self) -> datetime:
        return aware(get_backend(self.alias).db_now())

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(seconds)
