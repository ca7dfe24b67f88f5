"""Bounded maintenance: each round deletes (or expires) at most its batches, and only
the rows past their cutoff, on the database clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.maintenance import expirer, pruner
from django_durable_jobs.models import FailedAttempts, Job, RateStart
from django_durable_jobs.operations import batches
from tests.factories import make_job, make_jobs

from .support import in_threads, insert_one, now

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 5 rows, 2 batches per status and round: at most 10 rows per status."""
    monkeypatch.setattr(batches, "BATCH_SIZE", 5)
    monkeypatch.setattr(pruner, "PRUNE_MAX_BATCHES", 2)
    monkeypatch.setattr(pruner, "_next_prune", {})  # no round of another test counts


def test_a_round_deletes_at_most_its_batches_and_only_finished_rows_past_retention(
    backend, small_batches
):
    clock = now()
    # Default retention: SUCCESSFUL 7 days, FAILED and CANCELLED 30 days.
    old = make_jobs(13, JobStatus.SUCCESSFUL, finished_at=clock - 8 * DAY)
    just_kept = make_job(JobStatus.SUCCESSFUL, finished_at=clock - 7 * DAY + timedelta(minutes=5))
    failed_kept = make_job(JobStatus.FAILED, finished_at=clock - 8 * DAY)
    failed_old = make_job(JobStatus.FAILED, finished_at=clock - 31 * DAY)
    cancelled_old = make_job(JobStatus.CANCELLED, finished_at=clock - 31 * DAY)
    # Not finished, however old: never pruned.
    ready = make_job(JobStatus.READY, run_at=clock - 90 * DAY, finished_at=clock - 90 * DAY)
    running = make_job(JobStatus.RUNNING, started_at=clock - 90 * DAY)
    kept = {just_kept.id, failed_kept.id, ready.id, running.id}

    assert pruner.prune_finished_jobs(backend, force=True) == 12  # 10 + FAILED + CANCELLED
    left = set(Job.objects.values_list("id", flat=True))
    assert len(left & set(old)) == 3
    assert kept <= left
    assert failed_old.id not in left
    assert cancelled_old.id not in left
    # More remained: the next round deletes the rest, and nothing else.
    assert pruner.prune_finished_jobs(backend) == 3
    assert set(Job.objects.values_list("id", flat=True)) == kept
    assert pruner.prune_finished_jobs(backend, force=True) == 0


def test_while_expired_rows_remain_the_heartbeats_round_goes_on_within_its_time_budget(
    backend, small_batches
):
    """One round alone (10 rows here, 5,000 by default) fell behind a busy worker."""
    from django_durable_jobs.maintenance import run_maintenance

    clock = now()
    make_jobs(27, JobStatus.SUCCESSFUL, finished_at=clock - 8 * DAY)
    kept = make_job(JobStatus.SUCCESSFUL, finished_at=clock)
    run_maintenance(backend, lease_seconds=60, heartbeat_interval=10)  # budget: 2 s
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]
    # No budget: one round of batches, the rest left for the next one.
    make_jobs(27, JobStatus.SUCCESSFUL, finished_at=clock - 8 * DAY)
    assert pruner.prune_finished_jobs(backend, force=True, budget=0.0) == 10


def test_racing_pruners_delete_each_row_once(backend, small_batches):
    clock = now()
    make_jobs(40, JobStatus.SUCCESSFUL, finished_at=clock - 8 * DAY)
    kept = make_job(JobStatus.SUCCESSFUL, finished_at=clock)

    def prune(_: int) -> int:
        total = 0
        while deleted := pruner.prune_finished_jobs(backend, force=True):
            total += deleted
        return total

    assert sum(in_threads(3, prune)) == 40
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]


def test_rate_starts_are_pruned_in_bounded_batches_once_out_of_their_window(backend, monkeypatch):
    monkeypatch.setattr(pruner, "RATE_STARTS_BATCH", 3)
    monkeypatch.setattr(pruner, "PRUNE_MAX_BATCHES", 2)
    clock = now()
    RateStart.objects.bulk_create(
        RateStart(key="k", at=clock - timedelta(hours=1), until=clock - timedelta(minutes=i + 1))
        for i in range(8)
    )
    live = RateStart.objects.create(key="k", at=clock, until=clock + timedelta(minutes=5))
    assert pruner.prune_rate_starts(backend) is True  # 6 deleted, more remain
    assert RateStart.objects.count() == 3
    assert pruner.prune_rate_starts(backend) is False
    assert list(RateStart.objects.values_list("id", flat=True)) == [live.id]


def test_the_failure_tally_is_kept_for_a_week(backend):
    clock = now().replace(second=0, microsecond=0)
    FailedAttempts.objects.create(minute=clock - 8 * DAY, failures=3)
    recent = FailedAttempts.objects.create(minute=clock - 6 * DAY, failures=2)
    pruner.prune_finished_jobs(backend, force=True)
    assert list(FailedAttempts.objects.values_list("minute", flat=True)) == [recent.minute]


def test_expiry_ends_at_most_its_batches_and_only_ready_jobs_past_their_expiry(backend):
    clock = now()
    due = [insert_one(i, expires_at=clock - timedelta(seconds=i + 1)) for i in range(5)]
    later = insert_one("later", expires_at=clock + timedelta(hours=1))
    running = make_job(JobStatus.RUNNING, expires_at=clock - DAY)
    assert expirer.expire_due_jobs(backend, batch_size=2, max_batches=2) == 4
    cancelled = set(Job.objects.filter(status=JobStatus.CANCELLED).values_list("id", flat=True))
    assert cancelled == set(due[1:])  # the longest-expired first
    assert expirer.expire_due_jobs(backend, batch_size=2, max_batches=2) == 1
    (entry,) = Job.objects.get(id=due[0]).errors
    assert entry["outcome"] == "expired"
    assert Job.objects.get(id=later).status == JobStatus.READY
    assert Job.objects.get(id=running.id).status == JobStatus.RUNNING
