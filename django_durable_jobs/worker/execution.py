"""Run one claimed job in this thread and return how it ended (an ``Outcome``).

Nothing a job does can escape from here: an exception from the job, from
importing its code, from decoding its arguments, from its return value or
from a transaction it left open becomes an outcome (``outcomes.py`` decides
which). The caller writes it (``recorder.py``) and only then are the end
signals sent, so a receiver never sees an ending that was not recorded.

The worker's pool, immediate mode and ``testing.run_pending_jobs()`` all run
jobs through ``execute``, so the job middleware (``middleware.py``) wraps each
of them the same way.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from types import MappingProxyType
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections, transaction

from .. import middleware, registry, signals, tracing
from ..conf import app_settings
from ..connections import (
    after_job,
    database_writable,
    is_database_unavailable,
    is_read_only_error,
    transaction_depths,
)
from ..constants import JobStatus
from ..context import JobContext, reset_current, set_current
from ..db import Backend
from ..definitions import JobDefinition
from ..exceptions import JobTimeout, UnknownJob
from ..failures import safe_traceback
from ..progress import ProgressReporter
from ..retry import DEFAULT_RETRY
from ..rows import ClaimedJob, Outcome
from ..serialization import DecodeError, load_payload
from . import outcomes
from .outcomes import Attempt
from .recorder import Recorder, Written
from .watchdog import Deadline

logger = logging.getLogger("django_durable_jobs.execution")


class LeaseLost(Exception):
    """The job's lease was taken over before its atomic body could commit."""


class _RollBack(Exception):
    """Raised inside an atomic job's transaction to undo the body along with its outcome."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def load_definition(name: str) -> tuple[JobDefinition[..., Any] | None, BaseException | None]:
    """The job's definition, or the exception that finding it raised (never raises)."""
    try:
        return registry.get(name), None
    except JobTimeout:
        raise
    except BaseException as exc:  # ImportError, a module raising at import, UnknownJob
        return None, exc


def context_for(
    job: ClaimedJob, worker_id: uuid.UUID | None, cancel_event: threading.Event | None = None
) -> JobContext:
    """The ``JobContext`` of an attempt of ``job`` (``cancel_event``: set to ask it to stop)."""
    return JobContext(
        job_id=job.id,
        name=job.name,
        queue=job.queue,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker_id=worker_id,
        run_id=job.run_id,
        meta=job.meta_dict,
        _cancel_event=cancel_event or threading.Event(),
        _progress=ProgressReporter(job.id, job.lease_token, job.attempt),
    )


def execute(
    job: ClaimedJob,
    *,
    backend: Backend,
    recorder: Recorder,
    worker_id: uuid.UUID | None,
    context: JobContext | None = None,
    inline: bool = False,
) -> tuple[Outcome, Written | None]:
    """Run ``job``; its outcome, and what was written if this wrote it already (else None).

    Only an atomic job's success is written here (inside its transaction, with
    ``recorder``): ``Written.ids`` holds the job's id, or is empty when its
    lease was lost before the commit. Every other outcome is the caller's to
    write, which may batch it. ``job_started`` is sent before the attempt; the
    end signals are the caller's, after the write (``Recorder.announce``).

    On a worker's executor thread this also leaves the thread's connections
    ready for its next job. ``inline``: the job runs in the caller's thread
    (immediate mode, ``run_pending_jobs``): its timeout is enforced here (a
    worker's watchdog does it from outside), and transactions the caller had
    open before the job (a test's) are left alone.
    """
    if not tracing.enabled():  # the hot path: no context manager around every job
        return _execute(job, backend, recorder, worker_id, context, inline)
    with tracing.processing(job) as span:
        outcome, written = _execute(job, backend, recorder, worker_id, context, inline)
        tracing.ended(span, outcome)
    return outcome, written


