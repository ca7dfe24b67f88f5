"""The one ``DURABLE_JOBS`` setting: defaults, lazy reading, and cache reset in tests.

Read values as ``app_settings.CONCURRENCY``; nothing here is read at import time,
so ``override_settings(DURABLE_JOBS=...)`` works. Values are validated by the
system checks in ``checks.py``, not here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Database alias that holds the job tables.
    "DATABASE": "default",
    # Allowed queue names; None allows any well-formed name.
    "QUEUES": None,
    "DEFAULT_QUEUE": "default",
    # Attempts per job, including the first.
    "DEFAULT_MAX_ATTEMPTS": 5,
    # Seconds an attempt may run; None means no limit.
    "DEFAULT_TIMEOUT": None,
    # Default retry backoff: BASE * 2 ** (attempt - 1) seconds, capped at MAX,
    # with +/- JITTER (a fraction) of randomness.
    "RETRY_BASE_DELAY": 5.0,
    "RETRY_MAX_DELAY": 3600.0,
    "RETRY_JITTER": 0.2,
    # Largest accepted size of the JSON-encoded arguments, in bytes.
    "MAX_PAYLOAD_BYTES": 1_000_000,
    # Worker defaults (each can be overridden on the runworker command line).
    "CONCURRENCY": 8,
    # Most jobs claimed ahead of free threads. The worker claims ahead only as
    # many as its threads finish during one claim round trip: deep batches for
    # fast jobs, none for slow ones (None: 32 x CONCURRENCY, per queue for a
    # worker with queue weights, which claims per queue; 0: never ahead). A
    # worker that is killed (not stopped) gives these back only when their
    # lease expires (uncounted: they never started).
    "PREFETCH": None,
    # Seconds an idle worker waits before looking for jobs again (a fallback to
    # LISTEN/NOTIFY on PostgreSQL; the only wake-up on SQLite).
    "POLL_INTERVAL": 1.0,
    # Wake idle workers with LISTEN/NOTIFY on PostgreSQL. Turn off behind a
    # transaction-pooling PgBouncer.
    "LISTEN_NOTIFY": True,
    # PostgreSQL: prepare the hot statements (claim, record, insert) once per
    # connection. Turn off behind a transaction-pooling PgBouncer older than 1.21.
    "PREPARED_STATEMENTS": True,
    # Seconds a claim stays valid without a heartbeat; after that the job is rescued.
    "LEASE_SECONDS": 60.0,
    # Seconds between worker heartbeats (renews the worker row and its leases).
    "HEARTBEAT_INTERVAL": 10.0,
    # Seconds running jobs get to finish after SIGTERM before they are released.
    "SHUTDOWN_TIMEOUT": 30.0,
    # Periodic jobs, keyed by a stable name (see docs/howto/periodic-jobs.md).
    "PERIODIC": {},
    # How long finished jobs are kept, per final status: seconds (or a
    # timedelta); None keeps them forever. Workers delete older ones in small
    # batches; keys left out keep these defaults.
    "RETENTION": {
        "SUCCESSFUL": 7 * 24 * 3600,
        "FAILED": 30 * 24 * 3600,
        "CANCELLED": 30 * 24 * 3600,
    },
    # Seconds the oldest due READY job of an active queue may wait before
    # `manage.py jobs health` fails and the admin dashboard flags the queue;
    # None disables the check.
    "HEALTH_MAX_READY_AGE": 300.0,
    # OpenTelemetry spans for enqueues and attempts, the trace context carried in
    # each job (needs opentelemetry-api; docs/howto/monitoring.md).
    "OPENTELEMETRY": False,
    # Dotted paths of job middleware factories, wrapping every attempt of every job
    # (first listed = outermost; docs/howto/flow-control.md#job-middleware).
    "MIDDLEWARE": [],
    # Tests only: run each job in the enqueuing process as soon as the enqueuing
    # transaction commits, instead of leaving it to a worker (docs/howto/testing.md).
    "IMMEDIATE": False,
}


class AppSettings:
    """Attribute access to ``settings.DURABLE_JOBS`` merged over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        if self._cache is None:
            user = getattr(settings, "DURABLE_JOBS", None) or {}
            self._cache = {**DEFAULTS, **(user if isinstance(user, dict) else {})}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        # Called only for a name not yet in the instance's __dict__: the value is
        # kept there, so later reads are plain attribute reads (enqueue reads
        # several settings per job).
        if name.startswith("_") or name not in DEFAULTS:
            raise AttributeError(f"DURABLE_JOBS has no setting {name!r}")
        value = self.as_dict()[name]
        setattr(self, name, value)
        return value

    def reset(self) -> None:
        for name in DEFAULTS:
            self.__dict__.pop(name, None)
        self._cache = None


app_settings = AppSettings()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "DURABLE_JOBS":
        app_settings.reset()
