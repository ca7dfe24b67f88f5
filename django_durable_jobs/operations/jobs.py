"""Operator actions on jobs: retry, cancel, run now, delete and purge.

Each takes a target (ids, a ``JobFilter`` or a queryset), changes only the jobs
its rule allows, in bounded batches, and returns an ``OperationResult`` that
counts what it did and what it refused, with the reason. The attempt history
(``errors``) is always kept: a cancellation adds its entry to it, a retry
records itself in ``meta["retried"]``, and a job's page shows both in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db.models import Case, F, Max, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Now
from django.db.models.lookups import GreaterThan
from django.utils import timezone

from ..constants import STATUS_BITS, AttemptOutcome, JobStatus
from ..db import get_backend
from ..db.expressions import JSONAppendToKey, JSONArrayAppend, JSONObject
from ..models import Job
from .batches import COUNT_CAP, capped_count, run_in_batches
from .results import OperationResult
from .selection import Selection, Target, select

FINISHED = tuple(JobStatus.finished())
#: ``Job.meta`` key listing operator retries: ``[{"at", "by", "attempts"}, ...]``.
RETRIED_KEY = "retried"


@dataclasses.dataclass(frozen=True)
class _Rule:
    """Which jobs an action may change, and why it leaves the others alone."""

    action: str
    allowed: Q
    refusals: tuple[tuple[str, Q, str], ...]


def _refuse(result: OperationResult, selection: Selection, rule: _Rule) -> None:
    """Count the selected jobs the rule refuses (exactly for ids, capped for filters)."""
    cap = len(selection.ids) if selection.ids is not None else COUNT_CAP
    for key, condition, reason in rule.refusals:
        count, exact = capped_count(selection.queryset.filter(condition), cap)
        result.refuse(key, reason, count, at_least=not exact)
    if selection.ids is not None:
        found = set(selection.queryset.values_list("id", flat=True))
        missing = [job_id for job_id in selection.ids if job_id not in found]
        if missing:
            shown = ", ".join(f"#{job_id}" for job_id in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            result.refuse(OperationResult.NOT_FOUND, f"not found ({shown}{more})", len(missing))


def _operate(
    target: Target,
    rule: _Rule,
    updates: dict[str, Any] | None,
    *,
    database: str | None,
    limit: int | None,
    dry_run: bool,
    extra_condition: Q | None = None,
    count_refusals: bool = True,
) -> OperationResult:
    selection = select(target, database=database)
    result = OperationResult(rule.action, selection.description, dry_run=dry_run)
    if count_refusals:
        _refuse(result, selection, rule)
    # Only rows that existed when the operation began (batches walk ids
    # upwards, so a job retried and failed again meanwhile is not seen twice).
    top = selection.queryset.model.objects.using(selection.alias).aggregate(top=Max("id"))["top"]
    if top is None:
        return result
    condition = rule.allowed & (extra_condition or Q()) & Q(id__lte=top)
    if dry_run:
        count, exact = capped_count(selection.queryset.filter(condition), limit or COUNT_CAP)
        result.done = count
        result.remaining = not exact and limit is not None
        result.done_at_least = not exact and limit is None
        return result

    def change(batch: QuerySet[Job]) -> int:
        if updates is None:
            return batch.delete()[0]
        return batch.update(**updates)

    result.done, result.remaining = run_in_batches(
        selection.queryset, condition, change, limit=limit
    )
    return result


def _history(outcome: str, message: str, actor: str | None, **fields: Any) -> JSONArrayAppend:
    """A history entry written by SQL, so each row gets its own attempt number."""
    entry = JSONObject(
        attempt=F("attempts"),
        outcome=outcome,
        exception_class=None,
        message=message,
        traceback=None,
        worker=fields.pop("worker", None),
        started_at=None,
        at=timezone.now().isoformat(),
        by=actor,
        **fields,
    )
    return JSONArrayAppend("errors", entry)


def _unique_key_in(status: str) -> Case:
    """Keep the unique key only if the job's unique states include ``status``."""
    return Case(
        When(GreaterThan(F("unique_states").bitand(STATUS_BITS[status]), 0), then=F("unique_key")),
        default=Value(None),
    )


def _by(actor: str | None) -> str:
    return f" ({actor})" if actor else ""


RETRY = _Rule(
    "retry",
    Q(status__in=[JobStatus.FAILED, JobStatus.CANCELLED]),
    (
        (JobStatus.READY, Q(status=JobStatus.READY), "ready already (waiting to run)"),
        (JobStatus.RUNNING, Q(status=JobStatus.RUNNING), "running (cancel it first)"),
        (
            JobStatus.SUCCESSFUL,
            Q(status=JobStatus.SUCCESSFUL),
            "successful (enqueue it again instead)",
        ),
    ),
)