def _execute(
    job: ClaimedJob,
    backend: Backend,
    recorder: Recorder,
    worker_id: uuid.UUID | None,
    context: JobContext | None,
    inline: bool,
) -> tuple[Outcome, Written | None]:
    context = context or context_for(job, worker_id)
    definition, load_error = load_definition(job.name)
    signals.send_started(context, definition)
    attempt = Attempt(job, worker_id)
    outer = transaction_depths() if inline else None
    # (A worker's thread starts each job with no transaction open: depth 0.)
    context._progress.bind(backend.alias, (outer or {}).get(backend.alias, 0))
    started = time.monotonic()
    written: Written | None = None
    try:
        if load_error is not None or definition is None:
            outcome = _not_loaded(attempt, load_error)
        else:
            deadline = Deadline(job.timeout) if inline and job.timeout else None
            outcome, written = _run(attempt, context, definition, backend, recorder, deadline)
        # Before the outcome is decided for good (and written): what the job left open
        # would hold locks, on SQLite the only write lock, that its write needs.
        leaked = after_job(outer)
        if leaked:
            outcome = _left_open(attempt, definition, outcome, written, leaked)
        if written is None:
            outcome = _outage_aware(attempt, outcome, backend.alias)
            outcome.progress = context._progress.unwritten()  # written with the outcome
    except JobTimeout:
        raise  # the pool's watchdog handles the timeout (and records it)
    except BaseException as exc:  # a bug of ours: the job must still end
        logger.exception("internal error while running job #%s %s", job.id, job.name)
        outcome = outcomes.internal_error(attempt, exc)
    outcome.started, outcome.duration = started, time.monotonic() - started
    outcome.context = context
    return outcome, written


def _not_loaded(attempt: Attempt, exc: BaseException | None) -> Outcome:
    if isinstance(exc, UnknownJob) or exc is None:
        return outcomes.unknown_job(attempt, exc or UnknownJob(attempt.job.name))
    return outcomes.cannot_load(attempt, exc)


def _left_open(
    attempt: Attempt,
    definition: JobDefinition[..., Any] | None,
    outcome: Outcome,
    written: Written | None,
    leaked: list[str],
) -> Outcome:
    """The outcome of a job that left a transaction open (now rolled back)."""
    if written is not None:
        # An atomic job's own transaction committed; the leak was on another database.
        logger.error(
            "job #%s %s left a transaction open on %s; it was rolled back",
            attempt.job.id,
            attempt.job.name,
            ", ".join(leaked),
        )
        return outcome
    policy = definition.retry if definition is not None else DEFAULT_RETRY
    cause = outcome.cause if outcome.status != JobStatus.SUCCESSFUL else None
    return outcomes.left_transaction_open(attempt, leaked, policy, cause)


def _invoke(
    definition: JobDefinition[..., Any],
    context: JobContext,
    args: Any,
    kwargs: Any,
) -> Any:
    """Call the job's function (the innermost step of the middleware chain)."""
    if definition.takes_context:
        args = (context, *args)
    if definition.is_async:
        # A fresh event loop per async job, driven from this executor thread:
        # sync_to_async() calls inside the job (the ORM) run back on this thread,
        # with its tidied connection and, for atomic=True, inside its transaction.
        return async_to_sync(definition.func)(*args, **kwargs)
    return definition.func(*args, **kwargs)


def _call_job(call: middleware.JobCall) -> Any:
    return _invoke(call.definition, call.context, call.args, call.kwargs)


#: This process's middleware, built by the first job that runs.
_middleware = middleware.Chain(_call_job)


def _call(
    definition: JobDefinition[..., Any],
    context: JobContext,
    args: list[Any],
    kwargs: dict[str, Any],
    deadline: Deadline | None,
) -> Any:
    """The job's return value, through the middleware, inside the inline timeout if any.

    Inside an atomic job's transaction too: the middleware's writes commit or
    roll back with the job's.
    """
    if deadline is not None:
        with deadline.guard():
            return _call(definition, context, args, kwargs, None)
    if app_settings.MIDDLEWARE:  # else (the usual case) nothing between the worker and the job
        handler = _middleware.handler()
        if handler is not None:  # None: every factory raised MiddlewareNotUsed
            call = middleware.JobCall(context, definition, tuple(args), MappingProxyType(kwargs))
            return handler(call)
    return _invoke(definition, context, args, kwargs)


