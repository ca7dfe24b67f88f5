"""Helpers for your own tests: see what was enqueued, run it here and now, or run jobs at once.

Everything works from Django's ``TestCase`` and ``TransactionTestCase`` and from
pytest (see the fixtures in ``django_durable_jobs.pytest_plugin``), on the real
job tables of the test database: nothing is mocked.

* ``enqueued_jobs()``, ``assert_enqueued()``, ``assert_not_enqueued()``: look at
  the jobs your code enqueued.
* ``run_pending_jobs()``: run the ready jobs in the test process, through the
  worker's claim, execute and record steps, until none is left.
* ``immediate_mode()`` (or ``DURABLE_JOBS["IMMEDIATE"] = True``): every enqueue
  runs its job in-process as soon as the enqueuing transaction commits.
* ``fire_due_schedules(at=...)``: enqueue the PERIODIC ticks due at a moment,
  through the tick ledger, without running the scheduler.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.test import override_settings

from .conf import app_settings
from .constants import JobStatus
from .definitions import JobDefinition
from .exceptions import JobFailed
from .handle import JobHandle
from .inline import RunReport, run_claimed
from .models import Job, JobQuerySet, RateStart
from .serialization import decode

__all__ = [
    "RunReport",
    "assert_enqueued",
    "assert_not_enqueued",
    "enqueued_jobs",
    "fire_due_schedules",
    "immediate_mode",
    "run_pending_jobs",
]


class _AnyValue:
    """The default of ``args``/``kwargs``/``priority``: match whatever was enqueued."""

    def __repr__(self) -> str:
        return "ANY"


_ANY: Any = _AnyValue()


def _name(job: JobDefinition[..., Any] | str | None) -> str | None:
    if job is None or isinstance(job, str):
        return job
    if isinstance(job, JobDefinition):
        return job.name
    module_path = getattr(job, "module_path", None)  # a django.tasks Task
    if isinstance(module_path, str):
        return module_path
    raise TypeError(f"expected a job definition or a job name, not {job!r}")


def enqueued_jobs(
    job: JobDefinition[..., Any] | str | None = None,
    *,
    queue: str | None = None,
    status: str | None = JobStatus.READY,
) -> JobQuerySet:
    """Jobs in the test database, oldest first: READY ones by default (``status=None``: all).

    ``job`` is a job definition (or its name) to filter on.
    """
    jobs = Job.objects.using(app_settings.DATABASE).order_by("id")
    name = _name(job)
    if name is not None:
        jobs = jobs.filter(name=name)
    if queue is not None:
        jobs = jobs.filter(queue=queue)
    if status is not None:
        jobs = jobs.filter(status=status)
    return jobs


def _matches(row: Job, args: Any, kwargs: Any, priority: Any) -> bool:
    if args is not _ANY and decode(row.args) != list(args):
        return False
    if kwargs is not _ANY and decode(row.kwargs) != dict(kwargs):
        return False
    return priority is _ANY or row.priority == priority


def _describe(expected: str, candidates: list[Job]) -> str:
    if not candidates:
        return f"{expected}; found no such job at all."
    lines = [
        f"  #{row.id} [{row.status}, queue {row.queue}, priority {row.priority}] "
        f"args={decode(row.args)!r} kwargs={decode(row.kwargs)!r}"
        for row in candidates[:20]
    ]
    more = f"\n  ... and {len(candidates) - 20} more" if len(candidates) > 20 else ""
    return f"{expected}; found these jobs of that name:\n" + "\n".join(lines) + more


def _expected(name: str, args: Any, kwargs: Any, queue: Any, status: Any) -> str:
    parts = [f"job {name}"]
    if args is not _ANY:
        parts.append(f"args={list(args)!r}")
    if kwargs is not _ANY:
        parts.append(f"kwargs={dict(kwargs)!r}")
    if queue is not None:
        parts.append(f"queue={queue!r}")
    return " ".join(parts) + (f" ({status})" if status else " (any status)")


def assert_enqueued(
    job: JobDefinition[..., Any] | str,
    args: Any = _ANY,
    kwargs: Any = _ANY,
    *,
    queue: str | None = None,
    priority: Any = _ANY,
    status: str | None = JobStatus.READY,
    count: int | None = None,
) -> list[Job]:
    """Fail unless a matching job was enqueued; return the matching rows.

    ``args`` and ``kwargs`` are compared with the decoded stored arguments (omit
    them to match any). ``count`` asks for exactly that many matches.
    """
    name = _name(job)
    assert name is not None
    candidates = list(enqueued_jobs(name, queue=queue, status=status))
    found = [row for row in candidates if _matches(row, args, kwargs, priority)]
    expected = _expected(name, args, kwargs, queue, status)
    if count is not None and len(found) != count:
        raise AssertionError(
            _describe(f"Expected {count} x {expected}, but {len(found)} matched", candidates)
        )
    if not found:
        raise AssertionError(_describe(f"Expected {expected}", candidates))
    return found


def assert_not_enqueued(
    job: JobDefinition[..., Any] | str,
    args: Any = _ANY,
    kwargs: Any = _ANY,
    *,
    queue: str | None = None,
    status: str | None = JobStatus.READY,
) -> None:
    """Fail if a matching job was enqueued (any arguments when ``args``/``kwargs`` are omitted)."""
    name = _name(job)
    assert name is not None
    candidates = list(enqueued_jobs(name, queue=queue, status=status))
    found = [row for row in candidates if _matches(row, args, kwargs, _ANY)]
    if found:
        expected = _expected(name, args, kwargs, queue, status)
        raise AssertionError(_describe(f"Expected no {expected}", found))


def run_pending_jobs(
    queues: list[str] | None = None,
    *,
    with_scheduled: bool = False,
    raise_errors: bool = False,
    max_jobs: int = 10_000,
    rate_limits: bool = False,
) -> RunReport:
    """Run ready jobs in this process, one at a time, until none is left; report the outcomes.

    Jobs are claimed by the worker's own claim query (priority order, paused
    queues skipped, ``run_at`` respected), run and recorded as on a worker; jobs
    they enqueue run too. A failed attempt whose retry is due later stays READY,
    unless ``with_scheduled=True``, which makes every READY job due now (retries
    then run back to back until each job is finished). ``raise_errors=True``
    raises ``JobFailed`` for the first job that ends FAILED. ``max_jobs`` bounds
    the attempts run, against jobs that enqueue themselves forever. Rate limits
    hold nothing back (a test should not wait out a quota) unless
    ``rate_limits=True``, which leaves jobs over their limit READY, as a worker does.
    Jobs past their expiry (``expires=``) are never run: they end CANCELLED, and
    their group callbacks are released, as the workers' maintenance does.
    """
    from .db import get_backend
    from .maintenance import expire_due_jobs, release_finished_groups

    alias = app_settings.DATABASE
    backend = get_backend(alias)
    expired = expire_due_jobs(backend)
    worker_id = uuid.uuid4()
    report = RunReport()
    while report.total < max_jobs:
        if with_scheduled:
            Job.objects.using(alias).filter(status=JobStatus.READY).update(run_at=backend.db_now())
        if not rate_limits:
            RateStart.objects.using(alias).all().delete()  # every window empty: all permits free
        claimed = backend.claim(
            worker_id=worker_id,
            queues=queues,
            limit=1,
            lease_seconds=float(app_settings.LEASE_SECONDS),
        )
        if not claimed:
            # Retries due after their expiry; group callbacks expired members held.
            expired += expire_due_jobs(backend)
            if expired and release_finished_groups(alias):
                continue
            break
        outcome, _ = run_claimed(claimed[0], alias, worker_id)
        report.add(outcome)
        if raise_errors and outcome.status == JobStatus.FAILED:
            error = outcome.error or {}
            raise JobFailed(
                f"Job #{outcome.job.id} {outcome.job.name} failed: {error.get('message')}\n"
                f"{error.get('traceback') or ''}"
            )
    return report


@contextlib.contextmanager
def immediate_mode(enabled: bool = True) -> Iterator[None]:
    """Within the block (or decorated test), enqueue runs each job once its transaction commits.

    Every attempt runs back to back, without the retry delays, so the job is
    SUCCESSFUL, FAILED or CANCELLED before ``enqueue()`` returns (outside a
    transaction) or before the commit returns. Failures are recorded, not raised:
    check ``handle.refresh().status`` or ``handle.result``.
    """
    current = getattr(settings, "DURABLE_JOBS", None) or {}
    with override_settings(DURABLE_JOBS={**current, "IMMEDIATE": enabled}):
        yield


def fire_due_schedules(
    at: datetime,
    *,
    since: datetime | None = None,
    names: list[str] | None = None,
) -> list[JobHandle[Any]]:
    """Enqueue the periodic ticks due at ``at``, as the scheduler would; return their jobs.

    For each enabled entry, from settings (an admin or CLI override counts) or
    the database (``ScheduleEntry``), the most recent
    tick at or before ``at``; with ``since``, every tick in ``(since, at]``.
    Ticks go through the same ledger as the scheduler's, so a tick already
    recorded (by an earlier call or a scheduler) is not enqueued again, and an
    ``overlap=False`` entry whose previous run is pending is skipped. The jobs
    get ``JobContext.fire_time`` like real ticks. ``names``: only these
    entries (an unknown name raises ``UnknownSchedule``). ``at`` must be aware.
    """
    from django.utils import timezone as django_timezone

    from .ledger import TickOutcome, enqueue_tick
    from .models import ScheduleState
    from .periodic import get_entries
    from .schedule_entries import DatabaseEntries
    from .schedule_ops import UnknownSchedule

    for moment in (at, since):
        if moment is not None and django_timezone.is_naive(moment):
            raise ValueError(
                f"fire_due_schedules() needs aware datetimes, got {moment!r}: "
                "add tzinfo (e.g. datetime(..., tzinfo=UTC))."
            )
    alias = app_settings.DATABASE
    entries = get_entries()
    stored = DatabaseEntries(alias, [entry.name for entry in entries])
    stored.refresh()
    entries += [row.entry for row in stored.active().values() if row.entry is not None]
    if names is not None:
        known = {entry.name for entry in entries}
        unknown = sorted(set(names) - known)
        if unknown:
            raise UnknownSchedule(
                f"no PERIODIC entry is named {', '.join(map(repr, unknown))} "
                f"(entries: {', '.join(sorted(known)) or 'none'})."
            )
        entries = [entry for entry in entries if entry.name in names]
    overrides = dict(ScheduleState.objects.using(alias).values_list("name", "enabled"))
    handles: list[JobHandle[Any]] = []
    for entry in entries:
        override = overrides.get(entry.name)
        if not (entry.enabled if override is None else override):
            continue
        if since is not None:
            ticks = entry.schedule.between(since, at)
        else:
            latest = entry.schedule.previous(at)
            ticks = [latest] if latest is not None else []
        for fire_time in ticks:
            result = enqueue_tick(entry, fire_time, alias)
            if result.outcome is TickOutcome.ENQUEUED and result.job_id is not None:
                handles.append(JobHandle(result.job_id, entry.job, alias))
    return handles
