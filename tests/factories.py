"""Job rows in any state, written straight to the table, for operations and admin tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job


def error_entry(attempt: int, message: str = "boom", **extra: Any) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "outcome": "error",
        "exception_class": "builtins.ValueError",
        "message": message,
        "traceback": f"Traceback (most recent call last):\n  ...\nValueError: {message}\n",
        "worker": None,
        "started_at": timezone.now().isoformat(),
        "at": timezone.now().isoformat(),
        **extra,
    }


def make_job(status: str = JobStatus.READY, **fields: Any) -> Job:
    """One job row; finished statuses get a ``finished_at`` and failures a history."""
    now = timezone.now()
    values: dict[str, Any] = {
        "name": "tests.testapp.jobs.add",
        "queue": "default",
        "args": [1, 2],
        "kwargs": {},
        "status": status,
        "run_at": now,
    }
    if status in JobStatus.finished():
        values.update(attempts=1, started_at=now - timedelta(seconds=2), finished_at=now)
    if status == JobStatus.FAILED:
        values.update(attempts=3, max_attempts=3, errors=[error_entry(n) for n in (1, 2, 3)])
    if status == JobStatus.SUCCESSFUL:
        values["result"] = 3
    if status == JobStatus.RUNNING:
        values.update(
            attempts=1,
            started_at=now,
            lease_token=1,
            lease_expires_at=now + timedelta(seconds=60),
        )
    values.update(fields)
    return Job.objects.create(**values)


def make_jobs(count: int, status: str = JobStatus.READY, **fields: Any) -> list[int]:
    """Many alike rows, inserted in bulk; returns their ids."""
    probe = make_job(status, **fields)
    Job.objects.bulk_create([_copy(probe) for _ in range(count - 1)], batch_size=500)
    rows = Job.objects.filter(id__gte=probe.id, status=status).order_by("id")
    return list(rows.values_list("id", flat=True))


def _copy(job: Job) -> Job:
    values = {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}
    values.pop("id")
    return Job(**values)
