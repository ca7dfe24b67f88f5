"""Every way an attempt can end, decided here and nowhere else.

Each function takes what happened and returns the ``Outcome`` to write: the
job's next status, whether the attempt counts, and the entry for its history.
They read no database and send no signal; ``execution`` calls them as a job
ends, ``recorder`` writes what they return. The endings, and what each one
does to the job (``docs/topics/lifecycle.md`` has the same table):

=======================  ===============================  ================
ending                   status                           attempt counted
=======================  ===============================  ================
succeeded                SUCCESSFUL                       yes
failed (raised)          READY to retry, FAILED at last   yes
retry requested          READY (FAILED at last)           yes
snoozed                  READY (after its seconds)        no
cancelled by the job     CANCELLED                        yes
timed out                READY to retry, FAILED at last   yes
result unstorable        FAILED (its effects happened)    yes
left a transaction open  READY to retry, FAILED at last   yes
code failed to import    READY to retry, FAILED at last   yes
unknown job / bad args   FAILED                           yes
interrupted: shutdown    READY                            no
interrupted: outage      READY (after 1 s)                no
released, not started    READY, no history entry          no
expired, not started     CANCELLED ("expired")            no
worker lost (started)    READY to retry, FAILED at last   yes (in SQL)
=======================  ===============================  ================

The last two happen without the worker (its process is gone): the database
backends' ``give_back`` applies them with the messages defined here.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.utils import timezone

from .. import meta as job_meta
from ..conf import app_settings
from ..constants import AttemptOutcome, JobStatus
from ..exceptions import Cancel, InvalidJobArguments, JobTimeout, Retry, Snooze
from ..failures import history_entry, safe_message
from ..retry import DEFAULT_RETRY, RetryPolicy
from ..rows import ClaimedJob, Outcome, PreparedJob
from ..serialization import dumps, encode

logger = logging.getLogger("django_durable_jobs.execution")

#: Delay before a job interrupted by a database outage runs again (seconds).
OUTAGE_RETRY_DELAY = 1.0

#: History messages of the endings the database backends apply (``give_back``).
LOST_LEASE_MESSAGE = (
    "worker lost: lease expired (the worker stopped heartbeating: killed, crashed, "
    "or cut off from the database)"
)
LOST_LEASE_FINAL_MESSAGE = LOST_LEASE_MESSAGE + "; no attempts left"
LOST_PROCESS_FINAL_HINT = (
    "; no attempts left (a job that kills its worker process every time ends here: "
    "see the attempt history)"
)
#: Where an attempt-history entry's keys come from, for SQL that builds one itself.
HISTORY_KEYS = ("attempt", "outcome", "exception_class", "message", "traceback", "worker", "at")


class Attempt:
    """Who is deciding: the job, the worker (if any) and when the attempt started."""

    __slots__ = ("job", "started_at", "worker_id")

    def __init__(
        self, job: ClaimedJob, worker_id: uuid.UUID | None, started_at: str | None = None
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        self.started_at = started_at or timezone.now().isoformat()

    def entry(
        self,
        outcome: str,
        message: str,
        exception: BaseException | None = None,
        *,
        with_traceback: bool = True,
        traceback_text: str | None = None,
    ) -> dict[str, Any]:
        entry = history_entry(
            attempt=self.job.attempt,
            outcome=outcome,
            message=message,
            exception=exception,
            worker_id=self.worker_id,
            started_at=self.started_at,
            with_traceback=with_traceback and traceback_text is None,
        )
        if traceback_text is not None:
            entry["traceback"] = traceback_text
        return entry


# -- the job returned ----------------------------------------------------------------
def succeeded(attempt: Attempt, value: Any, follow_ups: list[PreparedJob]) -> Outcome:
    """SUCCESSFUL with the stored result and what follows it; FAILED if it cannot be stored."""
    job = attempt.job
    try:
        result_json = "null" if value is None else dumps(encode(value, "the return value"))
    except InvalidJobArguments as exc:
        return unstorable_result(attempt, TypeError(str(exc)))
    except RecursionError:
        return unstorable_result(attempt, TypeError("the return value is nested too deeply"))
    limit = app_settings.MAX_PAYLOAD_BYTES
    if limit and len(result_json) > limit and len(result_json.encode()) > limit:
        return unstorable_result(
            attempt,
            ValueError(
                f"the return value is {len(result_json.encode()):,} bytes as JSON, over "
                f'DURABLE_JOBS["MAX_PAYLOAD_BYTES"] ({limit:,}); return a reference instead'
            ),
        )
    return Outcome(job, JobStatus.SUCCESSFUL, result_json=result_json, follow_ups=follow_ups)


def unstorable_result(attempt: Attempt, exc: BaseException) -> Outcome:
    """FAILED, never retried: the job's effects happened; running it again would repeat them."""
    entry = attempt.entry(
        AttemptOutcome.UNSTORABLE_RESULT,
        f"The job ran, but its return value cannot be stored: {safe_message(exc)}",
        exc,
        with_traceback=False,
    )
    return Outcome(attempt.job, JobStatus.FAILED, error=entry, cause=exc)


