"""Run jobs in the calling process, through the worker's own execute and record steps.

Immediate mode (``DURABLE_JOBS["IMMEDIATE"]``) and ``testing.run_pending_jobs()``
use this module: a job run here gets the same attempt counting, retry policy,
``Retry``/``Cancel`` handling, atomic bodies, fenced outcome writes and signals
as on a worker. There is no worker row and no heartbeat: this is for tests and
scripts, not for production traffic.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from .conf import app_settings
from .constants import STATUS_BITS, JobStatus
from .db import ClaimedJob, Outcome, get_backend
from .execution import execute
from .models import Job

_CLAIM_FIELDS = (
    "id",
    "name",
    "queue",
    "priority",
    "args",
    "kwargs",
    "attempts",
    "max_attempts",
    "timeout",
    "lease_token",
    "meta",
    "run_id",
    "unique_states",
)


@dataclasses.dataclass
class RunReport:
    """How many attempts ended in each way; ``retried`` attempts left the job READY."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    failures: list[Outcome] = dataclasses.field(default_factory=list, repr=False)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.cancelled + self.retried

    def add(self, outcome: Outcome) -> None:
        if outcome.status == JobStatus.SUCCESSFUL:
            self.succeeded += 1
        elif outcome.status == JobStatus.FAILED:
            self.failed += 1
            self.failures.append(outcome)
        elif outcome.status == JobStatus.CANCELLED:
            self.cancelled += 1
        else:
            self.retried += 1


def claim_one(job_id: int, alias: str, worker_id: uuid.UUID) -> ClaimedJob | None:
    """Lease the READY job ``job_id`` whatever its ``run_at`` (fenced by its token), or None."""
    row = (
        Job.objects.using(alias)
        .filter(id=job_id, status=JobStatus.READY, waiting_for=0)
        .values(*_CLAIM_FIELDS)
        .first()
    )
    if row is None:
        return None
    now = timezone.now()
    changes: dict[str, Any] = {
        "status": JobStatus.RUNNING,
        "attempts": row["attempts"] + 1,
        "started_at": now,
        "finished_at": None,
        "worker_id": worker_id,
        "lease_token": row["lease_token"] + 1,
        "lease_expires_at": now + timedelta(seconds=float(app_settings.LEASE_SECONDS)),
    }
    if not row["unique_states"] & STATUS_BITS[JobStatus.RUNNING]:
        changes["unique_key"] = None
    claimed = (
        Job.objects.using(alias)
        .filter(id=job_id, status=JobStatus.READY, lease_token=row["lease_token"])
        .update(**changes)
    )
    if not claimed:
        return None
    return ClaimedJob(
        **{
            **{name: row[name] for name in _CLAIM_FIELDS if name != "attempts"},
            "attempt": row["attempts"] + 1,
            "lease_token": row["lease_token"] + 1,
        }
    )


def run_claimed(job: ClaimedJob, alias: str, worker_id: uuid.UUID) -> Outcome:
    """Execute one claimed job and record its outcome, as a worker's executor does."""
    backend = get_backend(alias)
    outcome, recorded = execute(job, backend=backend, worker_id=worker_id)
    if not recorded:
        backend.record([outcome])
    return outcome


def run_jobs_now(job_ids: Iterable[int], alias: str | None = None) -> RunReport:
    """Run each job until it is finished: retries run at once, without their delays."""
    alias = alias or app_settings.DATABASE
    report = RunReport()
    worker_id = uuid.uuid4()
    for job_id in job_ids:
        while (claimed := claim_one(job_id, alias, worker_id)) is not None:
            outcome = run_claimed(claimed, alias, worker_id)
            report.add(outcome)
            if outcome.status != JobStatus.READY:
                break
    return report


def _only_test_case_transactions(alias: str) -> bool:
    """True when every open atomic block on ``alias`` is one Django's ``TestCase`` opened.

    Code that runs in such a block would run in autocommit in production, so
    "after the commit" means "now".
    """
    blocks = connections[alias].atomic_blocks
    return all(getattr(block, "_from_testcase", False) for block in blocks)


def run_after_commit(job_ids: list[int], alias: str) -> None:
    """Immediate mode: run the jobs once the transaction that wrote them commits."""
    if not job_ids:
        return
    if connections[alias].in_atomic_block and not _only_test_case_transactions(alias):
        transaction.on_commit(lambda: run_jobs_now(job_ids, alias), using=alias, robust=False)
    else:
        run_jobs_now(job_ids, alias)
