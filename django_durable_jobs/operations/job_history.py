"""A job's story in order: its attempt history with the operators' retries put in place.

Failed attempts and cancellations are entries of ``Job.errors``; retries are
recorded in ``meta["retried"]`` (so a bulk retry never rewrites tracebacks).
``history`` merges them by time for the admin and ``jobs show``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from ..constants import AttemptOutcome, JobStatus
from ..models import Job
from .jobs import RETRIED_KEY


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value.replace(" ", "T", 1))
    except ValueError:
        return None


def retry_entries(job: Job) -> list[dict[str, Any]]:
    """The operator retries of ``job``, shaped like history entries."""
    meta = job.meta if isinstance(job.meta, dict) else {}
    entries = []
    for marker in meta.get(RETRIED_KEY) or []:
        if not isinstance(marker, dict):
            continue
        by = marker.get("by")
        used = marker.get("attempts")
        entries.append(
            {
                "attempt": used,
                "outcome": AttemptOutcome.OPERATOR_RETRY.value,
                "exception_class": None,
                "message": f"retried by an operator{f' ({by})' if by else ''} after {used} "
                "attempt(s): attempts start again from 1",
                "traceback": None,
                "worker": None,
                "at": marker.get("at"),
                "by": by,
            }
        )
    return entries


def _current_attempt(job: Job) -> dict[str, Any] | None:
    """The attempt that has no entry of its own: the successful one, or the one running now.

    Derived from the row (``started_at``, ``finished_at``, ``worker_id``), so the
    history shows every attempt without a write per success.
    """
    if job.status == JobStatus.SUCCESSFUL:
        seconds = job.duration
        message = "succeeded" + (f" in {seconds:.3f}s" if seconds is not None else "")
        outcome, at = AttemptOutcome.SUCCEEDED.value, job.finished_at
    elif job.status == JobStatus.RUNNING:
        outcome, at = AttemptOutcome.RUNNING.value, job.started_at
        message = "running" if job.started_at else "claimed, waiting for a thread of its worker"
    else:
        return None
    return {
        "attempt": job.attempts,
        "outcome": outcome,
        "exception_class": None,
        "message": message,
        "traceback": None,
        "worker": str(job.worker_id) if job.worker_id else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "at": at.isoformat() if at else None,
    }


def history(job: Job) -> list[dict[str, Any]]:
    """Every attempt of ``job`` and its retries, oldest first (the last one from the row)."""
    entries = [e if isinstance(e, dict) else {"message": str(e)} for e in (job.errors or [])]
    merged: list[dict[str, Any]] = []
    retries = sorted(retry_entries(job), key=lambda e: _when(e["at"]) or datetime.min)
    for entry in entries:
        at = _when(entry.get("at"))
        while retries and at is not None and (_when(retries[0]["at"]) or at) <= at:
            merged.append(retries.pop(0))
        merged.append(entry)
    merged += retries
    current = _current_attempt(job)
    return [*merged, current] if current is not None else merged
