"""The dashboard's failures are attempts counted as they are written, so a retry keeps them.

(Issue 16, item 12: "failed, last hour" used to count FAILED jobs by their
``finished_at``; an operator's retry made them READY and the failures vanished
from the tile and the chart, and attempts that failed before a retry were
never counted at all.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from django_durable_jobs import JobStatus, enqueue_many, operations
from django_durable_jobs.db import get_backend
from django_durable_jobs.maintenance import prune_finished_jobs
from django_durable_jobs.maintenance.rescuer import rescue_expired_leases
from django_durable_jobs.models import FailedAttempts, Job
from django_durable_jobs.testing import run_pending_jobs
from tests.factories import make_job
from tests.testapp import endings
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def tallied() -> int:
    return FailedAttempts.objects.aggregate(n=Sum("failures"))["n"] or 0


def failed_last_hour() -> int:
    return operations.throughput().totals[1]


def test_failed_attempts_stay_counted_after_an_operator_retries_the_job():
    Counter.objects.create(key="r")
    handle = endings.raises.enqueue("r")
    run_pending_jobs()
    assert handle.refresh().status == JobStatus.FAILED
    assert (tallied(), failed_last_hour()) == (2, 2)  # max_attempts=2: two failed attempts
    assert operations.retry([handle.id]).done == 1
    assert handle.refresh().status == JobStatus.READY
    assert failed_last_hour() == 2  # on the old code: 0
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:django_durable_jobs_job_dashboard")).content.decode()
    assert (
        '<span class="ddj-tile-value">2</span><span class="ddj-tile-label">failed attempts' in page
    )


def test_an_attempt_that_failed_before_a_successful_retry_is_counted():
    Counter.objects.create(key="f")
    handle = endings.fails_once.enqueue("f")
    run_pending_jobs()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    assert operations.throughput().totals == (1, 1)  # on the old code: (1, 0)


def test_endings_that_are_not_failures_write_no_tally():
    Counter.objects.bulk_create(Counter(key=key) for key in ("s", "a", "c"))
    endings.succeeds.enqueue("s")
    endings.asks_for_a_retry.enqueue("a")  # the job's own Retry: not a failure
    endings.cancels_itself.enqueue("c")
    report = run_pending_jobs()
    assert (report.succeeded, report.cancelled, report.retried) == (2, 1, 1)
    assert not FailedAttempts.objects.exists()


def test_a_lost_worker_is_a_failed_attempt_only_for_the_job_that_had_started():
    expired = timezone_now() - timedelta(seconds=5)
    make_job(JobStatus.RUNNING, lease_expires_at=expired, max_attempts=3)  # had started
    make_job(JobStatus.RUNNING, lease_expires_at=expired, started_at=None)  # claimed ahead
    assert rescue_expired_leases(get_backend("default")) == 2
    assert tallied() == 1


def test_a_worker_batch_of_mixed_endings_tallies_exactly_its_failed_attempts(start_worker):
    """The real worker, whose completer writes many outcomes per statement."""
    Counter.objects.bulk_create(Counter(key=f"k{i}") for i in range(60))
    enqueue_many(
        [
            *(endings.raises.prepare(f"k{i}") for i in range(20)),
            *(endings.succeeds.prepare(f"k{i}") for i in range(20, 50)),
            *(endings.fails_once.prepare(f"k{i}") for i in range(50, 60)),
        ]
    )
    worker = start_worker("--burst", "--concurrency", "4")
    assert worker.wait(timeout=60) == 0, worker.output()
    from_history = sum(
        1
        for errors in Job.objects.values_list("errors", flat=True)
        for entry in errors
        if entry["outcome"] == "error"
    )
    assert from_history == 20 * 2 + 10
    assert tallied() == from_history
    assert operations.throughput().totals == (40, 50)


def test_the_pruner_keeps_a_week_of_tally():
    now = get_backend("default").db_now().replace(second=0, microsecond=0)
    FailedAttempts.objects.create(minute=now - timedelta(days=8), failures=3)
    FailedAttempts.objects.create(minute=now - timedelta(days=6), failures=2)
    FailedAttempts.objects.create(minute=now, failures=1)
    prune_finished_jobs(get_backend("default"), force=True)
    assert sorted(FailedAttempts.objects.values_list("failures", flat=True)) == [1, 2]


def timezone_now():
    return get_backend("default").db_now()