def cannot_start_what_follows(attempt: Attempt, exc: BaseException) -> Outcome:
    """FAILED: the job ran, but its result cannot become the next step's (or chained) job."""
    entry = attempt.entry(
        AttemptOutcome.ERROR,
        f"The job ran, but what it returned cannot start what follows: {safe_message(exc)}",
        exc,
    )
    return Outcome(attempt.job, JobStatus.FAILED, error=entry, cause=exc)


# -- the job raised -------------------------------------------------------------------
def _retry_delay(policy: RetryPolicy, exc: BaseException, attempt: int) -> float:
    if isinstance(exc, Retry):
        if exc.at is not None:
            return max(0.0, (exc.at - timezone.now()).total_seconds())
        if exc.delay is not None:
            delay = exc.delay
            return max(0.0, delay.total_seconds() if hasattr(delay, "total_seconds") else delay)
    try:
        return max(0.0, float(policy.delay(attempt)))
    except Exception:  # a broken custom policy must not lose the job
        logger.exception("the retry policy %r raised; using the default backoff", policy)
        return DEFAULT_RETRY.delay(attempt)


def _counted_failure(
    attempt: Attempt,
    kind: str,
    message: str,
    exc: BaseException | None,
    policy: RetryPolicy,
    *,
    traceback_text: str | None = None,
    retry_exc: BaseException | None = None,
) -> Outcome:
    """A counted attempt that failed: READY after the policy's delay, FAILED at the last."""
    job = attempt.job
    last = job.attempt >= job.max_attempts
    if last and isinstance(exc, Retry):
        message = f"{message} (no attempts left: {job.attempt} of {job.max_attempts} used)"
    entry = attempt.entry(kind, message, exc, traceback_text=traceback_text)
    if last:
        return Outcome(job, JobStatus.FAILED, error=entry, cause=exc)
    delay = _retry_delay(policy, retry_exc or exc or Exception(), job.attempt)
    return Outcome(job, JobStatus.READY, error=entry, retry_delay=delay, cause=exc)


def raised(
    attempt: Attempt,
    exc: BaseException,
    policy: RetryPolicy,
    *,
    traceback_text: str | None = None,
) -> Outcome:
    """The job raised: ``Cancel`` ends it, ``Retry`` and everything else retry per the policy.

    ``traceback_text`` replaces the exception's own traceback (a timed-out job's
    is where its thread was stuck, taken from outside).
    """
    if isinstance(exc, Snooze):
        return snoozed(attempt, exc)
    if isinstance(exc, Cancel):
        entry = attempt.entry(
            AttemptOutcome.CANCELLED,
            exc.reason or "cancelled by the job",
            exc,
            with_traceback=False,
        )
        return Outcome(attempt.job, JobStatus.CANCELLED, error=entry, cause=exc)
    if isinstance(exc, Retry):
        kind = AttemptOutcome.RETRY
    elif isinstance(exc, JobTimeout):
        kind = AttemptOutcome.TIMEOUT
    else:
        kind = AttemptOutcome.ERROR
    return _counted_failure(
        attempt, kind, safe_message(exc), exc, policy, traceback_text=traceback_text
    )


def snoozed(attempt: Attempt, exc: Snooze) -> Outcome:
    """``Snooze``: READY again in ``exc.seconds``, the attempt given back, the snooze recorded."""
    message = f"snoozed for {exc.seconds:g}s" + (f": {exc.reason}" if exc.reason else "")
    entry = attempt.entry(AttemptOutcome.SNOOZED, message, exc, with_traceback=False)
    return Outcome(
        attempt.job,
        JobStatus.READY,
        error=entry,
        retry_delay=exc.seconds,
        uncount=True,
        cause=exc,
    )


def timed_out(attempt: Attempt, policy: RetryPolicy, stack: str | None) -> Outcome:
    """The job ran past its timeout; ``stack`` is where its thread was (None: unknown)."""
    timeout = attempt.job.timeout or 0.0
    exc = JobTimeout(f"timed out after {timeout:g}s (the job's timeout)")
    return raised(attempt, exc, policy, traceback_text=stack)


def left_transaction_open(
    attempt: Attempt, aliases: list[str], policy: RetryPolicy, exc: BaseException | None
) -> Outcome:
    """The job returned (or raised ``exc``) with a transaction still open: rolled back, counted.

    Retried per the policy: its database changes were rolled back, so running
    it again is safe; and it is a bug of the job's, so it ends FAILED in the end.
    """
    where = ", ".join(repr(alias) for alias in aliases)
    message = (
        f"the job left a transaction open on the database {where}; it was rolled back, "
        "with every change the job made in it. Close each transaction.atomic() block "
        "(use it as a with-block) and end each BEGIN with COMMIT or ROLLBACK."
    )
    if exc is not None:
        message += f" The job also raised: {safe_message(exc)}"
    return _counted_failure(
        attempt, AttemptOutcome.LEFT_TRANSACTION_OPEN, message, exc, policy, retry_exc=exc
    )


