"""How worker threads treat Django's database connections between jobs.

A worker keeps its connections open across jobs whatever ``CONN_MAX_AGE``
says (reconnecting per job made a peer 2.3x slower). Between jobs it drops only
a connection that is unusable or was left in a transaction, and it empties
the query log that ``DEBUG=True`` fills, so memory stays flat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db import Error as DjangoDatabaseError

logger = logging.getLogger("django_durable_jobs.worker")

#: Errors that mean "the database could not be reached", not "the query was wrong".
CONNECTION_ERRORS = (OperationalError, InterfaceError)
#: psycopg's ``TransactionStatus.IDLE``: connected, outside any transaction.
_PG_IDLE = 0


class Backoff:
    """Exponential delays for retry loops: ``first`` seconds doubling up to ``cap``."""

    def __init__(self, first: float = 0.5, cap: float = 15.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


def tidy_connections() -> None:
    """Reset this thread's connections for the next job (see the module docstring)."""
    for connection in connections.all(initialized_only=True):
        _tidy(connection)


def _tidy(connection) -> None:
    connection.queries_log.clear()
    if connection.connection is None:
        return
    # (connection.autocommit, not get_autocommit(): the connection is open, and
    # get_autocommit() would check that again through Django's async guard.)
    if (
        connection.in_atomic_block
        or connection.autocommit != connection.settings_dict["AUTOCOMMIT"]
    ):
        _close(connection)
    elif connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            _close(connection)
    # Never expire by age: the worker owns the connection's lifetime.
    connection.close_at = None


class _LeftOpen(Exception):
    """Handed to the ``__exit__`` of atomic blocks a job left open, so they roll back."""


def transaction_depths() -> dict[str, int]:
    """How many atomic blocks are open on each of this thread's connections (before a job)."""
    return {
        connection.alias: len(connection.atomic_blocks)
        for connection in connections.all(initialized_only=True)
        if connection.atomic_blocks
    }


def _driver_in_transaction(connection) -> bool:
    """A transaction Django knows nothing of (a raw ``BEGIN``), or autocommit switched off."""
    raw = connection.connection
    if raw is None:
        return False
    if connection.autocommit != connection.settings_dict["AUTOCOMMIT"]:
        return True
    vendor = connection.vendor
    if vendor == "sqlite":
        return bool(raw.in_transaction)
    if vendor == "postgresql":
        return raw.pgconn.transaction_status != _PG_IDLE
    if vendor == "mysql" and connection.mysql_is_mariadb:
        # (mysqlclient does not expose the server's in-transaction flag; MySQL has no
        # such variable, so a raw transaction left open there is not detected.)
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT @@in_transaction")
                return bool(cursor.fetchone()[0])
        except Exception:  # the connection is broken (server gone): closing it is right too
            return True
    return False


def after_job(outer: dict[str, int] | None = None) -> list[str]:
    """Roll back what a job left open on this thread's connections; the aliases it affected.

    Called as each job returns, before its outcome is written: on SQLite an
    open transaction holds the database's only write lock, and nothing else
    (the outcome, heartbeats, other processes' enqueues) could be written
    until it ended. Atomic blocks the job entered are exited as if they
    raised (rolling back to their savepoints, or the whole transaction); a
    raw transaction is ended by closing the connection, which rolls it back
    on the server.

    ``outer`` is ``transaction_depths()`` from before an inline job: blocks that
    were open then (a test's transaction, around immediate mode) are not the
    job's, and the caller's connections are left as they are. Without it (a
    worker's executor thread), the same pass also tidies the connections for
    the next job (see ``tidy_connections``): one walk over them per job.
    """
    leaked: list[str] = []
    for connection in connections.all(initialized_only=True):
        base = outer.get(connection.alias, 0) if outer else 0
        if len(connection.atomic_blocks) > base:
            leaked.append(connection.alias)
            try:
                for block in reversed(connection.atomic_blocks[base:]):
                    block.__exit__(_LeftOpen, _LeftOpen(), None)
            except Exception:
                logger.warning("rolling back a transaction left open failed", exc_info=True)
                _close(connection)
                continue
        if not base and _driver_in_transaction(connection):
            if connection.alias not in leaked:
                leaked.append(connection.alias)
            _close(connection)
        if outer is None:
            _tidy(connection)
    return leaked


def close_connection(alias: str) -> None:
    """Drop this thread's connection to ``alias`` so the next query reconnects."""
    _close(connections[alias])


def close_all() -> None:
    for connection in connections.all(initialized_only=True):
        _close(connection)


