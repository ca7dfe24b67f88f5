"""MariaDB 10.6+ and MySQL 8.0+: SKIP LOCKED claims in short transactions, polling wake-ups.

There is no ``UPDATE ... RETURNING`` (MySQL has no RETURNING at all, MariaDB
only on INSERT), no NOTIFY and no server functions here, so a claim is one
short transaction of a few statements: lock the candidate rows in claim order
(``FOR UPDATE SKIP LOCKED``, so concurrent workers take different rows and
never wait), check the gates of the gated ones, update, read them back,
commit. Gates (per-key concurrency, rate limits, queue limits) are counted
under a named lock per gate (``GET_LOCK`` with no wait, held until after the
commit), the way the PostgreSQL functions count under advisory locks: a gate
another worker is filling right now is skipped this time, never waited for.

Times come from the database clock (``UTC_TIMESTAMP(6)``), in UTC like
Django's own datetimes under ``USE_TZ``. The statements assume READ COMMITTED
(Django's default for MySQL): each statement sees what others committed
before it, so a count taken under a gate's lock is exact. A system check
refuses other isolation levels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError, transaction

from ..connections import is_retryable_conflict
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
    BackendSettings,
    ClaimedJob,
    Outcome,
    gates_for,
)

logger = logging.getLogger("django_durable_jobs.db")

NOW = "UTC_TIMESTAMP(6)"

#: Attempts of a claim that loses deadlocks (see ``MySQLBackend.claim``).
_CLAIM_TRIES = 3

#: Rows per INSERT statement (a statement must fit ``max_allowed_packet``).
INSERT_CHUNK = 1000

# MySQL error numbers.
DUPLICATE_KEY = 1062

_MICROSECONDS = 1_000_000

_INSERT_ROW = (
    "(%s, %s, %s, 'READY', %s, %s, '[]', 0, %s, %s, "
    f"COALESCE(%s, {NOW} + INTERVAL %s MICROSECOND), {NOW}, 0, "
    "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    f"COALESCE(%s, {NOW} + INTERVAL %s MICROSECOND))"
)
_INSERT_SQL = f"INSERT INTO {JOB_TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES "

# What fills the gates right now, read before the candidates are locked, so
# that full gates are left out of the candidates (their jobs would otherwise
# crowd out the jobs behind them). Approximate: the exact counts are taken
# again under each gate's lock.
_PAUSED_SQL = f"SELECT 'p', name, 0 FROM {QUEUE_TABLE} WHERE paused"
_RUNNING_KEYS_SQL = (
    f"SELECT 'c', concurrency_key, count(*) FROM {JOB_TABLE} "
    "WHERE status = 'RUNNING' AND concurrency_key IS NOT NULL GROUP BY concurrency_key"
)
_STARTS_SQL = f"SELECT 'r', `key`, count(*) FROM {RATE_TABLE} WHERE `until` > {NOW} GROUP BY `key`"

_CANDIDATES_SQL = f"""
SELECT r.id, r.queue, r.concurrency_key, r.concurrency_limit,
       r.rate_key, r.rate_limit, r.rate_period
FROM {JOB_TABLE} AS r
WHERE r.status = 'READY' AND r.waiting_for = 0 AND r.run_at <= {NOW}
  AND (r.expires_at IS NULL OR r.expires_at > {NOW}){{conditions}}
ORDER BY r.priority DESC, r.run_at, r.id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

