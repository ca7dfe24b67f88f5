"""What every database backend provides, and the rows it exchanges with the worker."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from ..constants import STATUS_BITS, JobStatus
from ..models import FINISHED_STATUSES, FailedAttempts, Job, QueueState, RateStart, Worker
from ..rates import QueueGate, queue_gates
from ..rows import ClaimedJob, Outcome

JOB_TABLE = Job._meta.db_table
QUEUE_TABLE = QueueState._meta.db_table
WORKER_TABLE = Worker._meta.db_table
FAILURES_TABLE = FailedAttempts._meta.db_table
RATE_TABLE = RateStart._meta.db_table

#: Columns an insert writes; every NOT NULL column without a database default is here.
INSERT_COLUMNS = (
    "name",
    "queue",
    "priority",
    "status",
    "args",
    "kwargs",
    "errors",
    "attempts",
    "max_attempts",
    "timeout",
    "run_at",
    "enqueued_at",
    "lease_token",
    "unique_key",
    "unique_states",
    "concurrency_key",
    "concurrency_limit",
    "run_id",
    "parent_id",
    "waiting_for",
    "meta",
    "rate_key",
    "rate_limit",
    "rate_period",
    "expires_at",
)

#: Columns a claim returns, in ``ClaimedJob`` order.
CLAIM_COLUMNS = (
    "id",
    "name",
    "queue",
    "priority",
    "args",
    "kwargs",
    "attempts",
    "max_attempts",
    "timeout",
    "lease_token",
    "meta",
    "run_id",
    "unique_states",
    "expires_at",
)


def gates_for(queues: list[str] | None) -> tuple[QueueGate, ...]:
    """The queue limits a claim from these queues (None: all) must enforce."""
    gates = queue_gates()
    if gates and queues:
        wanted = set(queues)
        return tuple(gate for gate in gates if gate.queue in wanted)
    return gates


def align_inserted(jobs: list[Any], rows: list[tuple[Any, ...]]) -> list[int | None]:
    """Match ``(id, unique_key)`` rows of one insert to its input jobs, in input order.

    Keyed jobs match by key (a key taken by another job, or by an earlier job
    of the same batch, gives None); the other ids come from one sequence, row by
    row, so in ascending order they follow the input order.
    """
    by_key = {key: job_id for job_id, key in rows if key is not None}
    plain = iter(sorted(job_id for job_id, key in rows if key is None))
    result: list[int | None] = []
    for job in jobs:
        if job.unique_key is None:
            result.append(next(plain))
        else:
            result.append(by_key.pop(job.unique_key, None))
    return result


@dataclasses.dataclass(frozen=True)
class BackendSettings:
    """What a backend acts on, typed and read once when it is made (not the global)."""

    #: Prepare the hot inserts once per connection (where ``supports_prepared_statements``).
    prepared_statements: bool = True
    #: Send wake-up notifications (where ``supports_listen_notify``).
    listen_notify: bool = True

    @classmethod
    def from_app_settings(cls) -> BackendSettings:
        from ..conf import app_settings

        return cls(
            prepared_statements=bool(app_settings.PREPARED_STATEMENTS),
            listen_notify=bool(app_settings.LISTEN_NOTIFY),
        )


class Backend:
    """SQL for one database alias. Methods use the calling thread's Django connection."""

    vendor = ""
    # What the database can do, in the style of Django's ``features.supports_*``:
    # callers branch on these, never on the vendor or on ``hasattr``.
    #: Idle workers can be woken by NOTIFY (``listen_connection``); else they poll.
    supports_listen_notify = False
    #: Concurrent claims skip rows another transaction holds (``FOR UPDATE SKIP
    #: LOCKED``); without it the database has one writer at a time (SQLite).
    supports_skip_locked = False
    #: One ``INSERT ... RETURNING`` gives the ids of many inserted rows.
    supports_returning = False
    #: Hot statements can be prepared once per connection (``PREPARED_STATEMENTS``).
    supports_prepared_statements = False
    #: Workers' poll interval where the project sets no ``POLL_INTERVAL`` (None: its default).
    default_poll_interval: float | None = None

    def __init__(self, alias: str, settings: BackendSettings | None = None) -> None:
        self.alias = alias
        self.settings = settings or BackendSettings()

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    # -- enqueue -----------------------------------------------------------
    def insert(self, jobs: list[Any], *, notify: bool) -> list[int | None]:
        """Insert prepared jobs in as few statements as possible; ids in input order.

        None marks a unique job whose key another job holds (nothing inserted).
        """
        raise NotImplementedError

    def insert_statements(self, count: int) -> int:
        """How many statements ``insert`` needs for ``count`` jobs."""
        return 1

    def release_waiting(self, counts: dict[int, int]) -> list[int]:
        """Lower ``waiting_for`` of these jobs by these counts (never below 0); wake workers.

        Returns the ids that reached 0 (ready to be claimed now).
        """
        raise NotImplementedError

    def notify(self, queues: set[str]) -> None:
        """Wake workers listening for these queues (no-op where unsupported)."""

    # -- worker ------------------------------------------------------------
    def claim(
        self, *, worker_id: uuid.UUID, queues: list[str] | None, limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        """Lease up to ``limit`` ready jobs, highest priority first; never block on locked rows."""
        raise NotImplementedError

    def claim_by_id(
        self, job_id: int, *, worker_id: uuid.UUID, lease_seconds: float
    ) -> ClaimedJob | None:
        """Lease the READY job ``job_id`` whatever its ``run_at``, or None (immediate mode, tests).

        Portable ORM statements, fenced by the row's token: the second of two
        racing callers updates nothing. Gates (concurrency keys, rate limits)
        are not consulted: the caller asked for this very job now.
        """
        jobs = Job.objects.using(self.alias)
        row = (
            jobs.filter(id=job_id, status=JobStatus.READY, waiting_for=0)
            .exclude(expires_at__lte=timezone.now())  # expires=: never started late
            .values(*CLAIM_COLUMNS)
            .first()
        )
        if row is None:
            return None
        changes: dict[str, Any] = {
            "status": JobStatus.RUNNING,
            "attempts": row["attempts"] + 1,
            "started_at": None,
            "finished_at": None,
            "worker_id": worker_id,
            "lease_token": row["lease_token"] + 1,
            "lease_expires_at": timezone.now() + timedelta(seconds=lease_seconds),
        }
        if not row["unique_states"] & STATUS_BITS[JobStatus.RUNNING]:
            changes["unique_key"] = None
        fenced = jobs.filter(id=job_id, status=JobStatus.READY, lease_token=row["lease_token"])
        if not fenced.update(**changes):
            return None
        return ClaimedJob(
            **{
                **{name: row[name] for name in CLAIM_COLUMNS if name != "attempts"},
                "attempt": row["attempts"] + 1,
                "lease_token": row["lease_token"] + 1,
            }
        )

    def record(self, outcomes: list[Outcome]) -> set[int]:
        """Write outcomes, each only if its lease token still holds; return the ids written.

        A RUNNING job's ``started_at`` is set from the outcome's duration if no
        start mark set it before. The failed attempts written
        (``Outcome.is_failed_attempt``) are added to ``FailedAttempts`` atomically
        with them.
        """
        raise NotImplementedError

    def mark_started(self, marks: list[tuple[int, int, float]]) -> set[int]:
        """Record that these jobs started ``(id, lease_token, seconds ago)``; the ids still held.

        The evidence a rescue needs to charge an attempt (see ``worker.pool``).
        """
        raise NotImplementedError

    def renew_leases(self, held: dict[int, int], lease_seconds: float) -> dict[int, bool]:
        """Extend the leases of these jobs ``{id: lease_token}``, each only if its token holds.

        Returns ``{id: cancel_requested}`` for the jobs renewed. Rows locked by
        another statement are skipped (renewed at the next heartbeat).
        """
        raise NotImplementedError

    def give_back(
        self,
        *,
        limit: int,
        outcome: str,
        message: str,
        final_message: str,
        worker_id: uuid.UUID | None = None,
        job_ids: list[int] | None = None,
        uncount: bool = False,
    ) -> list[tuple[int, str, bool]]:
        """Return RUNNING jobs whose worker is gone to READY; ``(id, new status, counted)``.

        Without ``worker_id``: the jobs whose lease expired; with it: that
        worker's jobs (it is known dead), or only ``job_ids`` of them. A job
        known to have started (``started_at`` set) is charged its attempt, with
        a history entry, and is FAILED when no attempt is left; a job that had
        not started goes back uncounted, with no entry, and is flagged
        ``orphaned`` in its meta. ``uncount`` charges nothing (the worker was
        stopped, it did not crash). Several callers never take the same row.
        The attempts charged are added to ``FailedAttempts`` atomically with them.
        """
        raise NotImplementedError

    def listen_connection(self) -> Any:
        """A new connection that receives the wake-up NOTIFYs (``supports_listen_notify``)."""
        raise NotImplementedError(f"{self.vendor} has no LISTEN/NOTIFY: workers poll")

    def prepare_worker_connection(self) -> None:
        """Per-connection setup a worker needs (SQLite: WAL)."""

    def db_now(self) -> datetime:
        """The database clock."""
        raise NotImplementedError

    def seconds_to_next_permit(self) -> float | None:
        """Seconds until the next logged rate-limited start leaves its window (None: none).

        An idle worker with rate-limited jobs waits no longer than this, so a
        freed permit is used at once rather than at the next poll.
        """
        now = self.db_now()
        first = (
            RateStart.objects.using(self.alias)
            .filter(until__gt=now)
            .order_by("until")
            .values_list("until", flat=True)
            .first()
        )
        return None if first is None else (first - now).total_seconds()

    # -- operations ----------------------------------------------------------
    def distinct_queues(self) -> list[str]:
        """Every queue name that has jobs, in order.

        Loose index scans: one index probe per queue (``queue > previous``)
        instead of reading every row, so it stays fast on millions of jobs. No
        index covers ``queue`` for every row (the history's and the backlog's
        are partial), so each status group is scanned on its own index, with
        the index's own condition; running and waiting jobs are few.
        """
        with self.connection.cursor() as cursor:
            cursor.execute(_DISTINCT_QUEUES_SQL)
            return [row[0] for row in cursor.fetchall()]

    def distinct_names(self) -> list[str]:
        """The job names in the table, in order: finished jobs' by a loose index scan (the
        history's name index), READY and RUNNING ones from the first ``BACKLOG_SAMPLE`` rows
        (no index has their names; a backlog's names are mostly the registered ones anyway).
        """
        with self.connection.cursor() as cursor:
            cursor.execute(_DISTINCT_NAMES_SQL)
            return [row[0] for row in cursor.fetchall()]

    def estimate_count(self, queryset: Any) -> int | None:
        """The planner's row estimate for ``queryset``; None where there is none."""
        return None

    @staticmethod
    def _row_to_claimed(row: tuple[Any, ...]) -> ClaimedJob:
        return ClaimedJob(*row)

    # -- progress ------------------------------------------------------------
    def write_progress(self, rows: list[tuple[int, int, str]]) -> set[int]:
        """Set ``progress`` (JSON text) of these jobs ``(id, lease_token, json)``; the ids written.

        Fenced like an outcome: only a RUNNING job whose token still holds.
        """
        raise NotImplementedError


# The conditions of models.FINISHED and models.READY, the partial indexes' own.
_FINISHED_CONDITION = "status IN ({})".format(", ".join(f"'{s}'" for s in FINISHED_STATUSES))
_READY_CONDITION = f"status = '{JobStatus.READY}' AND waiting_for = 0"


def _loose_scan(name: str, condition: str, column: str = "queue") -> str:
    """A recursive CTE ``name(name)`` of the distinct ``column`` values of the rows that
    meet ``condition``, one index probe per value (an index on ``column`` under it)."""
    return f"""{name}(name) AS (
    SELECT MIN({column}) FROM {JOB_TABLE} WHERE {condition}
    UNION ALL
    SELECT (SELECT MIN({column}) FROM {JOB_TABLE} WHERE {condition} AND {column} > {name}.name)
    FROM {name} WHERE {name}.name IS NOT NULL
)"""


_DISTINCT_QUEUES_SQL = f"""
WITH RECURSIVE {_loose_scan("finished", _FINISHED_CONDITION)},
{_loose_scan("backlog", _READY_CONDITION)}
SELECT name FROM finished WHERE name IS NOT NULL
UNION SELECT name FROM backlog WHERE name IS NOT NULL
UNION SELECT queue FROM {JOB_TABLE} WHERE status = '{JobStatus.RUNNING}'
UNION SELECT queue FROM {JOB_TABLE} WHERE status = '{JobStatus.READY}' AND waiting_for > 0
ORDER BY 1
"""

#: Rows of the backlog (READY and RUNNING) whose names the job-name filter lists.
BACKLOG_SAMPLE = 10_000

# Each sample reads a partial index (ready: in its own order; running; waiting), never
# the table: with no order, PostgreSQL may read a 20-million-row history from its start
# to reach a backlog at its end (2.2 s, bench/large_tables.py).
_DISTINCT_NAMES_SQL = f"""
WITH RECURSIVE {_loose_scan("finished", _FINISHED_CONDITION, column="name")}
SELECT name FROM finished WHERE name IS NOT NULL
UNION SELECT b.name FROM (
    SELECT name FROM {JOB_TABLE} WHERE {_READY_CONDITION}
    ORDER BY priority DESC, run_at, id
    LIMIT {BACKLOG_SAMPLE}
) AS b
UNION SELECT r.name FROM (
    SELECT name FROM {JOB_TABLE} WHERE status = '{JobStatus.RUNNING}' LIMIT {BACKLOG_SAMPLE}
) AS r
UNION SELECT w.name FROM (
    SELECT name FROM {JOB_TABLE} WHERE status = '{JobStatus.READY}' AND waiting_for > 0
    LIMIT {BACKLOG_SAMPLE}
) AS w
ORDER BY 1
"""
