"""Per-vendor SQL behind one small interface; nothing outside ``db/`` writes vendor SQL."""

from __future__ import annotations

from django.db import connections

from .base import Backend, ClaimedJob, Outcome

__all__ = ["Backend", "ClaimedJob", "Outcome", "get_backend"]

_backends: dict[tuple[str, str], Backend] = {}


def get_backend(alias: str) -> Backend:
    """The backend for the database ``alias`` (PostgreSQL or SQLite)."""
    vendor = connections[alias].vendor
    key = (alias, vendor)
    backend = _backends.get(key)
    if backend is None:
        backend_class: type[Backend]
        if vendor == "postgresql":
            from .postgresql import PostgreSQLBackend

            backend_class = PostgreSQLBackend
        elif vendor == "sqlite":
            from .sqlite import SQLiteBackend

            backend_class = SQLiteBackend
        else:
            raise NotImplementedError(
                f"django-durable-jobs supports PostgreSQL and SQLite; the database {alias!r} is "
                f"{vendor}. Point DURABLE_JOBS['DATABASE'] at a PostgreSQL or SQLite alias."
            )
        backend = _backends[key] = backend_class(alias)
    return backend
