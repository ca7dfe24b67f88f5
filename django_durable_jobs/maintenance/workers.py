"""Remove the rows of workers that stopped heartbeating (their jobs are the rescuer's)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from ..models import Worker


def remove_dead_workers(alias: str, dead_after: timedelta) -> int:
    """Delete worker rows whose last heartbeat is older than ``dead_after`` (database clock).

    The dead rows are found by a plain read and deleted by primary key, in
    order, still only if stale: a ``DELETE ... WHERE heartbeat_at < ...`` scans
    (and on MySQL locks, row by row) every worker's row, and deadlocked there
    with the live workers' heartbeat updates (10 workers, MariaDB).
    """
    cutoff = ExpressionWrapper(Now() - dead_after, output_field=DateTimeField())
    workers = Worker.objects.using(alias)
    dead = sorted(workers.filter(heartbeat_at__lt=cutoff).values_list("id", flat=True))
    if not dead:
        return 0
    deleted, _ = workers.filter(id__in=dead, heartbeat_at__lt=cutoff).delete()
    return deleted
