"""Run jobs in the calling process, through the worker's own execute and record steps.

Immediate mode (``DURABLE_JOBS["IMMEDIATE"]``) and ``testing.run_pending_jobs()``
use this module: a job run here gets the same attempt counting, retry policy,
``Retry``/``Cancel`` handling, timeouts, atomic bodies, fenced outcome writes,
follow-ups (chained jobs, the next step of a run, group callbacks) and signals
as on a worker, because it goes through the same ``execute`` and the same
``Recorder``. There is no worker row and no heartbeat: this is for tests and
scripts, not for production traffic.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import Any

from django.core.signals import setting_changed
from django.db import connections, transaction

from . import enqueue
from .conf import app_settings
from .constants import JobStatus
from .db import get_backend
from .rows import ClaimedJob, Outcome
from .worker.execution import execute
from .worker.recorder import Recorder, Written


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


def run_claimed(job: ClaimedJob, alias: str, worker_id: uuid.UUID) -> tuple[Outcome, Written]:
    """Execute one claimed job here, write its outcome and what follows it, send its signals.

    The write is one attempt (no retry through outages, unlike a worker's): an
    error reaches the caller.
    """
    backend = get_backend(alias)
    recorder = Recorder(backend, worker_id=worker_id)
    outcome, written = execute(
        job, backend=backend, recorder=recorder, worker_id=worker_id, inline=True
    )
    if written is None:
        written = recorder.write([outcome])
    recorder.announce([outcome], written)
    return outcome, written


def run_jobs_now(job_ids: Iterable[int], alias: str | None = None) -> RunReport:
    """Run each job until it is finished, and then what it started, the same way.

    Retries run at once, without their delays; so do follow-ups due later.
    """
    alias = alias or app_settings.DATABASE
    report = RunReport()
    worker_id = uuid.uuid4()
    backend = get_backend(alias)
    lease_seconds = float(app_settings.LEASE_SECONDS)
    pending = list(job_ids)
    while pending:
        job_id = pending.pop(0)
        while (
            claimed := backend.claim_by_id(job_id, worker_id=worker_id, lease_seconds=lease_seconds)
        ) is not None:
            outcome, written = run_claimed(claimed, alias, worker_id)
            report.add(outcome)
            pending += written.made_ready
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


def install() -> None:
    """Point enqueue's ``after_write`` hook at immediate mode, or at nothing, per the settings."""
    enqueue.after_write = run_after_commit if app_settings.IMMEDIATE else None


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "DURABLE_JOBS":
        install()


setting_changed.connect(_settings_changed, dispatch_uid="django_durable_jobs.inline")
