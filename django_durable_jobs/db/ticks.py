"""The periodic-tick ledger's one vendor statement: claim a tick, quietly, or learn it is taken.

``INSERT ... ON CONFLICT DO NOTHING RETURNING`` reads the same on PostgreSQL and
SQLite (3.35+); MariaDB/MySQL answer with a duplicate-key error instead. The
loser of a race gets no row back and no error, so its transaction goes on (a
caught IntegrityError would abort it on PostgreSQL).
On PostgreSQL a concurrent insert of the same key waits for the first
transaction to end, then does nothing if it committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections
from django.utils import timezone

from ..models import ScheduleTick

TICK_TABLE = ScheduleTick._meta.db_table

_CLAIM_TICK_SQL = (
    f"INSERT INTO {TICK_TABLE} (schedule, fire_time, created_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (schedule, fire_time) DO NOTHING RETURNING id"
)


_INSERT_TICK_SQL = f"INSERT INTO {TICK_TABLE} (schedule, fire_time, created_at) VALUES (%s, %s, %s)"


def claim_tick(alias: str, schedule: str, fire_time: datetime) -> int | None:
    """Insert the ledger row of (schedule, fire_time); its id, or None if it already exists."""
    connection = connections[alias]
    adapt = connection.ops.adapt_datetimefield_value
    params = [schedule, adapt(fire_time), adapt(timezone.now())]
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            return _claim_tick_mysql(cursor, params)
        cursor.execute(_CLAIM_TICK_SQL, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _claim_tick_mysql(cursor: Any, params: list[Any]) -> int | None:
    """MySQL has no ON CONFLICT ... RETURNING: the duplicate-key error is the answer. InnoDB
    rolls back only the failed statement, so the caller's transaction goes on; a concurrent
    insert of the same key waits for the first transaction, as on PostgreSQL."""
    from .mysql import is_duplicate_key, one_inserter

    try:
        with one_inserter(cursor, "t", f"{params[0]}@{params[1]}"):
            cursor.execute(_INSERT_TICK_SQL, params)
            return cursor.lastrowid  # (before the lock's release resets it)
    except IntegrityError as exc:
        if is_duplicate_key(exc):
            return None
        raise