def _succeeded(attempt: Attempt, definition: JobDefinition[..., Any], value: Any) -> Outcome:
    follow_ups: list[Any] = []
    if definition.after is not None:
        try:
            value, follow_ups = definition.after(attempt.job, value)
        except Exception as exc:
            return outcomes.cannot_start_what_follows(attempt, exc)
    return outcomes.succeeded(attempt, value, follow_ups)


def _raised(
    attempt: Attempt, definition: JobDefinition[..., Any], exc: BaseException, deadline: Any
) -> Outcome:
    policy = definition.retry or DEFAULT_RETRY
    if isinstance(exc, JobTimeout) and deadline is not None and deadline.fired:
        return outcomes.timed_out(attempt, policy, safe_traceback(exc))
    return outcomes.raised(attempt, exc, policy)


def _run(
    attempt: Attempt,
    context: JobContext,
    definition: JobDefinition[..., Any],
    backend: Backend,
    recorder: Recorder,
    deadline: Deadline | None,
) -> tuple[Outcome, Written | None]:
    job = attempt.job
    try:
        args, kwargs = load_payload(job.args, job.kwargs)
    except DecodeError as exc:
        return outcomes.undecodable(attempt, exc), None
    token = set_current(context)
    try:
        if definition.atomic:
            return _run_atomic(
                attempt, context, definition, args, kwargs, backend, recorder, deadline
            )
        try:
            value = _call(definition, context, args, kwargs, deadline)
        except BaseException as exc:
            return _raised(attempt, definition, exc, deadline), None
        return _succeeded(attempt, definition, value), None
    finally:
        reset_current(token)


def _run_atomic(
    attempt: Attempt,
    context: JobContext,
    definition: JobDefinition[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    backend: Backend,
    recorder: Recorder,
    deadline: Deadline | None,
) -> tuple[Outcome, Written | None]:
    """The body and the success record commit together, or not at all."""
    job = attempt.job
    connection = connections[backend.alias]
    outcome: Outcome | None = None
    written = Written()
    try:
        with transaction.atomic(using=backend.alias):
            depth = len(connection.atomic_blocks)
            value = _call(definition, context, args, kwargs, deadline)
            if len(connection.atomic_blocks) != depth:
                # An atomic block the job entered and never left: undo everything
                # (after_job() rolls back what this block's exit leaves open).
                policy = definition.retry or DEFAULT_RETRY
                raise _RollBack(
                    outcomes.left_transaction_open(attempt, [backend.alias], policy, None)
                )
            outcome = _succeeded(attempt, definition, value)
            if outcome.status != JobStatus.SUCCESSFUL:
                raise _RollBack(outcome)  # roll the body back with the failure
            outcome.progress = context._progress.unwritten()  # committed with the success
            written = recorder.write([outcome])
            if job.id not in written.ids:
                raise LeaseLost
    except LeaseLost:
        logger.warning(
            "job #%s %s: lease lost before commit; its changes were rolled back",
            job.id,
            job.name,
        )
        assert outcome is not None
        return outcome, Written()  # nothing to write: the job is someone else's now
    except _RollBack as rollback:
        if rollback.outcome.error is not None:
            rollback.outcome.error["message"] += " (its database changes were rolled back)"
        return rollback.outcome, None
    except BaseException as exc:
        return _raised(attempt, definition, exc, deadline), None
    return outcome, written


def _outage_aware(attempt: Attempt, outcome: Outcome, alias: str) -> Outcome:
    """A failure caused by a database outage is an interruption, not an attempt."""
    cause = outcome.cause
    if cause is None or outcome.status not in (JobStatus.READY, JobStatus.FAILED):
        return outcome
    if not is_database_unavailable(cause):
        return outcome  # the job's own error (the common case: no probe needed)
    # A read-only session is never the job's fault, even if the database is
    # writable again by now (the probe reconnects this thread either way).
    if database_writable(alias) and not is_read_only_error(cause):
        return outcome  # the database answers: the job's own query failed, it counts
    return outcomes.interrupted_by_outage(attempt, outcome)
