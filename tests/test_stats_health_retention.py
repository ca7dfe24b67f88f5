"""Stats, health and retention on a real database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_durable_jobs import JobStatus, operations
from django_durable_jobs.db import get_backend
from django_durable_jobs.maintenance import prune_finished_jobs
from django_durable_jobs.models import FailedAttempts, Job, QueueState, Worker
from django_durable_jobs.operations import batches, count_jobs
from tests.factories import make_job, make_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(heartbeat_age: float = 0.0, hostname: str = "web-1") -> Worker:
    return Worker.objects.create(
        id=uuid.uuid4(),
        hostname=hostname,
        pid=123,
        concurrency=4,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )


# -- counts and stats ----------------------------------------------------------


def test_count_is_exact_below_the_cap():
    make_jobs(5, JobStatus.SUCCESSFUL)
    count = count_jobs(Job.objects.all(), cap=10)
    assert (count.value, count.kind, str(count)) == (5, "exact", "5")


def test_count_above_the_cap_is_an_estimate_or_a_floor():
    make_jobs(300, JobStatus.SUCCESSFUL)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
        count = count_jobs(Job.objects.all(), cap=100)
        assert count.kind == "estimate"
        assert 150 <= count.value <= 600
        assert str(count).startswith("~")
    else:
        count = count_jobs(Job.objects.all(), cap=100)
        assert (count.value, count.kind, str(count)) == (100, "at_least", "100+")


def test_queue_stats_counts_backlog_and_oldest_due_job():
    now = timezone.now()
    make_job(queue="emails", run_at=now - timedelta(minutes=10))
    make_job(queue="emails", run_at=now - timedelta(minutes=1))
    make_job(queue="emails", run_at=now + timedelta(hours=1))
    make_job(JobStatus.RUNNING, queue="emails")
    make_jobs(4, JobStatus.FAILED, queue="emails")
    make_job(JobStatus.SUCCESSFUL, queue="reports")
    QueueState.objects.create(name="reports", paused=True)
    stats = {queue.name: queue for queue in operations.queue_stats()}
    emails = stats["emails"]
    assert emails.counts[JobStatus.READY].value == 3
    assert emails.counts[JobStatus.FAILED].value == 4
    assert emails.counts[JobStatus.RUNNING].value == 1
    assert emails.due == 2
    assert 590 <= emails.oldest_due_age <= 700
    assert not emails.paused
    assert stats["reports"].paused
    assert stats["reports"].counts[JobStatus.SUCCESSFUL].value == 1
    assert stats["reports"].oldest_due_age is None
    assert "default" in stats


def test_queue_stats_count_ready_jobs_waiting_on_others():
    # READY is counted in two parts, each on a partial index: the claimable, the waiting.
    make_jobs(3, queue="emails")
    make_jobs(2, queue="emails", waiting_for=1)
    make_jobs(4, queue="reports", waiting_for=3)
    stats = {queue.name: queue for queue in operations.queue_stats(cap=10)}
    assert str(stats["emails"].counts[JobStatus.READY]) == "5"
    assert str(stats["reports"].counts[JobStatus.READY]) == "4"
    assert stats["emails"].due == 3


def test_throughput_counts_successes_and_failed_attempts_per_minute():
    now = get_backend("default").db_now()
    make_jobs(3, JobStatus.SUCCESSFUL, finished_at=now - timedelta(minutes=5))
    make_jobs(4, JobStatus.FAILED, finished_at=now - timedelta(minutes=5))  # not counted...
    five_ago = (now - timedelta(minutes=5)).replace(second=0, microsecond=0)
    FailedAttempts.objects.create(minute=five_ago, failures=2)  # ...the tally is
    FailedAttempts.objects.create(minute=five_ago - timedelta(hours=2), failures=9)
    make_job(JobStatus.SUCCESSFUL, finished_at=now)
    make_job(JobStatus.SUCCESSFUL, finished_at=now - timedelta(hours=2))
    series = operations.throughput(now=now)
    assert len(series.succeeded) == len(series.failed) == 60
    assert series.totals == (4, 2)
    assert series.succeeded[-1] == 1
    assert series.succeeded[-6] == 3
    assert series.failed[-6] == 2


def test_worker_stats_mark_stale_heartbeats_and_running_jobs():
    alive = make_worker()
    make_worker(heartbeat_age=3600, hostname="old")
    make_job(JobStatus.RUNNING, worker_id=alive.id)
    stats = {w.worker.hostname: w for w in operations.worker_stats()}
    assert stats["web-1"].alive
    assert stats["web-1"].running == 1
    assert not stats["old"].alive


# -- health --------------------------------------------------------------------


def test_health_needs_a_live_worker():
    make_worker(heartbeat_age=3600)
    report = operations.check_health()
    assert not report.healthy
    assert "0 workers with a heartbeat" in report.problems[0]
    make_worker()
    assert operations.check_health().healthy


def test_health_fails_on_an_old_backlog_but_not_on_a_paused_queue():
    make_worker()
    make_job(queue="emails", run_at=timezone.now() - timedelta(minutes=30))
    report = operations.check_health(max_ready_age=600)
    assert not report.healthy
    assert "queue emails" in report.problems[0]
    assert operations.check_health(max_ready_age=3600).healthy
    operations.pause(["emails"])
    report = operations.check_health(max_ready_age=600)
    assert report.healthy
    assert report.queues[0]["paused"]


def test_health_for_one_host_and_some_queues(settings):
    make_worker(hostname="a")
    make_job(queue="slow", run_at=timezone.now() - timedelta(hours=2))
    assert not operations.check_health(host="b").healthy
    assert not operations.check_health(host="a").healthy
    assert operations.check_health(host="a", queues=["fast"]).healthy
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "HEALTH_MAX_READY_AGE": None}
    assert operations.check_health(host="a").healthy


# -- retention -----------------------------------------------------------------


def test_prune_deletes_finished_jobs_past_their_retention(monkeypatch):
    monkeypatch.setattr(batches, "BATCH_SIZE", 4)
    now = timezone.now()
    old = now - timedelta(days=40)
    old_ok = make_jobs(10, JobStatus.SUCCESSFUL, finished_at=now - timedelta(days=8))
    young_ok = make_job(JobStatus.SUCCESSFUL, finished_at=now - timedelta(days=6))
    old_failed = make_job(JobStatus.FAILED, finished_at=old)
    young_failed = make_job(JobStatus.FAILED, finished_at=now - timedelta(days=20))
    ready = make_job(JobStatus.READY, enqueued_at=old, run_at=old)
    result = operations.prune_expired()
    assert result.deleted == {"CANCELLED": 0, "FAILED": 1, "SUCCESSFUL": 10}
    assert not result.remaining
    assert not Job.objects.filter(id__in=[*old_ok, old_failed.id]).exists()
    assert Job.objects.filter(id__in=[young_ok.id, young_failed.id, ready.id]).count() == 3


def test_prune_is_bounded_per_round(monkeypatch):
    monkeypatch.setattr(batches, "BATCH_SIZE", 3)
    make_jobs(10, JobStatus.SUCCESSFUL, finished_at=timezone.now() - timedelta(days=30))
    result = operations.prune_expired(max_batches=2)
    assert (result.deleted["SUCCESSFUL"], result.remaining) == (6, True)
    assert Job.objects.count() == 4


def test_prune_deletes_the_oldest_first_whatever_their_ids(monkeypatch):
    # Batches walk finished_at through its index, not the ids: at 20 million rows an id
    # walk read the primary key past every kept row to the first expired one, each batch.
    monkeypatch.setattr(batches, "BATCH_SIZE", 3)
    now = timezone.now()
    newest_first = [
        make_job(JobStatus.FAILED, finished_at=now - timedelta(days=31 + i)).id for i in range(7)
    ]
    result = operations.prune_expired(max_batches=1)
    assert (result.deleted["FAILED"], result.remaining) == (3, True)
    assert set(Job.objects.values_list("id", flat=True)) == set(newest_first[:4])


def test_prune_walks_past_many_rows_finished_at_the_same_time(monkeypatch):
    monkeypatch.setattr(batches, "BATCH_SIZE", 3)
    at = timezone.now() - timedelta(days=40)
    make_jobs(8, JobStatus.CANCELLED, finished_at=at)
    kept = make_job(JobStatus.CANCELLED, finished_at=timezone.now())
    result = operations.prune_expired()
    assert (result.deleted["CANCELLED"], result.remaining) == (8, False)
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]


def test_retention_setting_per_status(settings):
    settings.DURABLE_JOBS = {
        **settings.DURABLE_JOBS,
        "RETENTION": {"SUCCESSFUL": None, "CANCELLED": timedelta(hours=1)},
    }
    periods = operations.retention_periods()
    assert periods == {
        "CANCELLED": timedelta(hours=1),
        "FAILED": timedelta(days=30),
        "SUCCESSFUL": None,
    }
    kept = make_job(JobStatus.SUCCESSFUL, finished_at=timezone.now() - timedelta(days=400))
    gone = make_job(JobStatus.CANCELLED, finished_at=timezone.now() - timedelta(hours=2))
    operations.prune_expired()
    assert Job.objects.filter(id=kept.id).exists()
    assert not Job.objects.filter(id=gone.id).exists()


def test_maintenance_prunes_at_most_once_per_interval():
    backend = get_backend("default")
    old = timezone.now() - timedelta(days=30)
    make_job(JobStatus.SUCCESSFUL, finished_at=old)
    assert prune_finished_jobs(backend, force=True) == 1
    make_job(JobStatus.SUCCESSFUL, finished_at=old)
    assert prune_finished_jobs(backend) == 0  # within PRUNE_INTERVAL: skipped
    assert prune_finished_jobs(backend, force=True) == 1