# -- the job could not run ------------------------------------------------------------
def cannot_load(attempt: Attempt, exc: BaseException) -> Outcome:
    """Importing the job's module raised: retried with the default backoff, counted.

    An ImportError is usually a dependency missing during a rolling deploy; any
    other exception is a module that fails at import (or a definition that
    became invalid). The real exception and its traceback are recorded.
    """
    if isinstance(exc, ImportError):
        kind = AttemptOutcome.IMPORT_ERROR
        message = f"the job's code could not be imported: {safe_message(exc)}"
    else:
        kind = AttemptOutcome.DEFINITION_ERROR
        message = f"importing the job's code raised {type(exc).__name__}: {safe_message(exc)}"
    return _counted_failure(attempt, kind, message, exc, DEFAULT_RETRY)


def unknown_job(attempt: Attempt, exc: BaseException) -> Outcome:
    """No definition has the job's name (renamed or removed): FAILED at once."""
    entry = attempt.entry(AttemptOutcome.UNKNOWN_JOB, str(exc), with_traceback=False)
    return Outcome(attempt.job, JobStatus.FAILED, error=entry)


def undecodable(attempt: Attempt, exc: BaseException) -> Outcome:
    """The stored arguments cannot be decoded (written by something else): FAILED at once."""
    entry = attempt.entry(
        AttemptOutcome.DECODE_ERROR,
        f"the job's arguments could not be decoded: {safe_message(exc)}",
        with_traceback=False,
    )
    return Outcome(attempt.job, JobStatus.FAILED, error=entry)


def internal_error(attempt: Attempt, exc: BaseException) -> Outcome:
    """A bug of ours around the job: counted and retried (bounded), never left RUNNING."""
    return _counted_failure(
        attempt,
        AttemptOutcome.INTERNAL_ERROR,
        f"internal error of the worker around this job (please report it): {safe_message(exc)}",
        exc,
        DEFAULT_RETRY,
    )


# -- the worker stopped the attempt ---------------------------------------------------------
def interrupted_by_shutdown(attempt: Attempt) -> Outcome:
    """Running at shutdown: back to READY, the attempt not counted."""
    entry = attempt.entry(
        AttemptOutcome.INTERRUPTED,
        "interrupted by shutdown: the worker stopped before the job finished; it will run "
        "again (this attempt is not counted)",
    )
    return Outcome(attempt.job, JobStatus.READY, error=entry, uncount=True)


def interrupted_by_outage(attempt: Attempt, failure: Outcome) -> Outcome:
    """The job failed because the database went away: not its fault, not counted."""
    detail = (failure.error or {}).get("message", "")[:300]
    entry = attempt.entry(
        AttemptOutcome.INTERRUPTED,
        f"interrupted: the database was unavailable during the job ({detail}); it will run "
        "again (this attempt is not counted)",
    )
    return Outcome(
        attempt.job,
        JobStatus.READY,
        error=entry,
        retry_delay=OUTAGE_RETRY_DELAY,
        uncount=True,
        cause=failure.cause,
    )


def released_unstarted(job: ClaimedJob) -> Outcome:
    """Claimed ahead but never started: back to READY as it was, with nothing in its history."""
    return Outcome(job, JobStatus.READY, uncount=True)


def expired_unstarted(job: ClaimedJob, worker_id: uuid.UUID | None) -> Outcome:
    """Claimed in time, but its expiry passed before a thread took it: CANCELLED, "expired".

    The attempt is given back (it never started), like ``maintenance.expirer``'s ending.
    """
    expires_at = job.expires_at.isoformat() if job.expires_at is not None else "?"
    entry = history_entry(
        attempt=job.attempt - 1,
        outcome=AttemptOutcome.EXPIRED,
        message=f"not started before it expired at {expires_at} (it waited for a free "
        "thread of its worker)",
        worker_id=worker_id,
    )
    return Outcome(job, JobStatus.CANCELLED, error=entry, uncount=True)


# -- what an outcome starts ------------------------------------------------------------------
def with_what_follows(outcome: Outcome) -> Outcome:
    """Add what the job's meta asks for: chained jobs on success, its group's release when final.

    A meta that cannot be decoded turns a success into ``cannot_start_what_follows``.
    """
    meta = outcome.job.meta_dict
    if not meta or (outcome.status != JobStatus.SUCCESSFUL and not outcome.is_final):
        return outcome
    try:
        chained = job_meta.chained(meta) if outcome.status == JobStatus.SUCCESSFUL else []
        callback = job_meta.callback(meta) if outcome.is_final else None
    except Exception as exc:
        if outcome.status != JobStatus.SUCCESSFUL:
            logger.error("job #%s: its meta cannot be decoded: %s", outcome.job.id, exc)
            return outcome
        broken = cannot_start_what_follows(Attempt(outcome.job, None), exc)
        broken.duration, broken.started = outcome.duration, outcome.started
        broken.context = outcome.context
        return broken
    for follow in chained:
        follow.parent_id = outcome.job.id
        follow.run_id = follow.run_id or outcome.job.run_id
    outcome.follow_ups = [*outcome.follow_ups, *chained]
    if callback is not None:
        outcome.releases = [*outcome.releases, callback]
    return outcome
