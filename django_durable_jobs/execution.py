"""Run one claimed job and decide its outcome: success, retry, failure or cancellation.

Nothing a job does can escape from here: every exception (also from the job's
return value, its payload or its definition being gone) becomes an ``Outcome``
with an entry in the job's attempt history.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from . import followups, registry, signals
from .conf import app_settings
from .constants import AttemptOutcome, JobStatus
from .context import JobContext, reset_current, set_current
from .db import Backend, ClaimedJob, Outcome
from .definitions import JobDefinition
from .exceptions import Cancel, InvalidJobArguments, JobTimeout, Retry, UnknownJob
from .failures import history_entry, safe_message
from .retry import DEFAULT_RETRY
from .serialization import DecodeError, dumps, encode, load_payload

logger = logging.getLogger("django_durable_jobs.execution")


class LeaseLost(Exception):
    """The job's lease was taken over before its atomic body could commit."""


def _entry(job: ClaimedJob, worker_id: uuid.UUID | None, started_at: str, **fields: Any):
    return history_entry(attempt=job.attempt, worker_id=worker_id, started_at=started_at, **fields)


def _retry_delay(definition: JobDefinition[..., Any], exc: BaseException, attempt: int) -> float:
    if isinstance(exc, Retry):
        if exc.at is not None:
            return max(0.0, (exc.at - timezone.now()).total_seconds())
        if exc.delay is not None:
            delay = exc.delay
            return max(0.0, delay.total_seconds() if hasattr(delay, "total_seconds") else delay)
    try:
        return max(0.0, float(definition.retry.delay(attempt)))
    except Exception:  # a broken custom policy must not lose the job
        logger.exception("retry policy of %s raised; using the default backoff", definition.name)
        return DEFAULT_RETRY.delay(attempt)


def failure_outcome(
    job: ClaimedJob,
    definition: JobDefinition[..., Any] | None,
    exc: BaseException,
    *,
    worker_id: uuid.UUID | None,
    started_at: str,
    traceback_text: str | None = None,
) -> Outcome:
    """The outcome of an attempt that raised ``exc``.

    ``traceback_text`` replaces the exception's own traceback (a timed-out job's
    is where its thread was stuck, taken from outside).
    """
    if isinstance(exc, Cancel):
        entry = _entry(
            job,
            worker_id,
            started_at,
            outcome=AttemptOutcome.CANCELLED,
            message=exc.reason or "cancelled by the job",
            exception=exc,
            with_traceback=False,
        )
        return followups.attach(Outcome(job, JobStatus.CANCELLED, error=entry))
    if isinstance(exc, Retry):
        outcome_kind = AttemptOutcome.RETRY
    elif isinstance(exc, JobTimeout):
        outcome_kind = AttemptOutcome.TIMEOUT
    else:
        outcome_kind = AttemptOutcome.ERROR
    message = safe_message(exc)
    if job.attempt >= job.max_attempts:
        if isinstance(exc, Retry):
            message = f"{message} (no attempts left: {job.attempt} of {job.max_attempts} used)"
        entry = _entry(
            job, worker_id, started_at, outcome=outcome_kind, message=message, exception=exc
        )
        if traceback_text is not None:
            entry["traceback"] = traceback_text
        return followups.attach(Outcome(job, JobStatus.FAILED, error=entry, cause=exc))
    delay = _retry_delay(definition, exc, job.attempt) if definition else 0.0
    entry = _entry(job, worker_id, started_at, outcome=outcome_kind, message=message, exception=exc)
    if traceback_text is not None:
        entry["traceback"] = traceback_text
    return Outcome(job, JobStatus.READY, error=entry, retry_delay=delay, cause=exc)


def _success_outcome(
    job: ClaimedJob,
    value: Any,
    *,
    worker_id: uuid.UUID | None,
    started_at: str,
    definition: JobDefinition[..., Any] | None = None,
) -> Outcome:
    """SUCCESSFUL with the stored result and the follow-up jobs, or FAILED if unstorable."""
    follow_ups: list[Any] = []
    if definition is not None and definition.after is not None:
        try:
            value, follow_ups = definition.after(job, value)
        except Exception as exc:
            message = f"The job ran, but what it returned cannot start what follows: {exc}"
            entry = _entry(
                job, worker_id, started_at, outcome=AttemptOutcome.ERROR, message=message
            )
            return followups.attach(Outcome(job, JobStatus.FAILED, error=entry))
    outcome = _stored_result(job, value, worker_id=worker_id, started_at=started_at)
    if outcome.status == JobStatus.SUCCESSFUL:
        outcome.follow_ups = follow_ups
    return followups.attach(outcome)


