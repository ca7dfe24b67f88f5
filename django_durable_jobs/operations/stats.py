"""Numbers for the dashboard, ``jobs stats`` and ``jobs health``, cheap at millions of rows.

Counts are exact up to a cap and estimated above it (PostgreSQL's planner
statistics; SQLite reports "more than N"), so no page ever waits for an exact
``COUNT(*)`` over the whole history. Backlog figures (due jobs, oldest due
job) come from the partial index of ready jobs, which holds only the backlog.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count as CountRows
from django.db.models import Min, QuerySet
from django.db.models.functions import TruncMinute

from ..conf import app_settings
from ..constants import JobStatus
from ..db import get_backend
from ..models import FINISHED_STATUSES, READY, RUNNING, FailedAttempts, Job, Worker
from .batches import capped_count
from .queues import paused_queues, queue_names

#: Counts above this are estimated rather than counted.
DASHBOARD_COUNT_CAP = 1000


@dataclasses.dataclass(frozen=True)
class Count:
    """A number of jobs: ``exact``, an ``estimate`` (planner statistics) or ``at_least``."""

    value: int
    kind: str = "exact"

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    def __str__(self) -> str:
        if self.kind == "estimate":
            return f"~{self.value:,}"
        if self.kind == "at_least":
            return f"{self.value:,}+"
        return f"{self.value:,}"

    def __add__(self, other: Count) -> Count:
        kinds = {self.kind, other.kind}
        kind = (
            "exact" if kinds == {"exact"} else ("at_least" if "at_least" in kinds else "estimate")
        )
        return Count(self.value + other.value, kind)

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind}


def count_jobs(queryset: QuerySet[Job], cap: int = DASHBOARD_COUNT_CAP) -> Count:
    """Exact up to ``cap``; above it, the planner's estimate (never below the cap)."""
    value, exact = capped_count(queryset, cap)
    if exact:
        return Count(value)
    estimate = get_backend(queryset.db).estimate_count(queryset)
    if estimate is None or estimate <= cap:
        return Count(cap, "at_least")
    return Count(estimate, "estimate")


@dataclasses.dataclass
class QueueStats:
    name: str
    paused: bool
    counts: dict[str, Count]
    due: int = 0
    oldest_due: datetime | None = None
    oldest_due_age: float | None = None
    running: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "counts": {status: count.as_dict() for status, count in self.counts.items()},
            "due": self.due,
            "oldest_due": self.oldest_due.isoformat() if self.oldest_due else None,
            "oldest_due_age": self.oldest_due_age,
            "running": self.running,
        }


@dataclasses.dataclass
class WorkerStats:
    worker: Worker
    alive: bool
    heartbeat_age: float
    running: int

    def as_dict(self) -> dict[str, Any]:
        w = self.worker
        return {
            "id": str(w.id),
            "hostname": w.hostname,
            "pid": w.pid,
            "queues": w.queues,
            "queue_weights": w.queue_weights or None,
            "concurrency": w.concurrency,
            "started_at": w.started_at.isoformat(),
            "heartbeat_at": w.heartbeat_at.isoformat(),
            "heartbeat_age": round(self.heartbeat_age, 3),
            "alive": self.alive,
            "running": self.running,
        }


def backlog(alias: str, now: datetime) -> dict[str, tuple[int, datetime | None]]:
    """Per queue: due READY jobs and the oldest one's ``run_at`` (one partial-index scan)."""
    rows = (
        Job.objects.using(alias)
        .filter(READY, run_at__lte=now)
        .order_by()
        .values("queue")
        .annotate(due=CountRows("*"), oldest=Min("run_at"))
    )
    return {row["queue"]: (row["due"], row["oldest"]) for row in rows}


