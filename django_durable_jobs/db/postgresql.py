"""PostgreSQL: SKIP LOCKED claims, fenced batch outcomes, LISTEN/NOTIFY wake-ups.

Every statement here is a single round trip in autocommit mode, and all times
come from the database clock (``now()``), never from the worker host.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg

from ..constants import NOTIFY_CHANNEL, STATUS_BITS, JobStatus
from ..meta import ORPHANED
from ..rates import QUEUE_KEY_PREFIX, job_rate_limits_declared
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

# Hot statements have a fixed text whatever the number of rows (arrays, not
# VALUES lists), and run on server-side-binding cursors. The inserts are
# prepared once per connection; the claim and record never are (see ``_run``).

# One statement inserts any number of jobs (one array per column, sent in binary:
# psycopg dumps and PostgreSQL parses binary arrays about twice as fast), and sends the
# wake-up NOTIFY once per queue, in the enqueuing transaction: delivered at
# commit, never for a rollback.
_INSERT_SQL = f"""
WITH ins AS (
    INSERT INTO {JOB_TABLE} ({", ".join(INSERT_COLUMNS)})
    SELECT t.name, t.queue, t.priority, 'READY', t.args::jsonb, t.kwargs::jsonb, '[]'::jsonb,
           0, t.max_attempts, t.timeout,
           COALESCE(t.run_at, now() + t.delay * interval '1 second'), now(), 0,
           t.unique_key, t.unique_states, t.concurrency_key, t.concurrency_limit, t.run_id,
           t.parent_id, t.waiting_for, t.meta::jsonb, t.rate_key, t.rate_limit, t.rate_period,
           COALESCE(t.expires_at, now() + t.expires_in * interval '1 second')
    FROM unnest(
        %b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::int[], %b::float8[],
        %b::timestamptz[], %b::float8[], %b::text[], %b::int[], %b::text[], %b::int[],
        %b::uuid[], %b::bigint[], %b::int[], %b::text[], %b::text[], %b::int[], %b::float8[],
        %b::timestamptz[], %b::float8[]
    ) AS t(name, queue, priority, args, kwargs, max_attempts, timeout, run_at, delay,
           unique_key, unique_states, concurrency_key, concurrency_limit, run_id, parent_id,
           waiting_for, meta, rate_key, rate_limit, rate_period, expires_at, expires_in)
    {{conflict}}
    RETURNING id, queue, unique_key
){{notify}}
SELECT ins.id, ins.unique_key FROM ins{{woke}}
"""
_NOTIFY_CTE = f""",
woke AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', d.queue) FROM (SELECT DISTINCT queue FROM ins) AS d
)"""
# Unique jobs: a row whose key is taken is skipped (DO NOTHING). PostgreSQL
# first waits for a conflicting row's transaction to end, so a racing enqueue
# that rolls back never swallows this one.
_ON_CONFLICT = "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"


def _insert_statement(*, notify: bool, conflict: bool) -> str:
    return _INSERT_SQL.format(
        notify=_NOTIFY_CTE if notify else "",
        woke=" CROSS JOIN (SELECT count(*) FROM woke) AS w" if notify else "",
        conflict=_ON_CONFLICT if conflict else "",
    )


_INSERT_MANY = {
    (notify, conflict): _insert_statement(notify=notify, conflict=conflict)
    for notify in (False, True)
    for conflict in (False, True)
}

# One job (the common enqueue()): scalar parameters dump much faster than arrays.
_INSERT_ONE_ROW = f"""
INSERT INTO {JOB_TABLE} ({", ".join(INSERT_COLUMNS)})
VALUES (%s, %s, %s, 'READY', %s::jsonb, %s::jsonb, '[]'::jsonb, 0, %s, %s,
        COALESCE(%s::timestamptz, now() + %s * interval '1 second'), now(), 0,
        %s, %s, %s, %s, %s::uuid, %s, %s, %s::jsonb, %s, %s, %s,
        COALESCE(%s::timestamptz, now() + %s::float8 * interval '1 second'))
