"""The database entries' one vendor statement: serialize their writers, read the clock.

Writers of ``ScheduleEntry`` take this lock first in their transaction, so
their versions are handed out in commit order and a scheduler that has seen
version V has seen every change before it. PostgreSQL: a transaction-level
advisory lock (released at commit or rollback). SQLite: a write that changes
nothing, which takes the database's one write lock (it allows a single
writer) while the snapshot is still fresh. MariaDB/MySQL: a row lock on this
app's first row in ``django_migrations``, a row that exists wherever the tables
do (named locks belong to the session, not the transaction, and an admin save
commits a while after the version is handed out).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connections

from ..models import ScheduleEntry

ENTRY_TABLE = ScheduleEntry._meta.db_table
#: Any constant: the advisory lock's key ("ddjsched" in ASCII, within a bigint).
_LOCK_KEY = 0x64646A7363686564

_SQLITE_LOCK = f"UPDATE {ENTRY_TABLE} SET version = version WHERE id = -1"
# By primary key: the table has no index on (app, name), and a locking scan of it deadlocked
# now and then between racing writers (2 in 60 edits). The subquery's read locks nothing.
_MYSQL_LOCK = (
    "SELECT id FROM django_migrations WHERE id = (SELECT MIN(id) FROM django_migrations "
    "WHERE app = 'django_durable_jobs') FOR UPDATE"
)


def lock_entries(alias: str) -> datetime:
    """Take the writers' lock (inside a transaction); return the database clock after it."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
            # clock_timestamp(), not now(): now() is when a transaction that waited began.
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0].astimezone(UTC)
        if connection.vendor == "mysql":
            cursor.execute(_MYSQL_LOCK)
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            return cursor.fetchone()[0].replace(tzinfo=UTC)
        cursor.execute(_SQLITE_LOCK)
    return datetime.now(UTC)
