"""The operations layer on a real database: what each action changes, refuses and reports."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable_jobs import JobStatus, operations
from django_durable_jobs.constants import STATUS_BITS
from django_durable_jobs.db import ClaimedJob, Outcome, get_backend
from django_durable_jobs.models import Job, QueueState
from django_durable_jobs.operations import JobFilter, batches
from tests.factories import make_job, make_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def fresh(job: Job) -> Job:
    return Job.objects.get(id=job.id)


# -- retry -------------------------------------------------------------------


def test_retry_resets_attempts_and_keeps_the_history():
    job = make_job(JobStatus.FAILED, result=None, cancel_requested_at=timezone.now())
    before = timezone.now()
    result = operations.retry([job.id], actor="alice")
    assert (result.done, result.refused, result.complete) == (1, {}, True)
    job = fresh(job)
    assert job.status == JobStatus.READY
    assert job.attempts == 0
    assert job.finished_at is None
    assert job.cancel_requested_at is None
    assert job.run_at <= timezone.now()
    assert job.run_at >= before - timedelta(seconds=5)
    assert [entry["attempt"] for entry in job.errors] == [1, 2, 3]  # history untouched
    assert job.errors[0]["message"] == "boom"
    (marker,) = job.meta["retried"]
    assert (marker["by"], marker["attempts"]) == ("alice", 3)
    story = operations.history(job)
    assert [entry["outcome"] for entry in story] == ["error"] * 3 + ["operator_retry"]
    assert "retried by an operator (alice) after 3 attempt(s)" in story[-1]["message"]


def test_a_second_retry_adds_a_second_marker():
    job = make_job(JobStatus.FAILED, meta={"schedule": "nightly"})
    operations.retry([job.id])
    Job.objects.filter(id=job.id).update(status=JobStatus.FAILED, attempts=2)
    operations.retry([job.id], actor="bob")
    meta = fresh(job).meta
    assert meta["schedule"] == "nightly"
    assert [(m["by"], m["attempts"]) for m in meta["retried"]] == [(None, 3), ("bob", 2)]


def test_retry_refuses_running_ready_and_successful_and_reports_missing_ids():
    failed = make_job(JobStatus.FAILED)
    cancelled = make_job(JobStatus.CANCELLED)
    running = make_job(JobStatus.RUNNING)
    ready = make_job(JobStatus.READY)
    done = make_job(JobStatus.SUCCESSFUL)
    result = operations.retry([failed.id, cancelled.id, running.id, ready.id, done.id, 999_999])
    assert result.done == 2
    assert not result.complete
    assert {key: r.count for key, r in result.refused.items()} == {
        "RUNNING": 1,
        "READY": 1,
        "SUCCESSFUL": 1,
        "NOT_FOUND": 1,
    }
    assert "cancel it first" in result.refused["RUNNING"].reason
    assert "#999999" in result.refused["NOT_FOUND"].reason
    assert fresh(running).status == JobStatus.RUNNING
    assert fresh(running).attempts == 1
    assert fresh(done).status == JobStatus.SUCCESSFUL
    assert "Left alone" in result.summary()


def test_retry_by_filter_goes_through_several_batches(monkeypatch):
    monkeypatch.setattr(batches, "BATCH_SIZE", 7)
    failed = make_jobs(30, JobStatus.FAILED, queue="emails")
    other_queue = make_job(JobStatus.FAILED, queue="reports")
    make_jobs(3, JobStatus.SUCCESSFUL, queue="emails")
    result = operations.retry(JobFilter(queues=("emails",)))
    assert result.done == 30
    assert result.refused["SUCCESSFUL"].count == 3
    assert not result.refused["SUCCESSFUL"].at_least
    assert Job.objects.filter(id__in=failed, status=JobStatus.READY).count() == 30
    assert fresh(other_queue).status == JobStatus.FAILED


def test_retry_stops_at_the_limit_and_says_more_remain(monkeypatch):
    monkeypatch.setattr(batches, "BATCH_SIZE", 4)
    make_jobs(10, JobStatus.FAILED)
    result = operations.retry(JobFilter(statuses=(JobStatus.FAILED,)), limit=6)
    assert (result.done, result.remaining) == (6, True)
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 4
    assert "More jobs match" in result.summary()


def test_dry_run_changes_nothing():
    make_jobs(5, JobStatus.FAILED)
    result = operations.retry(JobFilter(statuses=(JobStatus.FAILED,)), dry_run=True)
    assert (result.done, result.dry_run) == (5, True)
    assert "would be retried" in result.summary()
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 5


def test_refusal_counts_of_a_large_filter_are_capped(monkeypatch):
    monkeypatch.setattr("django_durable_jobs.operations.jobs.COUNT_CAP", 5)
    make_jobs(8, JobStatus.SUCCESSFUL)
    result = operations.retry(JobFilter())
    refusal = result.refused["SUCCESSFUL"]
    assert (refusal.count, refusal.at_least) == (5, True)
    assert "5+ successful" in result.summary()


def test_retry_restores_the_unique_key_only_when_ready_keeps_it():
    keeps = make_job(
        JobStatus.FAILED,
        unique_key="k1",
        unique_states=STATUS_BITS[JobStatus.READY] | STATUS_BITS[JobStatus.FAILED],
    )
    drops = make_job(JobStatus.FAILED, unique_key="k2", unique_states=STATUS_BITS["FAILED"])
    operations.retry([keeps.id, drops.id])
    assert fresh(keeps).unique_key == "k1"
    assert fresh(drops).unique_key is None


# -- cancel ------------------------------------------------------------------


def test_cancel_ready_and_running_jobs():
    ready = make_job(JobStatus.READY, run_at=timezone.now() + timedelta(hours=1))
    running = make_job(JobStatus.RUNNING)
    finished = make_job(JobStatus.SUCCESSFUL)
    result = operations.cancel([ready.id, running.id, finished.id], actor="bob")
    assert result.done == 2
    assert set(result.refused) == {"SUCCESSFUL"}
    ready, running = fresh(ready), fresh(running)
    assert ready.status == JobStatus.CANCELLED
    assert ready.finished_at is not None
    assert ready.cancel_requested_at is None
    assert ready.errors[-1]["outcome"] == "operator_cancel"
    assert "before it ran" in ready.errors[-1]["message"]
    assert running.status == JobStatus.CANCELLED
    assert running.cancel_requested_at is not None
    assert running.finished_at is not None
    assert running.lease_expires_at is None
    assert "while running" in running.errors[-1]["message"]
    assert running.errors[-1]["by"] == "bob"


def _claimed(job: Job, token: int = 1) -> ClaimedJob:
    return ClaimedJob(
        id=job.id,
        name=job.name,
        queue=job.queue,
        priority=0,
        args=[],
        kwargs={},
        attempt=1,
        max_attempts=5,
        timeout=None,
        lease_token=token,
        meta={},
        run_id=None,
        unique_states=0,
    )


def test_a_cancelled_running_job_cannot_be_overwritten_by_its_late_report():
    job = make_job(JobStatus.RUNNING, lease_token=7)
    operations.cancel([job.id])
    claimed = _claimed(job, token=7)
    written = get_backend("default").record([Outcome(claimed, JobStatus.SUCCESSFUL, "42")])
    assert written == set()
    job = fresh(job)
    assert job.status == JobStatus.CANCELLED
    assert job.result is None


def test_one_statement_records_every_kind_of_outcome():
    # Typed arrays, on PostgreSQL in binary: NULLs, non-ASCII text, an int delay beside
    # a float one, and a stale lease token, all in one batch.
    ok, failed, later, soon, stopped, stale = (
        make_job(JobStatus.RUNNING, attempts=1) for _ in range(6)
    )
    error = {"outcome": "error", "message": "échec ✗", "attempt": 1}
    before = timezone.now()
    written = get_backend("default").record(
        [
            Outcome(_claimed(ok), JobStatus.SUCCESSFUL, result_json='{"n": "é"}'),
            Outcome(_claimed(failed), JobStatus.FAILED, error=error),
            Outcome(_claimed(later), JobStatus.READY, error=error, retry_delay=5),
            Outcome(_claimed(soon), JobStatus.READY, retry_delay=0.5, uncount=True),
            Outcome(_claimed(stopped), JobStatus.CANCELLED),
            Outcome(_claimed(stale, token=2), JobStatus.SUCCESSFUL, result_json="1"),
        ]
    )
    assert written == {ok.id, failed.id, later.id, soon.id, stopped.id}
    ok, failed, later, soon, stopped, stale = map(fresh, (ok, failed, later, soon, stopped, stale))
    assert (ok.status, ok.result, ok.errors) == (JobStatus.SUCCESSFUL, {"n": "é"}, [])
    assert (failed.status, failed.errors[-1]["message"]) == (JobStatus.FAILED, "échec ✗")
    assert failed.finished_at is not None
    assert later.finished_at is None
    assert later.status == soon.status == JobStatus.READY
    assert timedelta(seconds=4.5) < later.run_at - before < timedelta(seconds=60)
    assert soon.run_at - before < timedelta(seconds=4.5)
    assert (later.attempts, soon.attempts) == (1, 0)
    assert stopped.status == JobStatus.CANCELLED
    assert stopped.finished_at is not None
    assert (stale.status, stale.result) == (JobStatus.RUNNING, None)


def test_cancel_with_a_limit_counts_ready_and_running_together():
    make_jobs(3, JobStatus.READY)
    make_jobs(3, JobStatus.RUNNING)
    result = operations.cancel(JobFilter(), limit=4)
    assert (result.done, result.remaining) == (4, True)
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 4


# -- run now, delete, purge ---------------------------------------------------


def test_run_now_makes_scheduled_jobs_due():
    later = make_job(JobStatus.READY, run_at=timezone.now() + timedelta(days=1))
    due = make_job(JobStatus.READY)
    failed = make_job(JobStatus.FAILED)
    result = operations.run_now([later.id, due.id, failed.id])
    assert result.done == 1
    assert result.refused["READY"].reason == "due already"
    assert "retry it instead" in result.refused["FAILED"].reason
    assert fresh(later).run_at <= timezone.now()


def test_delete_refuses_running_jobs():
    ready, running, failed = (
        make_job(JobStatus.READY),
        make_job(JobStatus.RUNNING),
        make_job(JobStatus.FAILED),
    )
    result = operations.delete([ready.id, running.id, failed.id])
    assert result.done == 2
    assert set(result.refused) == {"RUNNING"}
    assert list(Job.objects.values_list("id", flat=True)) == [running.id]


def test_purge_deletes_only_finished_jobs_older_than_the_cutoff():
    old = timezone.now() - timedelta(days=10)
    old_done = make_jobs(3, JobStatus.SUCCESSFUL, finished_at=old)
    recent_done = make_job(JobStatus.SUCCESSFUL)
    ready = make_job(JobStatus.READY)
    result = operations.purge(JobFilter(finished_before=timezone.now() - timedelta(days=7)))
    assert result.done == 3
    assert not Job.objects.filter(id__in=old_done).exists()
    assert Job.objects.filter(id__in=[recent_done.id, ready.id]).count() == 2
    refused = operations.purge([ready.id])
    assert (refused.done, list(refused.refused)) == (0, ["READY"])


def test_bad_ids_and_statuses_are_clear_errors():
    with pytest.raises(ValueError, match="'abc' is not a job id"):
        operations.retry(["abc"])
    with pytest.raises(ValueError, match="unknown status DONE"):
        JobFilter(statuses=("DONE",))
    assert operations.retry(["#5", " 6 "]).refused["NOT_FOUND"].count == 2


# -- queues -------------------------------------------------------------------


def test_pause_and_resume():
    change = operations.pause(["emails", "emails", "reports"])
    assert change.changed == ["emails", "reports"]
    assert QueueState.objects.get(name="emails").paused
    assert operations.pause(["emails"]).unchanged == ["emails"]
    assert operations.paused_queues() == {"emails", "reports"}
    change = operations.resume(["emails", "never-paused"])
    assert (change.changed, change.unchanged) == (["emails"], ["never-paused"])
    assert operations.paused_queues() == {"reports"}
    assert change.summary() == "Resumed: emails; resumed already: never-paused."


def test_pause_validates_queue_names(settings):
    with pytest.raises(ValueError, match="not a valid queue name"):
        operations.pause(["bad name!"])
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "QUEUES": ["default", "emails"]}
    with pytest.raises(ValueError, match="there is no queue 'sms'"):
        operations.pause(["sms"])
    assert not QueueState.objects.exists()


def test_distinct_queues_finds_a_queue_whatever_the_status_of_its_jobs():
    # The history and the backlog are read on their own partial indexes, and
    # running and waiting jobs apart: a queue with jobs in one group only counts.
    # One queue per status, so that a status added later must be listed too.
    expected = []
    for status in JobStatus.values:
        make_job(queue=f"q-{status.lower()}", status=status)
        expected.append(f"q-{status.lower()}")
    make_job(queue="q-waiting", waiting_for=2)  # a group callback: READY, not claimable
    make_job(queue="q-ready", status=JobStatus.SUCCESSFUL)  # listed once
    assert get_backend("default").distinct_queues() == sorted([*expected, "q-waiting"])


def test_queue_names_come_from_jobs_states_and_settings():
    make_job(queue="zeta")
    make_job(queue="alpha")
    make_job(queue="alpha", status=JobStatus.FAILED)
    QueueState.objects.create(name="paused-empty", paused=True)
    assert operations.queue_names() == ["alpha", "default", "paused-empty", "zeta"]
