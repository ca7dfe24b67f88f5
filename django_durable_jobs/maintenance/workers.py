"""Remove the rows of workers that stopped heartbeating (their jobs are the rescuer's)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now

from ..models import Worker


def remove_dead_workers(alias: str, dead_after: timedelta) -> int:
    """Delete worker rows whose last heartbeat is older than ``dead_after`` (database clock)."""
    cutoff = ExpressionWrapper(Now() - dead_after, output_field=DateTimeField())
    deleted, _ = Worker.objects.using(alias).filter(heartbeat_at__lt=cutoff).delete()
    return deleted
