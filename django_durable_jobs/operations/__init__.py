"""What the admin and ``manage.py jobs`` both do: one implementation, one set of rules.

Job actions (``retry``, ``cancel``, ``run_now``, ``delete``, ``purge``) take
ids, a ``JobFilter`` or a queryset of jobs, work in bounded batches, and
return an ``OperationResult`` saying what they did and what they refused.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .health import HealthReport, check_health
    from .job_history import history
    from .jobs import cancel, delete, purge, retry, run_now
    from .queues import (
        QueueChange,
        pause,
        paused_queues,
        queue_names,
        resume,
        validate_queue_name,
    )
    from .results import OperationResult, Refusal
    from .retention import PruneResult, prune_expired, retention_periods
    from .selection import JobFilter, Selection, select
    from .stats import Count, Throughput, count_jobs, queue_stats, throughput, worker_stats

#: Where each name lives. Imported on first use: the admin module (autodiscovered in
#: every process of a project with the admin, workers included) needs two or three of
#: these at import time, and a worker none.
_HOMES = {
    "HealthReport": "health",
    "check_health": "health",
    "history": "job_history",
    "cancel": "jobs",
    "delete": "jobs",
    "purge": "jobs",
    "retry": "jobs",
    "run_now": "jobs",
    "QueueChange": "queues",
    "pause": "queues",
    "paused_queues": "queues",
    "queue_names": "queues",
    "resume": "queues",
    "validate_queue_name": "queues",
    "OperationResult": "results",
    "Refusal": "results",
    "PruneResult": "retention",
    "prune_expired": "retention",
    "retention_periods": "retention",
    "JobFilter": "selection",
    "Selection": "selection",
    "select": "selection",
    "Count": "stats",
    "Throughput": "stats",
    "count_jobs": "stats",
    "queue_stats": "stats",
    "throughput": "stats",
    "worker_stats": "stats",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


__all__ = [
    "Count",
    "HealthReport",
    "JobFilter",
    "OperationResult",
    "PruneResult",
    "QueueChange",
    "Refusal",
    "Selection",
    "Throughput",
    "cancel",
    "check_health",
    "count_jobs",
    "delete",
    "history",
    "pause",
    "paused_queues",
    "prune_expired",
    "purge",
    "queue_names",
    "queue_stats",
    "resume",
    "retention_periods",
    "retry",
    "run_now",
    "select",
    "throughput",
    "validate_queue_name",
    "worker_stats",
]