def retry(
    target: Target,
    *,
    actor: str | None = None,
    database: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> OperationResult:
    """FAILED or CANCELLED jobs back to READY, due now, with a fresh set of attempts.

    The expiry (``expires=``) is cleared: an operator retrying a job wants it to
    run, and an expired job would otherwise only expire again.

    The attempt history (``errors``) is kept as it is; the retry is recorded
    in ``meta["retried"]`` (when, by whom, after how many attempts), which the
    admin and ``jobs show`` place in the history. Rewriting the history
    instead would rewrite every retried job's tracebacks: at scale, twice the
    cost of the retry itself. RUNNING, READY and SUCCESSFUL jobs are refused.
    """
    marker = JSONObject(at=timezone.now().isoformat(), by=actor, attempts=F("attempts"))
    updates = {
        # Before "attempts": MySQL assigns in order, so the marker must read the old count.
        "meta": JSONAppendToKey("meta", RETRIED_KEY, marker),
        "status": JobStatus.READY,
        "attempts": 0,
        "run_at": Now(),
        "finished_at": None,
        "result": None,
        "cancel_requested_at": None,
        "lease_expires_at": None,
        "expires_at": None,
        "unique_key": _unique_key_in(JobStatus.READY),
    }
    result = _operate(target, RETRY, updates, database=database, limit=limit, dry_run=dry_run)
    if result.done and not dry_run:
        _wake_workers(database)
    return result


CANCEL = _Rule(
    "cancel",
    Q(status__in=[JobStatus.READY, JobStatus.RUNNING]),
    tuple(
        (status, Q(status=status), f"finished already ({status})")
        for status in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)
    ),
)


def cancel(
    target: Target,
    *,
    actor: str | None = None,
    database: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> OperationResult:
    """READY and RUNNING jobs to CANCELLED; finished jobs are refused.

    A RUNNING job is marked CANCELLED at once, with ``cancel_requested_at`` set
    and its lease cleared. Its worker's outcome write is fenced on
    ``status = 'RUNNING'``, so whatever the attempt reports later changes
    nothing; a cooperative job sees ``current_job().cancel_requested``.
    """
    ready = {
        "status": JobStatus.CANCELLED,
        "finished_at": Now(),
        "errors": _history(
            AttemptOutcome.OPERATOR_CANCEL,
            f"cancelled by an operator{_by(actor)} before it ran",
            actor,
        ),
        "unique_key": _unique_key_in(JobStatus.CANCELLED),
    }
    running = {
        "status": JobStatus.CANCELLED,
        "cancel_requested_at": Now(),
        "finished_at": Now(),
        "lease_expires_at": None,
        "errors": _history(
            AttemptOutcome.OPERATOR_CANCEL,
            f"cancelled by an operator{_by(actor)} while running; whatever this attempt "
            "reports later is ignored",
            actor,
            worker=Cast(F("worker_id"), TextField()),
        ),
        "unique_key": _unique_key_in(JobStatus.CANCELLED),
    }
    first = _operate(
        target,
        CANCEL,
        ready,
        limit=limit,
        extra_condition=Q(status=JobStatus.READY),
        database=database,
        dry_run=dry_run,
    )
    left = None if limit is None else limit - first.done
    if left is not None and left <= 0:
        first.remaining = True
        return first
    second = _operate(
        target,
        CANCEL,
        running,
        limit=left,
        extra_condition=Q(status=JobStatus.RUNNING),
        count_refusals=False,
        database=database,
        dry_run=dry_run,
    )
    first.done += second.done
    first.done_at_least = first.done_at_least or second.done_at_least
    first.remaining = first.remaining or second.remaining
    return first


RUN_NOW = _Rule(
    "run_now",
    Q(status=JobStatus.READY, run_at__gt=Now()),
    (
        (JobStatus.READY, Q(status=JobStatus.READY, run_at__lte=Now()), "due already"),
        (JobStatus.RUNNING, Q(status=JobStatus.RUNNING), "running"),
        *(
            (status, Q(status=status), f"finished ({status}: retry it instead)")
            for status in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELLED)
        ),
    ),
)


def run_now(
    target: Target,
    *,
    actor: str | None = None,
    database: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> OperationResult:
    """READY jobs scheduled for later (or waiting to retry) become due now."""
    result = _operate(
        target, RUN_NOW, {"run_at": Now()}, database=database, limit=limit, dry_run=dry_run
    )
    if result.done and not dry_run:
        _wake_workers(database)
    return result


DELETE = _Rule(
    "delete",
    ~Q(status=JobStatus.RUNNING),
    ((JobStatus.RUNNING, Q(status=JobStatus.RUNNING), "running (cancel it first)"),),
)


def delete(
    target: Target,
    *,
    actor: str | None = None,
    database: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> OperationResult:
    """Delete jobs, history and all; RUNNING jobs are refused (cancel them first)."""
    return _operate(target, DELETE, None, database=database, limit=limit, dry_run=dry_run)


PURGE = _Rule(
    "purge",
    Q(status__in=FINISHED),
    (
        (JobStatus.READY, Q(status=JobStatus.READY), "not finished (READY)"),
        (JobStatus.RUNNING, Q(status=JobStatus.RUNNING), "not finished (RUNNING)"),
    ),
)


def purge(
    target: Target,
    *,
    actor: str | None = None,
    database: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
) -> OperationResult:
    """Delete finished jobs (SUCCESSFUL, FAILED, CANCELLED); others are refused."""
    return _operate(target, PURGE, None, database=database, limit=limit, dry_run=dry_run)


def _alias(database: str | None) -> str:
    from ..conf import app_settings

    return database or app_settings.DATABASE


def _wake_workers(database: str | None) -> None:
    """Jobs became due now: wake idle workers of every queue instead of waiting for a poll."""
    from ..conf import app_settings
    from .queues import queue_names

    if not app_settings.LISTEN_NOTIFY:
        return
    alias = _alias(database)
    get_backend(alias).notify(set(queue_names(alias)))