def _stored_result(
    job: ClaimedJob, value: Any, *, worker_id: uuid.UUID | None, started_at: str
) -> Outcome:
    try:
        result_json = "null" if value is None else dumps(encode(value, "the return value"))
    except InvalidJobArguments as exc:
        message = f"The job ran, but its return value cannot be stored: {exc}"
        entry = _entry(job, worker_id, started_at, outcome=AttemptOutcome.ERROR, message=message)
        # No retry: the job's effects happened; running it again would repeat them.
        return Outcome(job, JobStatus.FAILED, error=entry)
    limit = app_settings.MAX_PAYLOAD_BYTES
    if limit and len(result_json) > limit and len(result_json.encode()) > limit:
        message = (
            f"The job ran, but its return value is {len(result_json.encode()):,} bytes as JSON, "
            f'over DURABLE_JOBS["MAX_PAYLOAD_BYTES"] ({limit:,}); return a reference instead.'
        )
        entry = _entry(job, worker_id, started_at, outcome=AttemptOutcome.ERROR, message=message)
        return Outcome(job, JobStatus.FAILED, error=entry)
    return Outcome(job, JobStatus.SUCCESSFUL, result_json=result_json)


def _call(definition: JobDefinition[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    if definition.is_async:
        # A fresh event loop per async job, driven from this executor thread:
        # sync_to_async() calls inside the job (the ORM) run back on this thread,
        # with its tidied connection and, for atomic=True, inside its transaction.
        return async_to_sync(definition.func)(*args, **kwargs)
    return definition.func(*args, **kwargs)


def execute(
    job: ClaimedJob,
    *,
    backend: Backend,
    worker_id: uuid.UUID | None,
    cancel_event: threading.Event | None = None,
) -> tuple[Outcome, bool]:
    """Run ``job``; return its outcome and whether that outcome is already recorded.

    Only an atomic job records its own success (inside its transaction); every
    other outcome is left to the caller, which may batch it. The ``job_started``
    signal is sent before the attempt, ``job_finished`` or ``job_retrying`` after.
    """
    context = JobContext(
        job_id=job.id,
        name=job.name,
        queue=job.queue,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker_id=worker_id,
        run_id=job.run_id,
        meta=job.meta_dict,
        _cancel_event=cancel_event or threading.Event(),
    )
    definition: JobDefinition[..., Any] | None
    try:
        definition = registry.get(job.name)
    except UnknownJob:
        definition = None
    signals.send_started(context, definition)
    started = time.monotonic()
    outcome, recorded = _execute(job, context, definition, backend=backend, worker_id=worker_id)
    signals.send_ended(context, definition, outcome, time.monotonic() - started)
    return outcome, recorded


def _execute(
    job: ClaimedJob,
    context: JobContext,
    definition: JobDefinition[..., Any] | None,
    *,
    backend: Backend,
    worker_id: uuid.UUID | None,
) -> tuple[Outcome, bool]:
    started_at = timezone.now().isoformat()
    try:
        if definition is None:
            definition = registry.get(job.name)
    except UnknownJob as exc:
        entry = _entry(
            job, worker_id, started_at, outcome=AttemptOutcome.UNKNOWN_JOB, message=str(exc)
        )
        return followups.attach(Outcome(job, JobStatus.FAILED, error=entry)), False
    try:
        args, kwargs = load_payload(job.args, job.kwargs)
    except DecodeError as exc:
        entry = _entry(
            job,
            worker_id,
            started_at,
            outcome=AttemptOutcome.DECODE_ERROR,
            message=f"the job's arguments could not be decoded: {exc}",
        )
        return followups.attach(Outcome(job, JobStatus.FAILED, error=entry)), False

    if definition.takes_context:
        args = [context, *args]
    token = set_current(context)
    try:
        if definition.atomic:
            return _execute_atomic(job, definition, args, kwargs, backend, worker_id, started_at)
        value = _call(definition, args, kwargs)
    except BaseException as exc:
        outcome = failure_outcome(job, definition, exc, worker_id=worker_id, started_at=started_at)
        return outcome, False
    finally:
        reset_current(token)
    outcome = _success_outcome(
        job, value, worker_id=worker_id, started_at=started_at, definition=definition
    )
    return outcome, False


class _Unstorable(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


def _execute_atomic(
    job: ClaimedJob,
    definition: JobDefinition[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    backend: Backend,
    worker_id: uuid.UUID | None,
    started_at: str,
) -> tuple[Outcome, bool]:
    """The body and the success record commit together, or not at all."""
    try:
        with transaction.atomic(using=backend.alias):
            value = _call(definition, args, kwargs)
            outcome = _success_outcome(
                job, value, worker_id=worker_id, started_at=started_at, definition=definition
            )
            if outcome.status != JobStatus.SUCCESSFUL:
                raise _Unstorable(outcome)  # roll the body back with the failure
            if job.id not in followups.write(backend, [outcome]):
                raise LeaseLost
    except LeaseLost:
        logger.warning(
            "job #%s %s: lease lost before commit; its changes were rolled back",
            job.id,
            job.name,
        )
        return outcome, True
    except _Unstorable as unstorable:
        if unstorable.outcome.error is not None:
            unstorable.outcome.error["message"] += " (its database changes were rolled back)"
        return unstorable.outcome, False
    except BaseException as exc:
        return failure_outcome(
            job, definition, exc, worker_id=worker_id, started_at=started_at
        ), False
    return outcome, True
