"""The periodic-tick ledger's one vendor statement: claim a tick, quietly, or learn it is taken.

``INSERT ... ON CONFLICT DO NOTHING RETURNING`` reads the same on PostgreSQL and
SQLite (3.35+). The loser of a race gets no row back and no error, so its
transaction goes on (a caught IntegrityError would abort it on PostgreSQL).
On PostgreSQL a concurrent insert of the same key waits for the first
transaction to end, then does nothing if it committed.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections
from django.utils import timezone

from ..models import ScheduleTick

TICK_TABLE = ScheduleTick._meta.db_table

_CLAIM_TICK_SQL = (
    f"INSERT INTO {TICK_TABLE} (schedule, fire_time, created_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (schedule, fire_time) DO NOTHING RETURNING id"
)


def claim_tick(alias: str, schedule: str, fire_time: datetime) -> int | None:
    """Insert the ledger row of (schedule, fire_time); its id, or None if it already exists."""
    connection = connections[alias]
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_TICK_SQL, [schedule, adapt(fire_time), adapt(timezone.now())])
        row = cursor.fetchone()
    return row[0] if row else None