_CLAIM_UPDATE_SQL = f"""
UPDATE {JOB_TABLE} SET
    status = 'RUNNING',
    attempts = attempts + 1,
    started_at = NULL,
    finished_at = NULL,
    worker_id = %s,
    lease_token = lease_token + 1,
    lease_expires_at = {NOW} + INTERVAL %s MICROSECOND,
    unique_key = CASE WHEN unique_states & {STATUS_BITS[JobStatus.RUNNING]} = 0
                      THEN NULL ELSE unique_key END
WHERE id IN ({{ids}})
"""
_CLAIMED_SQL = f"SELECT {', '.join(CLAIM_COLUMNS)} FROM {JOB_TABLE} WHERE id IN ({{ids}})"
_LOG_START_SQL = (
    f"INSERT INTO {RATE_TABLE} (`key`, `at`, `until`) "
    f"VALUES (%s, {NOW}, {NOW} + INTERVAL %s MICROSECOND)"
)
_COUNT_RUNNING_KEY_SQL = (
    f"SELECT count(*) FROM {JOB_TABLE} WHERE status = 'RUNNING' AND concurrency_key = %s"
)
_COUNT_RUNNING_QUEUE_SQL = (
    f"SELECT count(*) FROM {JOB_TABLE} WHERE status = 'RUNNING' AND queue = %s"
)
_COUNT_STARTS_SQL = f"SELECT count(*) FROM {RATE_TABLE} WHERE `key` = %s AND `until` > {NOW}"

# A batch of outcomes is one UPDATE joined to its rows (a JSON array read by
# JSON_TABLE: one statement text for any batch size), after the fence: the rows
# still RUNNING under the outcome's lease token, locked first so that the ids
# written are known (there is no RETURNING). One statement per job instead
# made the outcome writes the drain's limit (about 840 us each). Every
# column's new value reads only its own old value and ``v`` (MySQL does not
# promise an order of assignments).
_FENCE_SQL = (
    f"SELECT id, lease_token FROM {JOB_TABLE} "
    "WHERE id IN ({ids}) AND status = 'RUNNING' ORDER BY id FOR UPDATE"
)
_RECORD_SQL = f"""
UPDATE {JOB_TABLE} AS j
JOIN JSON_TABLE(%s, '$[*]' COLUMNS (
    id BIGINT PATH '$[0]',
    status VARCHAR(20) PATH '$[1]',
    result LONGTEXT PATH '$[2]',
    error LONGTEXT PATH '$[3]',
    uncount INT PATH '$[4]',
    delay BIGINT PATH '$[5]',
    age BIGINT PATH '$[6]',
    final INT PATH '$[7]',
    keep_unique INT PATH '$[8]'
)) AS v ON v.id = j.id
SET j.status = v.status,
    j.result = v.result,
    j.errors = CASE WHEN v.error IS NULL THEN j.errors
                    ELSE JSON_ARRAY_APPEND(j.errors, '$', JSON_EXTRACT(v.error, '$')) END,
    j.attempts = j.attempts - v.uncount,
    j.run_at = CASE WHEN v.status = 'READY' THEN {NOW} + INTERVAL v.delay MICROSECOND
                    ELSE j.run_at END,
    j.started_at = COALESCE(j.started_at, {NOW} - INTERVAL v.age MICROSECOND),
    j.finished_at = CASE WHEN v.final = 1 THEN {NOW} ELSE NULL END,
    j.lease_expires_at = NULL,
    j.unique_key = CASE WHEN v.keep_unique = 1 THEN j.unique_key ELSE NULL END
"""

_MARK_SQL = f"""
UPDATE {JOB_TABLE} AS j
JOIN JSON_TABLE(%s, '$[*]' COLUMNS (id BIGINT PATH '$[0]', age BIGINT PATH '$[1]')) AS v
  ON v.id = j.id
SET j.started_at = COALESCE(j.started_at, {NOW} - INTERVAL v.age MICROSECOND)
"""

_TALLY_SQL = f"""
INSERT INTO {FAILURES_TABLE} (minute, failures)
VALUES (UTC_TIMESTAMP() - INTERVAL SECOND(UTC_TIMESTAMP()) SECOND, %s)
ON DUPLICATE KEY UPDATE failures = failures + %s
"""

_PROGRESS_SQL = f"""
UPDATE {JOB_TABLE} SET progress = %s
WHERE id = %s AND lease_token = %s AND status = 'RUNNING'
"""


def _micros(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * _MICROSECONDS)


def _lock_name(kind: str, key: str) -> str:
    """A named lock for a gate (names are limited to 64 characters, keys to 300)."""
    return f"ddj:{kind}:{hashlib.blake2b(key.encode(), digest_size=20).hexdigest()}"