def _close(connection) -> None:
    try:
        if connection.in_atomic_block:
            # A job left an atomic block open: forget it, the server rolls back on close.
            connection.in_atomic_block = False
            connection.atomic_blocks = []
            connection.savepoint_ids = []
            connection.needs_rollback = False
        connection.closed_in_transaction = False
        connection.close()
    except DatabaseError:
        logger.debug("closing a broken connection to %s failed", connection.alias, exc_info=True)
        connection.connection = None


#: PostgreSQL SQLSTATEs that mean "this server cannot take writes now", whatever the
#: error class: read-only transaction (a replica, or default_transaction_read_only),
#: shutting down, starting up.
_UNAVAILABLE_SQLSTATES = {"25006", "57P01", "57P02", "57P03", "08000", "08003", "08006"}
_UNAVAILABLE_SQLITE = ("database is locked", "readonly database", "disk i/o error")
#: MySQL/MariaDB error numbers of the same meaning: can't connect (2002, 2003),
#: server gone or connection lost (2006, 2013, 2055), shutting down (1053, 1077),
#: connection killed (1927, 4031: idle), read-only (1290 --read-only, 1792, 1836).
_UNAVAILABLE_MYSQL = {1053, 1077, 1290, 1792, 1836, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
#: Deadlock (1213) and lock wait timeout (1205): the statement lost a race.
_RETRYABLE_MYSQL = {1205, 1213}
_READ_ONLY_MYSQL = {1290, 1792, 1836}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached or written.

    Connection errors qualify, and so do errors that mean the server refuses
    writes for now (read-only, shutting down). Query errors — a statement
    timeout, a deadlock, a constraint — do not: the query was wrong, not the
    database gone.
    """
    # Only database errors are looked at (never str() of a user's exception).
    errors = [error for error in _chain(exc) if _is_database_error(error)]
    sqlstates = [state for error in errors if (state := getattr(error, "sqlstate", None))]
    if sqlstates:
        return any(state in _UNAVAILABLE_SQLSTATES or state.startswith("08") for state in sqlstates)
    for error in errors:
        if (number := _mysql_errno(error)) is not None:
            return number in _UNAVAILABLE_MYSQL
        if type(error).__name__ == "InterfaceError":
            return True
        is_driver = not isinstance(error, DjangoDatabaseError)
        if is_driver and type(error).__name__ == "OperationalError":
            if type(error).__module__.startswith("psycopg"):
                # Without a SQLSTATE, psycopg's OperationalError means the connection
                # itself failed (refused, reset, closed by the server).
                return True
            text = str(error).lower()
            return any(marker in text for marker in _UNAVAILABLE_SQLITE)
    return False


def _is_database_error(error: BaseException) -> bool:
    if isinstance(error, DjangoDatabaseError):
        return True
    module = type(error).__module__
    return module.startswith(("psycopg", "sqlite3", "MySQLdb")) and isinstance(error, Exception)


def _mysql_errno(error: BaseException) -> int | None:
    """The error number of a mysqlclient error (its first argument), else None."""
    if not type(error).__module__.startswith("MySQLdb"):
        return None
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


#: Deadlock detected, serialization failure: the statement lost a race; run it again.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def is_retryable_conflict(exc: BaseException) -> bool:
    """A transient conflict with a concurrent statement: retrying is the fix."""
    return any(
        getattr(error, "sqlstate", None) in _RETRYABLE_SQLSTATES
        or _mysql_errno(error) in _RETRYABLE_MYSQL
        for error in _chain(exc)
    )


def is_read_only_error(exc: BaseException) -> bool:
    """The session was read-only (a replica, or read-only by default): not the job's fault."""
    return any(
        getattr(error, "sqlstate", None) == "25006" or _mysql_errno(error) in _READ_ONLY_MYSQL
        for error in _chain(exc)
    )


def database_writable(alias: str) -> bool:
    """Probe, on a fresh connection, whether ``alias`` answers and accepts writes.

    Fresh, because a session keeps the read-only default it connected with: an
    old session would still say "read-only" after a failover back.
    """
    connection = connections[alias]
    _close(connection)
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT current_setting('transaction_read_only')")
                return cursor.fetchone()[0] == "off"
            if connection.vendor == "mysql":
                # (MariaDB before 11.1 names it tx_read_only; MySQL 8 only transaction_read_only.)
                mariadb = getattr(connection, "mysql_is_mariadb", False)
                session = "tx_read_only" if mariadb else "transaction_read_only"
                cursor.execute(f"SELECT @@global.read_only, @@session.{session}")
                return not any(cursor.fetchone())
            cursor.execute("SELECT 1")
            return True
    except DatabaseError:
        _close(connection)
        return False
