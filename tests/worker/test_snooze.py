"""``raise Snooze(seconds)``: again later, no attempt used, the snooze in the history."""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest

from django_durable_jobs import InvalidJobOptions, JobStatus, Snooze
from django_durable_jobs.models import FailedAttempts, Job
from django_durable_jobs.testing import run_pending_jobs
from tests.testapp import endings
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def _assert_snoozed_then_done(handle) -> None:
    job = Job.objects.get(id=handle.id)
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCESSFUL, 1, "ready now")
    (entry,) = job.errors
    assert entry["outcome"] == "snoozed"
    assert entry["message"] == "snoozed for 0.3s: the export is not ready"
    assert Counter.objects.get(key="s").value == 2
    assert not FailedAttempts.objects.exists()  # a snooze is not a failure


def test_a_snoozed_job_runs_again_later_without_using_its_only_attempt(start_worker):
    Counter.objects.create(key="s")
    handle = endings.snoozes_once.enqueue("s")
    worker = start_worker("--burst", "--poll-interval", "0.05")
    # Burst mode ends once nothing is *ready*: wait for the snooze by a second run.
    assert worker.wait() == 0, worker.output()
    job = Job.objects.get(id=handle.id)
    assert (job.status, job.attempts) == (JobStatus.READY, 0)
    assert job.run_at - job.started_at >= timedelta(seconds=0.25)
    assert f"job #{handle.id}" in worker.output()
    assert "snoozed for 0.3s: the export is not ready" in worker.output()
    time.sleep(0.35)
    again = start_worker("--burst")
    assert again.wait() == 0, again.output()
    _assert_snoozed_then_done(handle)


def test_run_pending_jobs_snoozes_the_same_way():
    Counter.objects.create(key="s")
    handle = endings.snoozes_once.enqueue("s")
    report = run_pending_jobs(with_scheduled=True)
    assert report.retried == 1
    _assert_snoozed_then_done(handle)


@pytest.mark.parametrize("seconds", [0, -1, math.inf, math.nan, "30", True, 10**12])
def test_a_bad_snooze_is_refused_where_it_is_made(seconds):
    with pytest.raises(InvalidJobOptions, match=r"Snooze\(seconds\)="):
        Snooze(seconds)


def test_a_snooze_takes_a_timedelta():
    assert Snooze(timedelta(minutes=2)).seconds == 120.0