#: Seconds an insert waits for its turn among inserters of the same key (see one_inserter).
_INSERTER_WAIT = 600


@contextmanager
def one_inserter(cursor: Any, kind: str, key: str) -> Iterator[None]:
    """Around an insert of a unique key: one inserter of that key at a time may wait on it.

    InnoDB makes every insert of a key that an open transaction holds wait,
    each with a shared lock on the row; when that transaction rolls back,
    two waiters both need the row exclusively, and InnoDB picks one as a
    deadlock victim and rolls back its whole transaction (seen with 20 racing
    enqueues of one key: 18 deadlocks, and no job at all). Under this named
    lock, held for the statement only, the others queue here instead, and the
    single waiter inserts when the holder rolls back, or finds the key taken
    when it commits: PostgreSQL's behaviour.
    """
    name = _lock_name(kind, key)
    cursor.execute("SELECT GET_LOCK(%s, %s)", [name, _INSERTER_WAIT])
    if cursor.fetchone()[0] != 1:
        raise OperationalError(
            f"waited {_INSERTER_WAIT} s for other inserts of the key {key!r}; is a transaction "
            "that holds it left open?"
        )
    try:
        yield
    finally:
        cursor.execute("DO RELEASE_LOCK(%s)", [name])


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def is_duplicate_key(exc: IntegrityError, index: str | None = None) -> bool:
    """A duplicate-key error (of the index whose name contains ``index``, if given)."""
    cause = exc.__cause__ or exc
    args: tuple[Any, ...] = tuple(getattr(cause, "args", ()))
    if len(args) != 2 or args[0] != DUPLICATE_KEY:
        return False
    return index is None or index in str(args[1])


class _Gates:
    """The gates of one claim: taken under named locks, counted once, filled in claim order."""

    def __init__(self, cursor: Any, queue_gates: tuple[QueueGate, ...], *, rated: bool) -> None:
        self.cursor = cursor
        self.rated = rated  # some job declares a rate limit (else rate keys are not gates)
        self.queue_gates = {gate.queue: gate for gate in queue_gates}
        self.room: dict[tuple[str, str], int | None] = {}  # None: locked by another claim
        self.locked = False

    def _open(self, kind: str, key: str, count_sql: str, count_key: str, limit: int) -> None:
        """Learn the room of one gate, from a count under its lock (None: another claim holds
        it), once per claim."""
        if (kind, key) not in self.room:
            self.cursor.execute("SELECT GET_LOCK(%s, 0)", [_lock_name(kind, key)])
            if self.cursor.fetchone()[0] == 1:
                self.locked = True
                self.cursor.execute(count_sql, [count_key])
                self.room[kind, key] = limit - self.cursor.fetchone()[0]
            else:
                self.room[kind, key] = None

    def admit(self, candidate: tuple[Any, ...]) -> bool:
        """Whether this candidate may start now; if so, it takes one place in each of its gates."""
        _, queue, key, key_limit, rate_key, rate_limit, _ = candidate
        if key is None and (rate_key is None or not self.rated) and queue not in self.queue_gates:
            return True
        wanted: list[tuple[str, str]] = []
        if key is not None:
            wanted.append(("c", key))
            self._open("c", key, _COUNT_RUNNING_KEY_SQL, key, key_limit)
        if rate_key is not None and self.rated:
            wanted.append(("r", rate_key))
            self._open("r", rate_key, _COUNT_STARTS_SQL, rate_key, rate_limit)
        gate = self.queue_gates.get(queue)
        if gate is not None:
            if gate.concurrency is not None:
                wanted.append(("q", queue))
                self._open("q", queue, _COUNT_RUNNING_QUEUE_SQL, queue, gate.concurrency)
            if gate.rate is not None:
                queue_key = QUEUE_KEY_PREFIX + queue
                wanted.append(("r", queue_key))
                self._open("r", queue_key, _COUNT_STARTS_SQL, queue_key, gate.rate.starts)
        if any((self.room[place] or 0) <= 0 for place in wanted):
            return False
        for place in wanted:
            self.room[place] -= 1  # type: ignore[operator]
        return True


