"""Per-vendor SQL behind one small interface; nothing outside ``db/`` writes vendor SQL."""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.db import connections

from .base import Backend, BackendSettings, ClaimedJob, Outcome

__all__ = ["Backend", "BackendSettings", "ClaimedJob", "Outcome", "get_backend"]

_backends: dict[str, Backend] = {}


def get_backend(alias: str) -> Backend:
    """The backend for the database ``alias`` (PostgreSQL, MariaDB/MySQL or SQLite).

    Kept per alias (an alias's engine does not change while the process runs):
    every enqueue asks for it. It acts on the ``BackendSettings`` of that moment.
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
        backend = _backends[alias] = backend_class(alias, BackendSettings.from_app_settings())
    return backend


def _forget_backends(*, setting: str, **kwargs: Any) -> None:
    """New settings (tests' ``override_settings``): the next ``get_backend`` reads them."""
    if setting in ("DURABLE_JOBS", "DATABASES"):
        _backends.clear()


setting_changed.connect(_forget_backends)
