"""Is the job system healthy? For container health checks and monitoring.

Unhealthy when fewer than ``min_workers`` workers have a fresh heartbeat, or
when the oldest due job of an active (not paused) queue has waited longer
than ``max_ready_age``. Paused queues are reported but never fail the check:
their backlog waits on purpose.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from ..conf import app_settings
from ..db import get_backend
from .queues import paused_queues
from .stats import backlog, worker_stats


@dataclasses.dataclass
class HealthReport:
    healthy: bool
    problems: list[str]
    checked_at: datetime
    workers_alive: int
    workers_stale: int
    queues: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "problems": self.problems,
            "checked_at": self.checked_at.isoformat(),
            "workers_alive": self.workers_alive,
            "workers_stale": self.workers_stale,
            "queues": self.queues,
        }


def check_health(
    *,
    database: str | None = None,
    min_workers: int = 1,
    max_ready_age: float | None = None,
    queues: list[str] | None = None,
    host: str | None = None,
) -> HealthReport:
    """Check workers' heartbeats and each queue's oldest due job.

    ``max_ready_age`` defaults to ``DURABLE_JOBS["HEALTH_MAX_READY_AGE"]``
    (None: no backlog check). ``queues`` limits the backlog check; ``host``
    counts only workers on that host (a container checking its own worker).
    """
    alias = database or app_settings.DATABASE
    if max_ready_age is None:
        max_ready_age = app_settings.HEALTH_MAX_READY_AGE
    now = get_backend(alias).db_now()
    problems: list[str] = []

    workers = [w for w in worker_stats(alias, now=now) if host is None or w.worker.hostname == host]
    alive = sum(1 for w in workers if w.alive)
    where = f" on host {host}" if host else ""
    if alive < min_workers:
        problems.append(
            f"{alive} worker{'s' if alive != 1 else ''}{where} with a heartbeat in the last "
            f"{app_settings.LEASE_SECONDS:g}s; {min_workers} needed"
        )

    paused = paused_queues(alias)
    report_queues = []
    for name, (due, oldest) in sorted(backlog(alias, now).items()):
        if queues and name not in queues:
            continue
        age = (now - oldest).total_seconds() if oldest else None
        report_queues.append(
            {"name": name, "paused": name in paused, "due": due, "oldest_due_age": age}
        )
        if name in paused or age is None or max_ready_age is None:
            continue
        if age > max_ready_age:
            problems.append(
                f"queue {name}: the oldest due job has waited {age:,.0f}s "
                f"(limit {max_ready_age:g}s; {due:,} due)"
            )
    return HealthReport(
        healthy=not problems,
        problems=problems,
        checked_at=now,
        workers_alive=alive,
        workers_stale=len(workers) - alive,
        queues=report_queues,
    )