class MySQLBackend(Backend):
    vendor = "mysql"
    supports_skip_locked = True
    default_poll_interval = 0.25  # no NOTIFY: polling is the only wake-up

    def __init__(self, alias: str, settings: BackendSettings | None = None) -> None:
        super().__init__(alias, settings)
        connection: Any = self.connection  # Django's MySQL DatabaseWrapper
        mariadb = connection.mysql_is_mariadb
        version = connection.mysql_version
        oldest = (10, 6) if mariadb else (8, 0, 1)
        if version < oldest:
            product = "MariaDB" if mariadb else "MySQL"
            raise ImproperlyConfigured(
                f"django-durable-jobs needs {product} {'.'.join(map(str, oldest))} or newer "
                f"(FOR UPDATE SKIP LOCKED); the database {alias!r} runs "
                f"{'.'.join(map(str, version))}. Upgrade the server, or keep the jobs on "
                "another database (DURABLE_JOBS['DATABASE'])."
            )
        # MariaDB 10.5+ returns the ids of a multi-row INSERT; MySQL has no RETURNING.
        self.supports_returning = mariadb

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One short transaction (or the caller's, when one is open: an atomic job, a test)."""
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            yield cursor

    # -- enqueue -----------------------------------------------------------
    def insert_statements(self, count: int) -> int:
        return -(-count // INSERT_CHUNK)

    def insert(self, jobs: list[Any], *, notify: bool) -> list[int | None]:
        """Plain jobs in multi-row statements; unique jobs one by one. A taken key is a
        duplicate-key error here, caught (InnoDB rolls back only that statement); a racing
        insert of the same key first waits for the other transaction, as on PostgreSQL.
        Several statements run in one transaction: all or nothing."""
        if not jobs:
            return []
        ids: dict[int, int | None] = {}
        plain = [index for index, job in enumerate(jobs) if job.unique_key is None]
        keyed = [index for index, job in enumerate(jobs) if job.unique_key is not None]
        several = len(keyed) + self.insert_statements(len(plain)) > 1
        with (
            transaction.atomic(using=self.alias) if several else nullcontext(),
            self.connection.cursor() as cursor,
        ):
            for start in range(0, len(plain), INSERT_CHUNK):
                chunk = plain[start : start + INSERT_CHUNK]
                new_ids = self._insert_rows(cursor, [jobs[index] for index in chunk])
                ids.update(zip(chunk, new_ids, strict=True))
            for index in keyed:
                try:
                    with one_inserter(cursor, "u", jobs[index].unique_key):
                        (ids[index],) = self._insert_rows(cursor, [jobs[index]])
                except IntegrityError as exc:
                    if not is_duplicate_key(exc, "unique_key"):
                        raise
                    ids[index] = None
        return [ids[index] for index in range(len(jobs))]

    def _insert_rows(self, cursor: Any, jobs: list[Any]) -> list[int]:
        params: list[Any] = []
        for job in jobs:
            params += [
                job.name,
                job.queue,
                job.priority,
                job.args_json,
                job.kwargs_json,
                job.max_attempts,
                job.timeout,
                self._dt(job.run_at),
                _micros(job.delay or 0.0),
                job.unique_key,
                job.unique_states,
                job.concurrency_key,
                job.concurrency_limit,
                job.run_id.hex if job.run_id is not None else None,
                job.parent_id,
                job.waiting_for,
                job.meta_json,
                job.rate_key,
                job.rate_limit,
                job.rate_period,
                self._dt(job.expires_at),
                _micros(job.expires_in),
            ]
        sql = _INSERT_SQL + ", ".join([_INSERT_ROW] * len(jobs))
        if self.supports_returning:
            cursor.execute(sql + " RETURNING id", params)
            return sorted(row[0] for row in cursor.fetchall())
        # One multi-row INSERT takes consecutive ids from the first (InnoDB allocates a
        # "simple insert"'s values at once, in every auto-increment lock mode).
        cursor.execute(sql, params)
        first = cursor.lastrowid
        return list(range(first, first + len(jobs)))

    def _dt(self, value: datetime | None) -> Any:
        return self.connection.ops.adapt_datetimefield_value(value)

    def release_waiting(self, counts: dict[int, int]) -> list[int]:
        if not counts:
            return []
        with self._transaction() as cursor:
            for job_id, amount in counts.items():
                cursor.execute(  # (unsigned column: no negative intermediate value)
                    f"UPDATE {JOB_TABLE} SET waiting_for = "
                    "CASE WHEN waiting_for > %s THEN waiting_for - %s ELSE 0 END WHERE id = %s",
                    [amount, amount, job_id],
                )
            cursor.execute(
                f"SELECT id FROM {JOB_TABLE} WHERE waiting_for = 0 "
                f"AND id IN ({_placeholders(len(counts))})",
                list(counts),
            )
            ready = {row[0] for row in cursor.fetchall()}
        return [job_id for job_id in counts if job_id in ready]

    # -- worker ------------------------------------------------------------
    def claim(
        self, *, worker_id: uuid.UUID, queues: list[str] | None, limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        """A deadlock (InnoDB's duplicate checks on the unique index take gap locks even in
        READ COMMITTED, so a claim can meet a concurrent enqueue there) rolls the claim
        back whole: nothing was claimed, and it is tried again at once, a few times."""
        for _ in range(_CLAIM_TRIES - 1):
            try:
                return self._claim(worker_id, queues, limit, lease_seconds)
            except OperationalError as exc:
                if not is_retryable_conflict(exc):
                    raise
                logger.debug("claim lost a deadlock; trying again", exc_info=True)
        return self._claim(worker_id, queues, limit, lease_seconds)

    def _claim(
        self, worker_id: uuid.UUID, queues: list[str] | None, limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        queue_gates = gates_for(queues)
        rated_jobs = job_rate_limits_declared()
        rated = rated_jobs or any(gate.rate for gate in queue_gates)
        gates: _Gates | None = None
        try:
            with self._transaction() as cursor:
                conditions, params = self._candidate_conditions(
                    cursor, queues, queue_gates, rated=rated, rated_jobs=rated_jobs
                )
                cursor.execute(_CANDIDATES_SQL.format(conditions=conditions), [*params, limit])
                candidates = cursor.fetchall()
                gates = _Gates(cursor, queue_gates, rated=rated_jobs)
                allowed = [row for row in candidates if gates.admit(row)]
                rows = self._take(
                    cursor, allowed, worker_id, lease_seconds, queue_gates, rated_jobs
                )
        finally:
            if gates is not None and gates.locked:
                # After the commit, so that the next claim of these gates counts our jobs.
                # (Inside a caller's transaction, before its commit: tests, atomic jobs.)
                with self.connection.cursor() as cursor:
                    cursor.execute("SELECT RELEASE_ALL_LOCKS()")
        jobs = [self._claimed(row) for row in rows]
        jobs.sort(key=lambda job: (-job.priority, job.id))
        return jobs

    def _candidate_conditions(
        self,
        cursor: Any,
        queues: list[str] | None,
        queue_gates: tuple[QueueGate, ...],
        *,
        rated: bool,
        rated_jobs: bool,
    ) -> tuple[str, list[Any]]:
        """The claim's filters: the chosen queues, and neither paused queues nor full gates."""
        cursor.execute(
            " UNION ALL ".join([_PAUSED_SQL, _RUNNING_KEYS_SQL, *([_STARTS_SQL] if rated else [])])
        )
        closed: set[str] = set()
        running: dict[str, int] = {}
        starts: dict[str, int] = {}
        for kind, name, count in cursor.fetchall():
            if kind == "p":
                closed.add(name)
            elif kind == "c":
                running[name] = count
            else:
                starts[name] = count
        for gate in queue_gates:
            if gate.rate and starts.get(QUEUE_KEY_PREFIX + gate.queue, 0) >= gate.rate.starts:
                closed.add(gate.queue)
        conditions: list[str] = []
        params: list[Any] = []
        if queues:
            conditions.append(f"r.queue IN ({_placeholders(len(queues))})")
            params += queues
        if closed:
            conditions.append(f"r.queue NOT IN ({_placeholders(len(closed))})")
            params += sorted(closed)
        for key, count in running.items():
            conditions.append("NOT (r.concurrency_key <=> %s AND r.concurrency_limit <= %s)")
            params += [key, count]
        for key, count in starts.items():
            if rated_jobs and not key.startswith(QUEUE_KEY_PREFIX):
                conditions.append("NOT (r.rate_key <=> %s AND r.rate_limit <= %s)")
                params += [key, count]
        return "".join(f"\n  AND {condition}" for condition in conditions), params

    def _take(
        self,
        cursor: Any,
        allowed: list[tuple[Any, ...]],
        worker_id: uuid.UUID,
        lease_seconds: float,
        queue_gates: tuple[QueueGate, ...],
        rated_jobs: bool,
    ) -> list[tuple[Any, ...]]:
        """Lease the allowed candidates, log their rate-limited starts; the claimed rows."""
        if not allowed:
            return []
        ids = [row[0] for row in allowed]
        marks = _placeholders(len(ids))
        cursor.execute(
            _CLAIM_UPDATE_SQL.format(ids=marks), [worker_id.hex, _micros(lease_seconds), *ids]
        )
        starts: list[tuple[str, int | None]] = []
        periods = {gate.queue: gate.rate.period for gate in queue_gates if gate.rate is not None}
        for _, queue, _, _, rate_key, _, rate_period in allowed:
            if rate_key is not None and rated_jobs:
                starts.append((rate_key, _micros(rate_period)))
            if queue in periods:
                starts.append((QUEUE_KEY_PREFIX + queue, _micros(periods[queue])))
        if starts:
            cursor.executemany(_LOG_START_SQL, starts)
        cursor.execute(_CLAIMED_SQL.format(ids=marks), ids)
        return cursor.fetchall()

    @staticmethod
    def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
        job = ClaimedJob(*row)
        if isinstance(job.run_id, str):
            job.run_id = uuid.UUID(job.run_id)
        job.expires_at = _aware(job.expires_at)
        return job

    def record(self, outcomes: list[Outcome]) -> set[int]:
        if not outcomes:
            return set()
        with self._transaction() as cursor:
            written = self._fence(cursor, [(o.job.id, o.job.lease_token) for o in outcomes])
            rows = [
                [
                    outcome.job.id,
                    outcome.status,
                    outcome.result_json,
                    json.dumps(outcome.error, ensure_ascii=False) if outcome.error else None,
                    1 if outcome.uncount else 0,
                    _micros(outcome.retry_delay),
                    _micros(outcome.seconds_since_start()),
                    1 if outcome.is_final else 0,
                    1 if outcome.keeps_unique_key else 0,
                ]
                for outcome in outcomes
                if outcome.job.id in written
            ]
            if rows:
                cursor.execute(_RECORD_SQL, [json.dumps(rows, ensure_ascii=False)])
            failed = sum(1 for o in outcomes if o.job.id in written and o.is_failed_attempt)
            self._tally(cursor, failed)
        return written

    @staticmethod
    def _fence(cursor: Any, held: list[tuple[int, int]]) -> set[int]:
        """Lock the rows still RUNNING under these ``(id, lease_token)``; their ids."""
        tokens = dict(held)
        cursor.execute(_FENCE_SQL.format(ids=_placeholders(len(tokens))), list(tokens))
        return {job_id for job_id, token in cursor.fetchall() if tokens[job_id] == token}

    @staticmethod
    def _tally(cursor: Any, failures: int) -> None:
        if failures:
            cursor.execute(_TALLY_SQL, [failures, failures])

    def mark_started(self, marks: list[tuple[int, int, float]]) -> set[int]:
        if not marks:
            return set()
        with self._transaction() as cursor:
            marked = self._fence(cursor, [(job_id, token) for job_id, token, _ in marks])
            rows = [[job_id, _micros(age)] for job_id, _, age in marks if job_id in marked]
            if rows:
                cursor.execute(_MARK_SQL, [json.dumps(rows)])
        return marked

    def renew_leases(self, held: dict[int, int], lease_seconds: float) -> dict[int, bool]:
        """Rows locked by another statement (being finished, cancelled, rescued) are skipped:
        waiting for them could deadlock with this worker's own recorder."""
        if not held:
            return {}
        with self._transaction() as cursor:
            cursor.execute(
                f"SELECT id, lease_token, cancel_requested_at IS NOT NULL FROM {JOB_TABLE} "
                f"WHERE id IN ({_placeholders(len(held))}) AND status = 'RUNNING' "
                "ORDER BY id FOR UPDATE SKIP LOCKED",
                list(held),
            )
            mine = {row[0]: bool(row[2]) for row in cursor.fetchall() if held[row[0]] == row[1]}
            if mine:
                cursor.execute(
                    f"UPDATE {JOB_TABLE} SET lease_expires_at = {NOW} + INTERVAL %s MICROSECOND "
                    f"WHERE id IN ({_placeholders(len(mine))})",
                    [_micros(lease_seconds), *mine],
                )
        return mine

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
        params: list[Any] = []
        if worker_id is None:
            condition = f"lease_expires_at < {NOW}"
        elif job_ids is None:
            condition = "worker_id = %s"
            params.append(worker_id.hex)
        else:
            if not job_ids:
                return []
            condition = f"worker_id = %s AND id IN ({_placeholders(len(job_ids))})"
            params += [worker_id.hex, *job_ids]
        given: list[tuple[int, str, bool]] = []
        with self._transaction() as cursor:
            cursor.execute(
                "SELECT id, attempts, max_attempts, started_at IS NOT NULL, unique_states, "
                f"worker_id, {NOW} FROM {JOB_TABLE} WHERE status = 'RUNNING' AND {condition} "
                "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [*params, limit],
            )
            for job_id, attempts, max_attempts, started, states, worker, now in cursor.fetchall():
                counted = not uncount and bool(started)
                final = counted and attempts >= max_attempts
                status = JobStatus.FAILED if final else JobStatus.READY
                entry = None
                if started:
                    entry = json.dumps(
                        {
                            "attempt": attempts,
                            "outcome": outcome,
                            "exception_class": None,
                            "message": final_message if final else message,
                            "traceback": None,
                            "worker": str(uuid.UUID(worker)) if worker else None,
                            "at": now.replace(tzinfo=UTC).isoformat(),
                        },
                        ensure_ascii=False,
                    )
                keeps_key = bool(states & STATUS_BITS[status])
                cursor.execute(
                    f"""UPDATE {JOB_TABLE} SET
                        status = %s,
                        attempts = attempts - %s,
                        finished_at = CASE WHEN %s THEN {NOW} ELSE NULL END,
                        run_at = {NOW},
                        lease_expires_at = NULL,
                        errors = CASE WHEN %s IS NULL THEN errors
                            ELSE JSON_ARRAY_APPEND(errors, '$', JSON_EXTRACT(%s, '$')) END,
                        meta = CASE WHEN %s THEN JSON_SET(meta, '$.{ORPHANED}',
                            COALESCE(JSON_EXTRACT(meta, '$.{ORPHANED}'), 0) + 1) ELSE meta END,
                        unique_key = CASE WHEN %s THEN unique_key ELSE NULL END
                    WHERE id = %s""",
                    [
                        status,
                        0 if counted else 1,
                        final,
                        entry,
                        entry,
                        not uncount and not started,
                        keeps_key,
                        job_id,
                    ],
                )
                given.append((job_id, status, counted))
            self._tally(cursor, sum(1 for _, _, counted in given if counted))
        return given

    def db_now(self) -> datetime:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {NOW}")
            return cursor.fetchone()[0].replace(tzinfo=UTC)

    # -- progress (see progress.py) ------------------------------------------------
    def write_progress(self, rows: list[tuple[int, int, str]]) -> set[int]:
        written: set[int] = set()
        if not rows:
            return written
        with self._transaction() as cursor:
            for job_id, token, value in rows:
                cursor.execute(_PROGRESS_SQL, [value, job_id, token])
                if cursor.rowcount:
                    written.add(job_id)
        return written
