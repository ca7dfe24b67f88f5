"""Operations against real ``runworker`` subprocesses: cancel while running, pause, prune."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable_jobs import JobStatus, operations
from django_durable_jobs.models import Job
from tests.conftest import wait_for
from tests.factories import make_job
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def status(handle) -> str:
    return Job.objects.get(id=handle.id).status


def test_cancelling_a_running_job_fences_its_late_report(start_worker, tmp_path):
    marker = tmp_path / "started"
    handle = jobs.sleeper.enqueue(2.0, marker=str(marker))
    worker = start_worker()
    wait_for(marker.exists, timeout=30)
    assert status(handle) == JobStatus.RUNNING

    result = operations.cancel([handle.id], actor="ops")
    assert result.done == 1

    # The job body ignores the request and returns "slept" ~2 s later; its
    # report must change nothing, and the worker must say it ignored it.
    wait_for(lambda: "late report ignored" in worker.output(), timeout=30)
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.CANCELLED
    assert job.result is None
    assert job.cancel_requested_at is not None
    assert job.errors[-1]["outcome"] == "operator_cancel"
    assert job.errors[-1]["by"] == "ops"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_paused_queue_is_not_claimed_until_resumed(start_worker):
    operations.pause(["emails"])
    paused = jobs.add.using(queue="emails").enqueue(1, 1)
    other = jobs.add.enqueue(2, 2)
    worker = start_worker()
    wait_for(lambda: status(other) == JobStatus.SUCCESSFUL, timeout=30)
    # The paused job is older, so any claim that could take it would have
    # taken it first (claims go by priority, run_at, id).
    assert status(paused) == JobStatus.READY
    operations.resume(["emails"])
    wait_for(lambda: status(paused) == JobStatus.SUCCESSFUL, timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_retried_job_runs_again_with_fresh_attempts(start_worker):
    handle = jobs.always_fails.enqueue("first")
    worker = start_worker()
    wait_for(lambda: status(handle) == JobStatus.FAILED, timeout=30)
    assert operations.retry([handle.id]).done == 1
    wait_for(
        lambda: (
            status(handle) == JobStatus.FAILED and len(Job.objects.get(id=handle.id).errors) == 6
        ),
        timeout=30,
    )
    job = Job.objects.get(id=handle.id)
    assert [entry["attempt"] for entry in job.errors] == [1, 2, 3, 1, 2, 3]
    story = operations.history(job)
    assert [entry["attempt"] for entry in story] == [1, 2, 3, 3, 1, 2, 3]
    assert story[3]["outcome"] == "operator_retry"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_workers_prune_expired_jobs(start_worker):
    old = timezone.now() - timedelta(hours=2)
    expired = make_job(JobStatus.SUCCESSFUL, finished_at=old)
    kept = make_job(JobStatus.FAILED, finished_at=old)
    worker = start_worker(settings={"RETENTION": {"SUCCESSFUL": 3600}})
    wait_for(lambda: not Job.objects.filter(id=expired.id).exists(), timeout=30)
    assert Job.objects.filter(id=kept.id).exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
