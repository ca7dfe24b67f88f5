"""Unique jobs: enforced by the database, deduplicated only against a committed job."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connections, transaction

from django_durable_jobs import JobStatus, enqueue_many
from django_durable_jobs.db import get_backend
from django_durable_jobs.exceptions import InvalidJobOptions
from django_durable_jobs.models import Job
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def claim_all() -> list[int]:
    claimed = get_backend("default").claim(
        worker_id=uuid.uuid4(), queues=None, limit=100, lease_seconds=60
    )
    return [job.id for job in claimed]


def finish(job_id: int, status: str = JobStatus.SUCCESSFUL) -> None:
    from django_durable_jobs.db import Outcome

    backend = get_backend("default")
    (claimed,) = [job for job in _claimed_rows() if job.id == job_id]
    backend.record([Outcome(claimed, status, result_json="null")])


def _claimed_rows():
    from django_durable_jobs.db.base import CLAIM_COLUMNS, ClaimedJob

    return [
        ClaimedJob(*row)
        for row in Job.objects.filter(status=JobStatus.RUNNING).values_list(*CLAIM_COLUMNS)
    ]


def test_same_arguments_are_deduplicated():
    first = jobs.unique_by_args.enqueue(1)
    again = jobs.unique_by_args.enqueue(1)
    other = jobs.unique_by_args.enqueue(2)
    assert (first.deduplicated, again.deduplicated, other.deduplicated) == (False, True, False)
    assert again.id == first.id
    assert Job.objects.count() == 2


def test_keyword_order_does_not_matter():
    first = jobs.refresh_account.enqueue(account_id=1, reason="a")
    assert jobs.refresh_account.enqueue(reason="b", account_id=1).id == first.id


def test_key_function_and_explicit_key():
    assert jobs.refresh_account.enqueue(7, reason="x").deduplicated is False
    assert jobs.refresh_account.enqueue(7, reason="y").deduplicated is True  # same account
    explicit = jobs.unique_by_args.using(unique_key="nightly").enqueue(1)
    assert jobs.unique_by_args.using(unique_key="nightly").enqueue(99).id == explicit.id
    row = Job.objects.get(id=explicit.id)
    assert row.meta["unique_key"] == "nightly"
    assert len(row.unique_key) == 64  # a hash of name and key: any key fits


def test_a_finished_job_frees_its_key():
    first = jobs.unique_by_args.enqueue(5)
    assert claim_all() == [first.id]
    assert jobs.unique_by_args.enqueue(5).id == first.id  # RUNNING still holds it
    finish(first.id)
    assert Job.objects.get(id=first.id).unique_key is None
    second = jobs.unique_by_args.enqueue(5)
    assert (second.deduplicated, second.id != first.id) == (False, True)


def test_chosen_states_only():
    first = jobs.unique_while_waiting.enqueue(1)
    assert jobs.unique_while_waiting.enqueue(1).deduplicated is True
    claim_all()  # RUNNING is not among its states: the key is released at claim
    assert jobs.unique_while_waiting.enqueue(1).deduplicated is False
    assert Job.objects.get(id=first.id).unique_key is None


def test_period_keeps_the_key_after_the_job_finished():
    first = jobs.once_an_hour.enqueue("sales")
    claim_all()
    finish(first.id)
    again = jobs.once_an_hour.enqueue("sales")
    assert (again.deduplicated, again.id) == (True, first.id)


def test_bulk_enqueue_deduplicates_within_and_across_batches():
    existing = jobs.unique_by_args.enqueue(1)
    handles = enqueue_many(
        [
            jobs.unique_by_args.prepare(1),
            jobs.unique_by_args.prepare(2),
            jobs.add.prepare(1, 1),
            jobs.unique_by_args.prepare(2),
            jobs.add.prepare(2, 2),
        ]
    )
    assert [handle.deduplicated for handle in handles] == [True, False, False, True, False]
    assert handles[0].id == existing.id
    assert handles[1].id == handles[3].id
    assert Job.objects.filter(name=jobs.add.name).count() == 2
    assert Job.objects.filter(name=jobs.unique_by_args.name).count() == 2


def test_invalid_unique_options():
    from django_durable_jobs import Unique

    with pytest.raises(InvalidJobOptions, match="states"):
        Unique(states=["DONE"])
    with pytest.raises(InvalidJobOptions, match="positive"):
        Unique(period=0)
    with pytest.raises(InvalidJobOptions, match="unique="):
        jobs.job(unique="yes")(jobs.add.func)


def test_racing_transactions_some_rolling_back_leave_exactly_one_committed_job():
    """20 transactions enqueue the same key at once; every other one rolls back."""
    callers = 20
    barrier = threading.Barrier(callers)
    reports: list[tuple[int, bool, bool]] = []  # (job id, deduplicated, committed)
    lock = threading.Lock()

    def caller(index: int) -> None:
        committed = index % 2 == 1
        try:
            barrier.wait()
            with transaction.atomic():
                handle = jobs.refresh_account.enqueue(42, reason=f"caller {index}")
                time.sleep(0.02)  # hold the key a moment: others wait on it
                if not committed:
                    raise RuntimeError("roll back")
            with lock:
                reports.append((handle.id, handle.deduplicated, committed))
        except RuntimeError:
            pass
        finally:
            connections.close_all()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    (job,) = Job.objects.filter(name=jobs.refresh_account.name)
    assert len(reports) == callers // 2  # every committed caller got an answer
    created = [job_id for job_id, deduplicated, _ in reports if not deduplicated]
    assert created == [job.id]  # exactly one caller created it, and it committed
    # Nobody was told "deduplicated" without the job existing: all point at it.
    assert {job_id for job_id, _, _ in reports} == {job.id}
