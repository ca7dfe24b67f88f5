"""SQLite, the embedded default: one writer at a time, so claims take the write lock up front.

A claim is one ``BEGIN IMMEDIATE`` transaction around an ``UPDATE ... RETURNING``.
"database is locked" (another process held the lock past the busy timeout)
means "nothing claimed this time", never a crash. Times come from this host's
clock, which is the database's clock for an embedded database.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..constants import STATUS_BITS, JobStatus
from ..meta import ORPHANED
from ..rates import QUEUE_KEY_PREFIX, QueueGate, job_rate_limits_declared
from .base import (
    CLAIM_COLUMNS,
    FAILURES_TABLE,
    INSERT_COLUMNS,
    JOB_TABLE,
    QUEUE_TABLE,
    RATE_TABLE,
    Backend,
    ClaimedJob,
    Outcome,
    align_inserted,
    gates_for,
)

logger = logging.getLogger("django_durable_jobs.db")

# SQLite allows 32,766 bound parameters per statement; 25 columns x 1,000 rows fits.
INSERT_CHUNK = 1000

_INSERT_ROW = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"

# The claim holds SQLite's single write lock, so counting what fills a gate
# (the RUNNING jobs of a concurrency key, the logged starts of a rate key, a
# limited queue's room, computed just before) is exact. Full gates are skipped;
# within one claim, each gate's jobs are ranked so no more than its room start.
_RUNNING_WITH_KEY = (
    f"(SELECT count(*) FROM {JOB_TABLE} AS x "
    "WHERE x.status = 'RUNNING' AND x.concurrency_key = r.concurrency_key)"
)
_STARTS_OF_KEY = (
    f"(SELECT count(*) FROM {RATE_TABLE} AS s WHERE s.key = r.rate_key AND s.until > %s)"
)
_CLAIM_SQL = f"""
WITH {{gates}}candidates AS (
    SELECT r.id, r.queue, r.priority, r.run_at, r.concurrency_key{{rate_column}}{{gate_column}},
           r.concurrency_limit - {_RUNNING_WITH_KEY} AS slots
    FROM {JOB_TABLE} AS r{{gate_join}}
    WHERE r.status = 'READY' AND r.waiting_for = 0 AND r.run_at <= %s
      AND (r.expires_at IS NULL OR r.expires_at > %s)
      {{queue_filter}}
      AND NOT EXISTS (SELECT 1 FROM {QUEUE_TABLE} AS q WHERE q.name = r.queue AND q.paused)
      AND (r.concurrency_key IS NULL OR {_RUNNING_WITH_KEY} < r.concurrency_limit)\
{{rate_filter}}{{gate_filter}}
    ORDER BY r.priority DESC, r.run_at, r.id
    LIMIT %s
), allowed AS (
    SELECT ranked.id FROM (
        SELECT c.id, c.concurrency_key, c.slots{{rate_rank}}{{gate_rank}},
               row_number() OVER (PARTITION BY c.concurrency_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS n
        FROM candidates AS c
    ) AS ranked
    WHERE (ranked.concurrency_key IS NULL OR ranked.n <= ranked.slots){{rate_allowed}}\
{{gate_allowed}}
)
UPDATE {JOB_TABLE} SET
    status = 'RUNNING',
    attempts = attempts + 1,
    started_at = NULL,
    finished_at = NULL,
    worker_id = %s,
    lease_token = lease_token + 1,
    lease_expires_at = %s,
    unique_key = CASE WHEN unique_states & {STATUS_BITS[JobStatus.RUNNING]} = 0
                      THEN NULL ELSE unique_key END
WHERE id IN (SELECT id FROM allowed)
RETURNING {", ".join(CLAIM_COLUMNS)}, rate_key, rate_period
"""
# Job rate limits, only where the process declares one (see postgresql.py); the
# first and the last ``%s`` are the claim's time (a start counts until then).
_RATED = {
    "rate_column": f""", r.rate_key,
           r.rate_limit - {_STARTS_OF_KEY} AS permits""",
    "rate_filter": f"""
      AND (r.rate_key IS NULL OR {_STARTS_OF_KEY} < r.rate_limit)""",
    "rate_rank": """, c.rate_key, c.permits,
               row_number() OVER (PARTITION BY c.rate_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS rn""",
    "rate_allowed": "\n      AND (ranked.rate_key IS NULL OR ranked.rn <= ranked.permits)",
}
# Limited queues (DURABLE_JOBS["QUEUES"]): their room, counted in Python in the
# claim's transaction, joined as a VALUES list (one row per limited queue).
_GATED = {
    "gates": "gates(queue, free) AS (VALUES {rows}), ",
    "gate_column": ", g.free AS queue_free",
    "gate_join": " LEFT JOIN gates AS g ON g.queue = r.queue",
    "gate_filter": "\n      AND (g.free IS NULL OR g.free > 0)",
    "gate_rank": """, c.queue_free,
               row_number() OVER (PARTITION BY c.queue
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS qn""",
    "gate_allowed": "\n      AND (ranked.queue_free IS NULL OR ranked.qn <= ranked.queue_free)",
}
_QUEUE_RUNNING_SQL = f"SELECT count(*) FROM {JOB_TABLE} WHERE status = 'RUNNING' AND queue = %s"
_STARTS_SQL = f"SELECT count(*) FROM {RATE_TABLE} WHERE key = %s AND until > %s"
_LOG_START_SQL = f"INSERT INTO {RATE_TABLE} (key, at, until) VALUES (%s, %s, %s)"

_RECORD_SQL = f"""
UPDATE {JOB_TABLE} SET
    status = %s,
    result = %s,
    errors = CASE WHEN %s IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(%s)) END,
    attempts = attempts - %s,
    run_at = CASE WHEN %s = 'READY' THEN %s ELSE run_at END,
    started_at = COALESCE(started_at, %s),
    finished_at = %s,
    lease_expires_at = NULL,
    unique_key = CASE WHEN %s THEN unique_key ELSE NULL END
WHERE id = %s AND lease_token = %s AND status = 'RUNNING'
"""

# See postgresql.py: only a job known to have started is charged, with an entry.
_COUNTED = "(%(uncount)s = 0 AND started_at IS NOT NULL)"
_FINAL = f"({_COUNTED} AND attempts >= max_attempts)"
_GIVE_BACK_SQL = f"""
UPDATE {JOB_TABLE} SET
    status = CASE WHEN {_FINAL} THEN 'FAILED' ELSE 'READY' END,
    attempts = attempts - CASE WHEN {_COUNTED} THEN 0 ELSE 1 END,
    finished_at = CASE WHEN {_FINAL} THEN %(now)s ELSE NULL END,
    run_at = %(now)s,
    lease_expires_at = NULL,
    errors = CASE WHEN started_at IS NULL THEN errors
                  ELSE json_insert(errors, '$[#]', json_object(
        'attempt', attempts,
        'outcome', %(outcome)s,
        'exception_class', NULL,
        'message', CASE WHEN {_FINAL} THEN %(final_message)s ELSE %(message)s END,
        'traceback', NULL,
        'worker', worker_id,
        'at', %(at)s
    )) END,
    meta = CASE WHEN %(uncount)s = 0 AND started_at IS NULL
                THEN json_set(meta, '$.{ORPHANED}',
                              COALESCE(json_extract(meta, '$.{ORPHANED}'), 0) + 1)
                ELSE meta END,
    unique_key = CASE
        WHEN {_FINAL} AND unique_states & {STATUS_BITS[JobStatus.FAILED]} = 0 THEN NULL
        WHEN NOT {_FINAL} AND unique_states & {STATUS_BITS[JobStatus.READY]} = 0 THEN NULL
        ELSE unique_key END
WHERE id IN (
    SELECT id FROM {JOB_TABLE}
    WHERE status = 'RUNNING' AND {{condition}}
    ORDER BY id
    LIMIT %(limit)s
)
RETURNING id, status, started_at
"""
# (started_at itself, not "started_at IS NOT NULL": SQLite 3.40 returns 1 for that
# expression in a RETURNING clause even when started_at is NULL.)


# Failed attempts per minute (see models.FailedAttempts), in the writer's transaction.
_TALLY_SQL = f"""
INSERT INTO {FAILURES_TABLE} (minute, failures) VALUES (%s, %s)
ON CONFLICT (minute) DO UPDATE SET failures = failures + excluded.failures
"""


def _expires_at(job: Any, now: datetime) -> datetime | None:
    """When a prepared job expires, with ``now`` the insert's time."""
    if job.expires_in is not None:
        return now + timedelta(seconds=job.expires_in)
    return job.expires_at


def is_locked_error(exc: BaseException) -> bool:
    message = str(exc).lower()
    return "database is locked" in message or "database table is locked" in message


class SQLiteBackend(Backend):
    vendor = "sqlite"
    supports_returning = True

    def _dt(self, value: datetime | None) -> str | None:
        return self.connection.ops.adapt_datetimefield_value(value)

    def _uuid(self, value: uuid.UUID | None) -> str | None:
        return value.hex if value is not None else None

    def _tally(self, cursor: Any, failures: int, now: datetime) -> None:
        """Add ``failures`` failed attempts to ``now``'s minute, in the open transaction."""
        if failures:
            minute = now.replace(second=0, microsecond=0)
            cursor.execute(_TALLY_SQL, [self._dt(minute), failures])

    @contextmanager
    def _write_transaction(self) -> Iterator[Any]:
        """``BEGIN IMMEDIATE``: take the write lock now, or wait (busy timeout) and fail."""
        connection = self.connection
        if connection.in_atomic_block:
            # Already inside the caller's transaction (an atomic job): join it.
            with connection.cursor() as cursor:
                yield cursor
            return
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def prepare_worker_connection(self) -> None:
        """Switch the file to WAL, which lets readers (web, admin) go on while a worker writes.

        The mode is stored in the file, so this happens once per database; a
        worker that loses the race to another one switching it has nothing to do.
        """
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0].lower() in ("wal", "memory"):
                return
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except OperationalError as exc:
                if not is_locked_error(exc):
                    raise
                logger.debug("another process is switching the database to WAL")

    def insert_statements(self, count: int) -> int:
        return -(-count // INSERT_CHUNK)

    def insert(self, jobs: list[Any], *, notify: bool) -> list[int | None]:
        now = timezone.now()
        ids: list[int | None] = []
        several = self.insert_statements(len(jobs)) > 1  # then all or nothing, here
        with (
            transaction.atomic(using=self.alias) if several else nullcontext(),
            self.connection.cursor() as cursor,
        ):
            for start in range(0, len(jobs), INSERT_CHUNK):
                chunk = jobs[start : start + INSERT_CHUNK]
                params: list[Any] = []
                for job in chunk:
                    run_at = job.run_at or (now + timedelta(seconds=job.delay or 0.0))
                    params += [
                        job.name,
                        job.queue,
                        job.priority,
                        JobStatus.READY,
                        job.args_json,
                        job.kwargs_json,
                        "[]",
                        0,
                        job.max_attempts,
                        job.timeout,
                        self._dt(run_at),
                        self._dt(now),
                        0,
                        job.unique_key,
                        job.unique_states,
                        job.concurrency_key,
                        job.concurrency_limit,
                        self._uuid(job.run_id),
                        job.parent_id,
                        job.waiting_for,
                        job.meta_json,
                        job.rate_key,
                        job.rate_limit,
                        job.rate_period,
                        self._dt(_expires_at(job, now)),
                    ]
                conflict = any(job.unique_key is not None for job in chunk)
                cursor.execute(
                    f"INSERT INTO {JOB_TABLE} ({', '.join(INSERT_COLUMNS)}) "
                    f"VALUES {', '.join([_INSERT_ROW] * len(chunk))} "
                    + (
                        "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING "
                        if conflict
                        else ""
                    )
                    + "RETURNING id, unique_key",
                    params,
                )
                ids += align_inserted(chunk, cursor.fetchall())
        return ids

    def release_waiting(self, counts: dict[int, int]) -> list[int]:
        released: list[int] = []
        with self._write_transaction() as cursor:
            for job_id, amount in counts.items():
                cursor.execute(
                    f"UPDATE {JOB_TABLE} SET waiting_for = MAX(waiting_for - %s, 0) "
                    "WHERE id = %s RETURNING waiting_for",
                    [amount, job_id],
                )
                row = cursor.fetchone()
                if row is not None and row[0] == 0:
                    released.append(job_id)
        return released

    def claim(
        self, *, worker_id: uuid.UUID, queues: list[str] | None, limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        gates = gates_for(queues)
        queue_filter = ""
        queue_params: list[Any] = []
        if queues:
            queue_filter = f"AND r.queue IN ({', '.join(['%s'] * len(queues))})"
            queue_params = list(queues)
        rated = job_rate_limits_declared()
        shape = dict.fromkeys([*_RATED, *_GATED], "")
        shape["queue_filter"] = queue_filter
        if rated:
            shape.update(_RATED)
        if gates:
            shape.update(_GATED)
            shape["gates"] = shape["gates"].format(rows=", ".join(["(%s, %s)"] * len(gates)))
        sql = _CLAIM_SQL.format(**shape)
        try:
            with self._write_transaction() as cursor:
                now = timezone.now()
                stamp = self._dt(now)
                params: list[Any] = []
                for gate in gates:
                    params += [gate.queue, self._queue_room(cursor, gate, stamp)]
                if rated:
                    params.append(stamp)  # the permits of a rate key
                params += [stamp, stamp, *queue_params]  # run_at, expires_at, queues
                if rated:
                    params.append(stamp)  # the rate-key filter
                params += [
                    limit,
                    self._uuid(worker_id),
                    self._dt(now + timedelta(seconds=lease_seconds)),
                ]
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                self._log_starts(cursor, rows, gates, now, rated=rated)
        except OperationalError as exc:
            if is_locked_error(exc):
                logger.debug("claim skipped: the database is locked by another writer")
                return []
            raise
        jobs = [self._claimed(row[: len(CLAIM_COLUMNS)]) for row in rows]
        jobs.sort(key=lambda job: (-job.priority, job.id))
        return jobs

    @staticmethod
    def _queue_room(cursor: Any, gate: QueueGate, stamp: str | None) -> int:
        """How many more jobs of a limited queue may start now (under the write lock)."""
        room = []
        if gate.concurrency is not None:
            cursor.execute(_QUEUE_RUNNING_SQL, [gate.queue])
            room.append(gate.concurrency - cursor.fetchone()[0])
        if gate.rate is not None:
            cursor.execute(_STARTS_SQL, [QUEUE_KEY_PREFIX + gate.queue, stamp])
            room.append(gate.rate.starts - cursor.fetchone()[0])
        return min(room)

    def _log_starts(
        self,
        cursor: Any,
        rows: list[Any],
        gates: tuple[QueueGate, ...],
        now: datetime,
        *,
        rated: bool,
    ) -> None:
        """Log the starts of rate-limited jobs, in the claim's transaction."""
        queue_periods = {gate.queue: gate.rate.period for gate in gates if gate.rate is not None}
        starts = []
        stamp = self._dt(now)
        queue_column = CLAIM_COLUMNS.index("queue")
        for row in rows:
            key, period = row[-2], row[-1]
            if rated and key is not None:
                starts.append((key, stamp, self._dt(now + timedelta(seconds=period))))
            queue = row[queue_column]
            if queue in queue_periods:
                until = self._dt(now + timedelta(seconds=queue_periods[queue]))
                starts.append((QUEUE_KEY_PREFIX + queue, stamp, until))
        if starts:
            cursor.executemany(_LOG_START_SQL, starts)

    @staticmethod
    def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
        job = ClaimedJob(*row)
        if isinstance(job.run_id, str):
            job.run_id = uuid.UUID(job.run_id)
        expires_at = job.expires_at
        if isinstance(expires_at, str):
            expires_at = parse_datetime(expires_at)
        if expires_at is not None and settings.USE_TZ and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)  # stored as naive UTC text
        job.expires_at = expires_at
        return job

    def record(self, outcomes: list[Outcome]) -> set[int]:
        if not outcomes:
            return set()
        written: set[int] = set()
        with self._write_transaction() as cursor:
            # Read once the write lock is held (BEGIN IMMEDIATE may wait for it): a
            # wait must not shift the batch's started_at and finished_at.
            now, clock = timezone.now(), time.monotonic()
            for outcome in outcomes:
                error = json.dumps(outcome.error, ensure_ascii=False) if outcome.error else None
                cursor.execute(
                    _RECORD_SQL,
                    [
                        outcome.status,
                        outcome.result_json,
                        error,
                        error,
                        1 if outcome.uncount else 0,
                        outcome.status,
                        self._dt(now + timedelta(seconds=outcome.retry_delay)),
                        None
                        if (age := outcome.seconds_since_start(clock)) is None
                        else self._dt(now - timedelta(seconds=age)),
                        self._dt(now) if outcome.is_final else None,
                        outcome.keeps_unique_key,
                        outcome.job.id,
                        outcome.job.lease_token,
                    ],
                )
                if cursor.rowcount:
                    written.add(outcome.job.id)
            failed = [o for o in outcomes if o.job.id in written and o.is_failed_attempt]
            self._tally(cursor, len(failed), now)
        return written

    def mark_started(self, marks: list[tuple[int, int, float]]) -> set[int]:
        now = timezone.now()
        marked: set[int] = set()
        with self._write_transaction() as cursor:
            for job_id, token, age in marks:
                cursor.execute(
                    f"UPDATE {JOB_TABLE} SET started_at = COALESCE(started_at, %s) "
                    "WHERE id = %s AND lease_token = %s AND status = 'RUNNING'",
                    [self._dt(now - timedelta(seconds=age)), job_id, token],
                )
                if cursor.rowcount:
                    marked.add(job_id)
        return marked

    def renew_leases(self, held: dict[int, int], lease_seconds: float) -> dict[int, bool]:
        if not held:
            return {}
        until = self._dt(timezone.now() + timedelta(seconds=lease_seconds))
        renewed: dict[int, bool] = {}
        with self._write_transaction() as cursor:
            for job_id, token in held.items():
                cursor.execute(
                    f"UPDATE {JOB_TABLE} SET lease_expires_at = %s "
                    "WHERE id = %s AND lease_token = %s AND status = 'RUNNING' "
                    "RETURNING cancel_requested_at",  # (see _GIVE_BACK_SQL: not IS NOT NULL)
                    [until, job_id, token],
                )
                row = cursor.fetchone()
                if row is not None:
                    renewed[job_id] = row[0] is not None
        return renewed

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
        params: dict[str, Any] = {
            "limit": limit,
            "worker": self._uuid(worker_id),
            "uncount": 1 if uncount else 0,
            "outcome": outcome,
            "message": message,
            "final_message": final_message,
            "now": self._dt(now := timezone.now()),
            # ISO 8601 with its offset, as in every other history entry (not the column's text).
            "at": now.isoformat(),
        }
        if worker_id is None:
            condition = "lease_expires_at < %(now)s"
        elif job_ids is None:
            condition = "worker_id = %(worker)s"
        else:
            names = [f"id{index}" for index in range(len(job_ids))]
            params.update(zip(names, job_ids, strict=True))
            listed = ", ".join(f"%({name})s" for name in names) or "NULL"
            condition = f"worker_id = %(worker)s AND id IN ({listed})"
        with self._write_transaction() as cursor:
            cursor.execute(_GIVE_BACK_SQL.format(condition=condition), params)
            given = [(row[0], row[1], not uncount and row[2] is not None) for row in cursor]
            self._tally(cursor, sum(1 for _, _, counted in given if counted), now)
            return given

    def db_now(self) -> datetime:
        return timezone.now()

    # -- progress (see progress.py) ------------------------------------------------
    def write_progress(self, rows: list[tuple[int, int, str]]) -> set[int]:
        written: set[int] = set()
        if not rows:
            return written
        with self._write_transaction() as cursor:
            for job_id, token, value in rows:
                cursor.execute(_PROGRESS_SQL, [value, job_id, token])
                if cursor.rowcount:
                    written.add(job_id)
        return written


# A job's progress, fenced by its lease token like every write about a running job.
_PROGRESS_SQL = f"""
UPDATE {JOB_TABLE} SET progress = json(%s)
WHERE id = %s AND lease_token = %s AND status = 'RUNNING'
"""
