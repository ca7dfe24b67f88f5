"""The database entries' one vendor statement: serialize their writers, read the clock.

Writers of ``ScheduleEntry`` take this lock first in their transaction, so
their versions are handed out in commit order and a scheduler that has seen
version V has seen every change before it. PostgreSQL: a transaction-level
advisory lock (released at commit or rollback). SQLite: a write that changes
nothing, which takes the database's one write lock (it allows a single
writer) while the snapshot is still fresh. MariaDB/MySQL: a named lock
(``GET_LOCK``), which belongs to the session, so it is taken before the
transaction begins and released after it ends, committed or rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.db import OperationalError, connections, transaction

from ..models import ScheduleEntry

ENTRY_TABLE = ScheduleEntry._meta.db_table
#: Any constant: the advisory lock's key ("ddjsched" in ASCII, within a bigint).
_LOCK_KEY = 0x64646A7363686564

_SQLITE_LOCK = f"UPDATE {ENTRY_TABLE} SET version = version WHERE id = -1"


_MYSQL_LOCK = "ddj:schedule-entries"
#: Seconds a writer waits for another writer's transaction (then it fails, loudly).
_MYSQL_LOCK_WAIT = 60


@contextmanager
def entries_transaction(alias: str) -> Iterator[datetime]:
    """A transaction that holds the writers' lock from its start; yields the database clock."""
    connection = connections[alias]
    if connection.vendor != "mysql":
        with transaction.atomic(using=alias):
            yield lock_entries(alias)
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s)", [_MYSQL_LOCK, _MYSQL_LOCK_WAIT])
        if cursor.fetchone()[0] != 1:
            raise OperationalError(
                f"another writer of the schedule entries held their lock for "
                f"{_MYSQL_LOCK_WAIT} seconds; try again."
            )
    try:
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            yield cursor.fetchone()[0].replace(tzinfo=UTC)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [_MYSQL_LOCK])


def lock_entries(alias: str) -> datetime:
    """Take the writers' lock (inside a transaction); return the database clock after it."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            # clock_timestamp(), not now(): now() is when a transaction that waited began.
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0].astimezone(UTC)
        cursor.execute(_SQLITE_LOCK)
    return datetime.now(UTC)
