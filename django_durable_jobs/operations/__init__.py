"""What the admin and ``manage.py jobs`` both do: one implementation, one set of rules.

Job actions (``retry``, ``cancel``, ``run_now``, ``delete``, ``purge``) take
ids, a ``JobFilter`` or a queryset of jobs, work in bounded batches, and
return an ``OperationResult`` saying what they did and what they refused.
"""

from .health import HealthReport, check_health
from .history import history
from .jobs import cancel, delete, purge, retry, run_now
from .queues import QueueChange, pause, paused_queues, queue_names, resume, validate_queue_name
from .results import OperationResult, Refusal
from .retention import PruneResult, prune_expired, retention_periods
from .selection import JobFilter, Selection, select
from .stats import Count, Throughput, count_jobs, queue_stats, throughput, worker_stats

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
