"""Per-vendor SQL behind one small interface; nothing outside ``db/`` writes vendor SQL."""

from __future__ import annotations

from django.db import connections

from .base import Backend, ClaimedJob, Outcome

__all__ = ["Backend", "ClaimedJob", "Outcome", "get_backend"]

_backends: dict[str, Backend] = {}


def get_backend(alias: str) -> Backend:
    """The backend for the database ``alias`` (PostgreSQL, MariaDB/MySQL or SQLite).

    Kept per alias (an alias's engine does not change while the process runs):
    every enqueue asks for it.
    """
    backend = _backends.get(alias)
    if backend is None:
        vendor = connections[alias].vendor
        backend_class: type[Backend]
        if vendor == "postgresql":
            from .postgresql import PostgreSQLBackend

            backend_class = PostgreSQLBackend
        elif vendor == "sqlite":
            from .sqlite import SQLiteBackend

            backend_class = SQLiteBackend
        elif vendor == "mysql":
            from .mysql import MySQLBackend

            backend_class = MySQLBackend
        else:
            raise NotImplementedError(
                f"django-durable-jobs supports PostgreSQL, MariaDB/MySQL and SQLite; the "
                f"database {alias!r} is {vendor}. Point DURABLE_JOBS['DATABASE'] at one of those."
            )
        backend = _backends[alias] = backend_class(alias)
    return backend