def queue_stats(
    database: str | None = None, *, now: datetime | None = None, cap: int = DASHBOARD_COUNT_CAP
) -> list[QueueStats]:
    """Per queue: counts by status, the due backlog, its oldest job, running jobs."""
    alias = database or app_settings.DATABASE
    now = now or get_backend(alias).db_now()
    paused = paused_queues(alias)
    due = backlog(alias, now)
    running = dict(
        Job.objects.using(alias)
        .filter(RUNNING)
        .order_by()
        .values("queue")
        .annotate(n=CountRows("*"))
        .values_list("queue", "n")
    )
    stats = []
    for name in queue_names(alias):
        jobs = Job.objects.using(alias).filter(queue=name)
        counts: dict[str, Count] = {
            status: count_jobs(jobs.filter(status=status), cap) for status in FINISHED_STATUSES
        }
        # READY in two parts, each on a partial index (the claim's by queue, the waiting
        # jobs'): counted as one, another queue's backlog was read row by row (2 s for a
        # queue with none beside a million READY, bench/large_tables.py).
        counts[JobStatus.READY] = count_jobs(jobs.filter(READY), cap) + count_jobs(
            jobs.filter(status=JobStatus.READY, waiting_for__gt=0), cap
        )
        counts[JobStatus.RUNNING] = Count(running.get(name, 0))
        due_count, oldest = due.get(name, (0, None))
        stats.append(
            QueueStats(
                name=name,
                paused=name in paused,
                counts={status: counts[status] for status in JobStatus.values},
                due=due_count,
                oldest_due=oldest,
                oldest_due_age=(now - oldest).total_seconds() if oldest else None,
                running=running.get(name, 0),
            )
        )
    return stats


def worker_stats(database: str | None = None, *, now: datetime | None = None) -> list[WorkerStats]:
    """Every worker row, alive when its last heartbeat is within ``LEASE_SECONDS``."""
    alias = database or app_settings.DATABASE
    now = now or get_backend(alias).db_now()
    fresh = timedelta(seconds=float(app_settings.LEASE_SECONDS))
    running = dict(
        Job.objects.using(alias)
        .filter(RUNNING)
        .order_by()
        .values("worker_id")
        .annotate(n=CountRows("*"))
        .values_list("worker_id", "n")
    )
    return [
        WorkerStats(
            worker=worker,
            alive=now - worker.heartbeat_at <= fresh,
            heartbeat_age=max(0.0, (now - worker.heartbeat_at).total_seconds()),
            running=running.get(worker.id, 0),
        )
        for worker in Worker.objects.using(alias).order_by("hostname", "pid")
    ]


@dataclasses.dataclass
class Throughput:
    """Per minute, oldest first (``minutes`` entries): jobs that succeeded, attempts that failed.

    Failures are attempts (``models.FailedAttempts``), not jobs: a job that
    fails twice and then succeeds counts twice here and once in ``succeeded``,
    and an operator's retry of a FAILED job does not erase its failures.
    """

    start: datetime
    succeeded: list[int]
    failed: list[int]

    @property
    def totals(self) -> tuple[int, int]:
        return sum(self.succeeded), sum(self.failed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "succeeded": self.succeeded,
            "failed": self.failed,
        }


def throughput(
    database: str | None = None, *, minutes: int = 60, now: datetime | None = None
) -> Throughput:
    """Jobs that succeeded and attempts that failed, per minute over the last ``minutes``.

    Two range scans: SUCCESSFUL jobs by ``finished_at``, and the failure tally.
    """
    alias = database or app_settings.DATABASE
    now = now or get_backend(alias).db_now()
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    rows = (
        Job.objects.using(alias)
        .filter(status=JobStatus.SUCCESSFUL, finished_at__gte=start)
        .order_by()
        .annotate(minute=TruncMinute("finished_at"))
        .values_list("minute")
        .annotate(n=CountRows("*"))
    )
    failures = (
        FailedAttempts.objects.using(alias)
        .filter(minute__gte=start)
        .values_list("minute", "failures")
    )
    succeeded, failed = [0] * minutes, [0] * minutes
    for series, counts in ((succeeded, rows), (failed, failures)):
        for minute, n in counts:
            index = int((minute - start).total_seconds() // 60)
            if 0 <= index < minutes:
                series[index] += n
    return Throughput(start=start, succeeded=succeeded, failed=failed)