"""


def _insert_one_statement(*, notify: bool, conflict: bool) -> str:
    insert = _INSERT_ONE_ROW.strip() + (f" {_ON_CONFLICT}" if conflict else "")
    if not notify:
        return f"{insert} RETURNING id"
    return (
        f"WITH ins AS ({insert} RETURNING id, queue) "
        f"SELECT id, pg_notify('{NOTIFY_CHANNEL}', queue) FROM ins"
    )


_INSERT_ONE = {
    (notify, conflict): _insert_one_statement(notify=notify, conflict=conflict)
    for notify in (False, True)
    for conflict in (False, True)
}

_RETURNING = ", ".join(f"j.{column}" for column in CLAIM_COLUMNS)

# Why a CTE: UPDATE has no ORDER BY / LIMIT, and the candidates must be locked
# (FOR UPDATE SKIP LOCKED) in priority order and limited *before* the update, so
# concurrent workers each take different rows without waiting on each other.
# Candidates are only ids: the payload is read once, by RETURNING.
#
# Gates (per-key concurrency, rate limits, queue limits): a gated job is a
# candidate only while its gate has room, as the gate functions count it after
# taking the gate's lock (see migrations 0001 and 0004); full gates are skipped,
# so blocked jobs take no slot. Within one claim, the jobs of each gate are
# ranked so that no more than its room start. Ungated jobs never call them.
# Each start of a rate-limited job is logged in the same statement (``started``).
#
# The rate-limit and queue-limit parts are added only where the process declares
# such limits (see ``_claim_statement``): without them the statement is the plain
# per-key one, so jobs without limits pay nothing for the feature.
_CLAIM_SQL = f"""
WITH {{gates}}candidates AS (
    SELECT r.id, r.queue, r.priority, r.run_at, r.concurrency_key{{rate_column}}{{gate_column}},
           CASE WHEN r.concurrency_key IS NULL THEN NULL
                ELSE ddj_concurrency_slots(r.concurrency_key, r.concurrency_limit) END AS slots
    FROM {JOB_TABLE} AS r{{gate_join}}
    WHERE r.status = 'READY' AND r.waiting_for = 0 AND r.run_at <= now()
      AND (r.expires_at IS NULL OR r.expires_at > now())
      {{queue_filter}}
      AND NOT EXISTS (SELECT 1 FROM {QUEUE_TABLE} AS q WHERE q.name = r.queue AND q.paused)
      AND CASE WHEN r.concurrency_key IS NULL THEN true
               ELSE ddj_concurrency_slots(r.concurrency_key, r.concurrency_limit) > 0 END\
{{rate_filter}}{{gate_filter}}
    ORDER BY r.priority DESC, r.run_at, r.id
    LIMIT %s
    FOR UPDATE OF r SKIP LOCKED
), allowed AS (
    SELECT ranked.id FROM (
        SELECT c.id, c.concurrency_key, c.slots{{rate_rank}}{{gate_rank}},
               row_number() OVER (PARTITION BY c.concurrency_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS n
        FROM candidates AS c
    ) AS ranked
    WHERE (ranked.concurrency_key IS NULL OR ranked.n <= ranked.slots){{rate_allowed}}\
{{gate_allowed}}
){{update}}"""
_UPDATE = f"""
UPDATE {JOB_TABLE} AS j SET
    status = 'RUNNING',
    attempts = j.attempts + 1,
    started_at = NULL,
    finished_at = NULL,
    worker_id = %s,
    lease_token = j.lease_token + 1,
    lease_expires_at = now() + %s * interval '1 second',
    unique_key = CASE WHEN j.unique_states & {STATUS_BITS[JobStatus.RUNNING]} = 0
                      THEN NULL ELSE j.unique_key END
FROM allowed AS c
WHERE j.id = c.id
RETURNING {_RETURNING}"""
# With rate limits: the update as a CTE, and the starts it made logged.
_UPDATE_AND_LOG = f""", claimed AS ({_UPDATE}, j.rate_key, j.rate_period
), started AS (
    INSERT INTO {RATE_TABLE} (key, at, until)
    SELECT c.rate_key, now(), now() + c.rate_period * interval '1 second'
    FROM claimed AS c WHERE c.rate_key IS NOT NULL{{gate_starts}}
)
SELECT {", ".join(CLAIM_COLUMNS)} FROM claimed"""
_RATED = {
    "rate_column": """, r.rate_key,
           CASE WHEN r.rate_key IS NULL THEN NULL
                ELSE ddj_rate_permits(r.rate_key, r.rate_limit) END AS permits""",
    "rate_filter": """
      AND CASE WHEN r.rate_key IS NULL THEN true
               ELSE ddj_rate_permits(r.rate_key, r.rate_limit) > 0 END""",
    "rate_rank": """, c.rate_key, c.permits,
               row_number() OVER (PARTITION BY c.rate_key
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS rn""",
    "rate_allowed": "\n      AND (ranked.rate_key IS NULL OR ranked.rn <= ranked.permits)",
}
# Queue gates (DURABLE_JOBS["QUEUES"] limits), one row per limited queue, passed
# by the worker: evaluated once per claim (a CTE with volatile functions is
# never inlined), each under its queue's lock.
_GATES_CTE = f"""gates AS (
    SELECT g.queue, g.period, g.starts IS NOT NULL AS rated,
           LEAST(CASE WHEN g.concurrency IS NULL THEN NULL
                      ELSE ddj_queue_slots(g.queue, g.concurrency) END,
                 CASE WHEN g.starts IS NULL THEN NULL
                      ELSE ddj_rate_permits('{QUEUE_KEY_PREFIX}' || g.queue, g.starts)
                 END) AS free
    FROM unnest(%s::text[], %s::int[], %s::int[], %s::float8[])
         AS g(queue, concurrency, starts, period)
), """
_GATED = {
    "gates": _GATES_CTE,
    "gate_column": ", g.free AS queue_free",
    "gate_join": " LEFT JOIN gates AS g ON g.queue = r.queue",
    "gate_filter": "\n      AND (g.free IS NULL OR g.free > 0)",
    "gate_rank": """, c.queue_free,
               row_number() OVER (PARTITION BY c.queue
                                  ORDER BY c.priority DESC, c.run_at, c.id) AS qn""",
    "gate_allowed": "\n      AND (ranked.queue_free IS NULL OR ranked.qn <= ranked.queue_free)",
}
_GATE_STARTS = f"""
    UNION ALL
    SELECT '{QUEUE_KEY_PREFIX}' || c.queue, now(), now() + g.period * interval '1 second'
    FROM claimed AS c JOIN gates AS g ON g.queue = c.queue WHERE g.rated"""
_QUEUE_FILTER = "AND r.queue = ANY(%s::text[])"


@lru_cache(maxsize=32)
def _claim_statement(*, filtered: bool, gated: bool, gates_rated: bool, rated: bool) -> str:
    """The claim for this worker: its queue filter, and only the gates its settings and
    job definitions declare (``rated``: some job has a rate limit; ``gated``: some
    claimed queue has a limit, ``gates_rated``: a rate limit among them)."""
    parts = dict.fromkeys([*_RATED, *_GATED], "")
    if rated:
        parts.update(_RATED)
    if gated:
        parts.update(_GATED)
    logged = rated or gates_rated
    update = _UPDATE_AND_LOG.format(gate_starts=_GATE_STARTS if gates_rated else "")
    return _CLAIM_SQL.format(
        queue_filter=_QUEUE_FILTER if filtered else "",
        update=update if logged else _UPDATE,
        **parts,
    )


_NEXT_PERMIT_SQL = (
    f"SELECT EXTRACT(EPOCH FROM (min(until) - now())) FROM {RATE_TABLE} WHERE until > now()"
)

# Group callbacks: each member that finishes lowers its callback's waiting_for;
# at 0 the callback becomes claimable, and idle workers are woken for it.
_RELEASE_QUIET_SQL = f"""
UPDATE {JOB_TABLE} AS j SET waiting_for = GREATEST(j.waiting_for - v.n, 0)
FROM unnest(%s::bigint[], %s::int[]) AS v(id, n)
WHERE j.id = v.id
RETURNING j.id, j.queue, j.waiting_for
"""
_RELEASE_SQL = f"""
WITH up AS ({_RELEASE_QUIET_SQL.strip()}),
woke AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', d.queue)
    FROM (SELECT DISTINCT queue FROM up WHERE waiting_for = 0) AS d
)
SELECT up.id, up.queue, up.waiting_for FROM up CROSS JOIN (SELECT count(*) FROM woke) AS w
"""

# One statement records a whole batch of mixed outcomes. The WHERE clause is
# the fence: a worker whose lease was taken over (token bumped, or status no
# longer RUNNING) updates nothing. A deadlock with another statement touching
# the same jobs (an operator's bulk cancel) is retried by the recorder.
_RECORD_UPDATE = f"""
UPDATE {JOB_TABLE} AS j SET
    status = v.status,
    result = v.result::jsonb,
    errors = CASE WHEN v.error IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(v.error::jsonb) END,
    attempts = j.attempts - v.uncount,
    run_at = CASE WHEN v.status = 'READY' THEN now() + v.delay * interval '1 second'
                  ELSE j.run_at END,
    started_at = COALESCE(j.started_at, now() - v.age * interval '1 second'),
    finished_at = CASE WHEN v.final THEN now() ELSE NULL END,
    lease_expires_at = NULL,
    unique_key = CASE WHEN v.keep_unique THEN j.unique_key ELSE NULL END
FROM unnest(
    %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::int[], %b::float8[],
    %b::bool[], %b::bool[], %b::float8[]{{failed_array}}
) AS v(id, token, status, result, error, uncount, delay, final, keep_unique, age{{failed}})
WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'RUNNING'
RETURNING j.id{{failed}}
"""
_RECORD_SQL = _RECORD_UPDATE.format(failed_array="", failed="")

# Failed attempts per minute (the dashboard's figures, see models.FailedAttempts),
# counted from the rows a statement really wrote, in that same statement. ``{rows}``
# names a CTE with a boolean column ``failed``.
_TALLY_CTE = f"""tally AS (
    INSERT INTO {FAILURES_TABLE} AS t (minute, failures)
    SELECT date_trunc('minute', now()), count(*) FROM {{rows}} WHERE {{rows}}.failed
    HAVING count(*) > 0
    ON CONFLICT (minute) DO UPDATE SET failures = t.failures + EXCLUDED.failures
)"""
# A batch that holds a failed attempt (rare): the record and its tally in one
# statement. Batches of successes keep the plain statement above.
_RECORD_WITH_TALLY_SQL = f"""
WITH rec AS ({_RECORD_UPDATE.format(failed_array=", %b::bool[]", failed=", failed")}),
{_TALLY_CTE.format(rows="rec")}
SELECT rec.id FROM rec
"""

# Start marks: the evidence that a claimed job really started (see worker/pool.py).
_MARK_SQL = f"""
UPDATE {JOB_TABLE} AS j
SET started_at = COALESCE(j.started_at, now() - v.age * interval '1 second')
FROM unnest(%b::bigint[], %b::bigint[], %b::float8[]) AS v(id, token, age)
WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'RUNNING'
RETURNING j.id
"""

# Renew by lease token: only the jobs this process holds. SKIP LOCKED: a row
# locked by another statement is being finished, cancelled or rescued right
# now; waiting for it could deadlock with this worker's own completer, and the
# next heartbeat renews whatever is still ours.
_RENEW_SQL = f"""
WITH mine AS (
    SELECT j.id FROM {JOB_TABLE} AS j
    JOIN unnest(%s::bigint[], %s::bigint[]) AS v(id, token)
      ON j.id = v.id AND j.lease_token = v.token
    WHERE j.status = 'RUNNING'
    ORDER BY j.id
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE {JOB_TABLE} AS j SET lease_expires_at = now() + %s * interval '1 second'
FROM mine WHERE j.id = mine.id
RETURNING j.id, j.cancel_requested_at IS NOT NULL
"""

# Jobs whose worker is gone go back to READY (or FAILED when no attempt is left).
# ``{condition}`` picks them: an expired lease, or a worker known to be dead. Only
# a job known to have started (started_at set) is charged its attempt and gets a
# history entry; one that had not is given its attempt back and flagged
# "orphaned", so that its next attempt marks its start before it runs. With
# ``uncount`` nothing is charged (a worker stopped by its supervisor at shutdown).
_COUNTED = "(%(uncount)s = 0 AND j.started_at IS NOT NULL)"
_FINAL = f"({_COUNTED} AND j.attempts >= j.max_attempts)"
_GIVE_BACK_SQL = f"""
WITH lost AS (
    SELECT id FROM {JOB_TABLE}
    WHERE status = 'RUNNING' AND {{condition}}
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {JOB_TABLE} AS j SET
    status = CASE WHEN {_FINAL} THEN 'FAILED' ELSE 'READY' END,
    attempts = j.attempts - CASE WHEN {_COUNTED} THEN 0 ELSE 1 END,
    finished_at = CASE WHEN {_FINAL} THEN now() ELSE NULL END,
    run_at = now(),
    lease_expires_at = NULL,
    errors = CASE WHEN j.started_at IS NULL THEN j.errors
                  ELSE j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempts,
        'outcome', %(outcome)s::text,
        'exception_class', NULL,
        'message', CASE WHEN {_FINAL} THEN %(final_message)s::text ELSE %(message)s::text END,
        'traceback', NULL,
        'worker', j.worker_id::text,
        'at', now()
    )) END,
    meta = CASE WHEN %(uncount)s = 0 AND j.started_at IS NULL
                THEN j.meta || jsonb_build_object(
                    '{ORPHANED}', COALESCE((j.meta ->> '{ORPHANED}')::int, 0) + 1)
                ELSE j.meta END,
    unique_key = CASE
        WHEN {_FINAL} AND j.unique_states & {STATUS_BITS[JobStatus.FAILED]} = 0 THEN NULL
        WHEN NOT {_FINAL} AND j.unique_states & {STATUS_BITS[JobStatus.READY]} = 0 THEN NULL
        ELSE j.unique_key END
FROM lost AS e
WHERE j.id = e.id
RETURNING j.id, j.status, {_COUNTED} AS failed
"""
_GIVE_BACK_WITH_TALLY_SQL = f"""
WITH given AS ({_GIVE_BACK_SQL.strip()}),
{_TALLY_CTE.format(rows="given")}
SELECT given.id, given.status, given.failed FROM given
"""


def _row(job: Any) -> tuple[Any, ...]:
    """A prepared job's values, in ``_INSERT_ONE``'s parameter order."""
    return (
        job.name,
        job.queue,
        job.priority,
        job.args_json,
        job.kwargs_json,
        job.max_attempts,
        job.timeout,
        job.run_at,
        job.delay or 0.0,
        job.unique_key,
        job.unique_states,
        job.concurrency_key,
        job.concurrency_limit,
        job.run_id,
        job.parent_id,
        job.waiting_for,
        job.meta_json,
        job.rate_key,
        job.rate_limit,
        job.rate_period,
        job.expires_at,
        job.expires_in,  # None: NULL + interval is NULL, so no expiry
    )


#: Where a Django connection keeps its server-side-binding cursor (see ``_run``).
_CURSOR_ATTRIBUTE = "_durable_jobs_cursor"

#: What a pooler that moves a client between server connections (PgBouncer in
#: transaction mode before 1.21) makes of prepared statements.
_LOST_PREPARED_STATEMENT = (
    psycopg.errors.InvalidSqlStatementName,
    psycopg.errors.DuplicatePreparedStatement,
)
_LOST_PREPARED_STATEMENT_HINT = (
    "django-durable-jobs prepares its statements once per connection, and this "
    "connection's server session no longer matches (a transaction-pooling PgBouncer "
    "older than 1.21?). Set DURABLE_JOBS['PREPARED_STATEMENTS'] = False, or let the "
    "pooler keep prepared statements (PgBouncer 1.21+: max_prepared_statements)."
)

#: A ``prepare_threshold`` that no query reaches: psycopg then prepares only the
#: statements executed with ``prepare=True`` (ours), never the project's own.
_PREPARE_WHEN_ASKED = sys.maxsize


class PostgreSQLBackend(Backend):
    vendor = "postgresql"
    supports_listen_notify = True
    supports_skip_locked = True
    supports_returning = True
    supports_prepared_statements = True

    def _run(self, sql: str, params: Any, *, prepare: bool = False) -> list[Any]:
        """Execute a hot statement on this thread's Django connection; its rows.

        Same connection, so same transaction as Django's cursors (an enqueue in
        ``atomic()`` stays in it). The statement is sent with server-side binding.
        ``prepare``: prepare it once per connection (with ``PREPARED_STATEMENTS``),
        for the inserts only: their plan has no choice to make, and parsing was a
        quarter of a single enqueue. The claim and record statements are never
        prepared, whatever the connection's ``prepare_threshold``: after five runs
        PostgreSQL may switch a prepared statement to a generic plan, and with
        statistics that have not seen a fresh backlog yet, that plan drained a
        2-million-row table at 614 jobs/s instead of 3,647.

        The cursor is made once per database connection and kept on Django's
        connection object, which belongs to one thread; Django's error wrapping
        is entered only when an error happens. Both matter for a single enqueue,
        where they were a tenth of the Python time.
        """
        connection = self.connection
        raw = connection.connection
        if raw is None:
            connection.ensure_connection()
            raw = connection.connection
        cursor = connection.__dict__.get(_CURSOR_ATTRIBUTE)
        if cursor is None or cursor.connection is not raw:
            cursor = connection.__dict__[_CURSOR_ATTRIBUTE] = self._hot_cursor(
                raw, prepared=self.settings.prepared_statements
            )
        try:
            cursor.execute(sql, params, prepare=prepare and self.settings.prepared_statements)
            return cursor.fetchall()  # every hot statement returns rows
        except Exception as exc:
            if isinstance(exc, _LOST_PREPARED_STATEMENT):
                exc.add_note(_LOST_PREPARED_STATEMENT_HINT)  # shown with Django's error
            with connection.wrap_database_errors:  # Django's exception classes and state
                raise

    @staticmethod
    def _hot_cursor(raw: psycopg.Connection[Any], *, prepared: bool) -> psycopg.Cursor[Any]:
        """A server-side-binding cursor on ``raw`` that can prepare our statements.

        Django opens connections with ``prepare_threshold=None`` (its default
        OPTIONS), and psycopg then ignores ``prepare=True``: nothing was prepared,
        and PostgreSQL parsed every enqueue's insert again (a quarter of a single
        enqueue's time). With ``PREPARED_STATEMENTS`` the
        threshold becomes one that no query reaches, so only the statements we
        execute with ``prepare=True`` are prepared; the project's own queries
        stay as they were (Django's default cursors never prepare anyway). A
        threshold the project set itself is left alone.
        """
        if prepared and raw.prepare_threshold is None:
            raw.prepare_threshold = _PREPARE_WHEN_ASKED
        return psycopg.Cursor(raw)

    def insert(self, jobs: list[Any], *, notify: bool) -> list[int | None]:
        if not jobs:
            return []
        conflict = any(job.unique_key is not None for job in jobs)
        if len(jobs) == 1:
            rows = self._run(_INSERT_ONE[notify, conflict], _row(jobs[0]), prepare=True)
            return [rows[0][0] if rows else None]
        columns = [list(column) for column in zip(*map(_row, jobs), strict=True)]
        rows = self._run(_INSERT_MANY[notify, conflict], columns, prepare=True)
        return align_inserted(jobs, rows)

    def release_waiting(self, counts: dict[int, int]) -> list[int]:
        ids, amounts = list(counts), list(counts.values())
        sql = _RELEASE_SQL if self.settings.listen_notify else _RELEASE_QUIET_SQL
        return [job_id for job_id, _, waiting in self._run(sql, [ids, amounts]) if not waiting]

    def notify(self, queues: set[str]) -> None:
        with self.connection.cursor() as cursor:
            for queue in sorted(queues):
                cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, queue])

    def claim(
        self, *, worker_id: uuid.UUID, queues: list[str] | None, limit: int, lease_seconds: float
    ) -> list[ClaimedJob]:
        gates = gates_for(queues)
        params: list[Any] = []
        if gates:
            params += [
                [gate.queue for gate in gates],
                [gate.concurrency for gate in gates],
                [gate.rate.starts if gate.rate else None for gate in gates],
                [gate.rate.period if gate.rate else None for gate in gates],
            ]
        if queues:
            params.append(list(queues))
        params += [limit, worker_id, lease_seconds]
        sql = _claim_statement(
            filtered=bool(queues),
            gated=bool(gates),
            gates_rated=any(gate.rate for gate in gates),
            rated=job_rate_limits_declared(),
        )
        jobs = [ClaimedJob(*row) for row in self._run(sql, params)]
        jobs.sort(key=lambda job: (-job.priority, job.id))
        return jobs

    def record(self, outcomes: list[Outcome]) -> set[int]:
        if not outcomes:
            return set()
        errors = [outcome.error for outcome in outcomes]
        columns = [
            [outcome.job.id for outcome in outcomes],
            [outcome.job.lease_token for outcome in outcomes],
            [outcome.status for outcome in outcomes],
            [outcome.result_json for outcome in outcomes],
            [json.dumps(error, ensure_ascii=False) if error else None for error in errors],
            [1 if outcome.uncount else 0 for outcome in outcomes],
            [float(outcome.retry_delay) for outcome in outcomes],  # binary float8: no ints
            [outcome.is_final for outcome in outcomes],
            [outcome.keeps_unique_key for outcome in outcomes],
            [outcome.seconds_since_start() for outcome in outcomes],
        ]
        failed = [outcome.is_failed_attempt for outcome in outcomes]
        if not any(failed):
            return {row[0] for row in self._run(_RECORD_SQL, columns)}
        return {row[0] for row in self._run(_RECORD_WITH_TALLY_SQL, [*columns, failed])}

    def mark_started(self, marks: list[tuple[int, int, float]]) -> set[int]:
        if not marks:
            return set()
        ids, tokens, ages = (list(column) for column in zip(*marks, strict=True))
        return {row[0] for row in self._run(_MARK_SQL, [ids, tokens, [float(a) for a in ages]])}

    def renew_leases(self, held: dict[int, int], lease_seconds: float) -> dict[int, bool]:
        if not held:
            return {}
        with self.connection.cursor() as cursor:
            cursor.execute(_RENEW_SQL, [list(held), list(held.values()), lease_seconds])
            return {row[0]: bool(row[1]) for row in cursor.fetchall()}

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
        if worker_id is None:
            condition = "lease_expires_at < now()"
        elif job_ids is None:
            condition = "worker_id = %(worker)s"
        else:
            condition = "worker_id = %(worker)s AND id = ANY(%(ids)s)"
        params = {
            "limit": limit,
            "worker": worker_id,
            "ids": list(job_ids or ()),
            "uncount": 1 if uncount else 0,
            "outcome": outcome,
            "message": message,
            "final_message": final_message,
        }
        with self.connection.cursor() as cursor:
            cursor.execute(_GIVE_BACK_WITH_TALLY_SQL.format(condition=condition), params)
            return [(row[0], row[1], bool(row[2])) for row in cursor.fetchall()]

    def seconds_to_next_permit(self) -> float | None:
        with self.connection.cursor() as cursor:
            cursor.execute(_NEXT_PERMIT_SQL)
            (seconds,) = cursor.fetchone()
        return None if seconds is None else float(seconds)

    def db_now(self) -> datetime:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]

    def estimate_count(self, queryset: Any) -> int | None:
        """Rows the planner expects (statistics from ANALYZE): instant, roughly right."""
        plan = json.loads(queryset.order_by().explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])

    def listen_connection(self) -> Any:
        """A new autocommit psycopg connection that LISTENs on the wake-up channel."""
        params = self.connection.get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(key, None)
        conn = psycopg.connect(**params, autocommit=True)
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    # -- progress (see progress.py) ------------------------------------------------
    def write_progress(self, rows: list[tuple[int, int, str]]) -> set[int]:
        if not rows:
            return set()
        ids, tokens, values = (list(column) for column in zip(*rows, strict=True))
        return {row[0] for row in self._run(_PROGRESS_SQL, [ids, tokens, values])}


# A job's progress, fenced by its lease token like every write about a running job.
_PROGRESS_SQL = f"""
UPDATE {JOB_TABLE} AS j SET progress = v.progress::jsonb
FROM unnest(%b::bigint[], %b::bigint[], %b::text[]) AS v(id, token, progress)
WHERE j.id = v.id AND j.lease_token = v.token AND j.status = 'RUNNING'
RETURNING j.id
"""
