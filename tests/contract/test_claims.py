"""claim(): which READY jobs a claim takes, in which order, and what it writes on them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.models import QueueState
from django_durable_jobs.serialization import load_payload

from .support import claim, claim_ids, close_to, give_back, insert, insert_one, now, prepared, row

pytestmark = pytest.mark.django_db(transaction=True)


def test_claims_follow_priority_desc_then_run_at_then_id():
    base = now()
    # Inserted so that id order, run_at order and priority order all disagree.
    late_low = insert_one("late_low", priority=-5, run_at=base - timedelta(seconds=10))
    late = insert_one("late", run_at=base - timedelta(seconds=10))
    early = insert_one("early", run_at=base - timedelta(seconds=30))
    high = insert_one("high", priority=50, run_at=base - timedelta(seconds=1))
    same_a = insert_one("same_a", run_at=base - timedelta(seconds=20))
    same_b = insert_one("same_b", run_at=base - timedelta(seconds=20))
    order = []
    while taken := claim_ids(limit=1):
        order += taken
    assert order == [high, early, same_a, same_b, late, late_low]


def test_a_claim_takes_the_first_jobs_of_that_order_up_to_its_limit():
    ids = [insert_one(i, priority=i) for i in range(6)]
    first = claim(limit=4)
    # The batch comes back highest priority first, then by id.
    assert [job.id for job in first] == [ids[5], ids[4], ids[3], ids[2]]
    assert claim_ids(limit=4) == [ids[1], ids[0]]
    assert claim_ids(limit=4) == []


def test_only_due_unexpired_unblocked_jobs_are_claimed():
    base = now()
    due = insert_one("due", run_at=base - timedelta(seconds=1))
    insert_one("future", run_at=base + timedelta(hours=1))
    insert_one("delayed", delay=3600.0)
    insert_one("expired", expires_at=base - timedelta(seconds=1))
    lasting = insert_one("lasting", expires_in=3600.0)
    waiting = insert_one("waiting", waiting_for=2)
    assert sorted(claim_ids()) == [due, lasting]
    assert row(lasting).expires_at is not None
    assert close_to(row(lasting).expires_at, base + timedelta(hours=1))
    assert row(waiting).status == JobStatus.READY


def test_a_claim_leases_the_job_and_returns_its_payload():
    worker = uuid.uuid4()
    run_id = uuid.uuid4()
    job_id = insert_one(
        "payload",
        queue="emails",
        priority=7,
        max_attempts=3,
        timeout=12.5,
        run_id=run_id,
        meta_json='{"note": "x"}',
    )
    before = row(job_id)
    (job,) = claim(worker=worker, lease=30)
    assert (job.id, job.name, job.queue, job.priority) == (job_id, before.name, "emails", 7)
    assert load_payload(job.args, job.kwargs) == (["payload", 0], {})
    assert (job.attempt, job.max_attempts, job.timeout) == (1, 3, 12.5)
    assert job.lease_token == before.lease_token + 1
    assert job.meta_dict == {"note": "x"}
    assert job.run_id == run_id
    after = row(job_id)
    assert after.status == JobStatus.RUNNING
    assert after.attempts == 1
    assert after.worker_id == worker
    assert after.lease_token == job.lease_token
    assert after.started_at is None  # a claim is not a start (see mark_started)
    assert close_to(after.lease_expires_at, now() + timedelta(seconds=30))


def test_a_claimed_job_carries_its_expiry_as_an_aware_datetime():
    expires = now() + timedelta(minutes=5)
    insert_one(expires_at=expires)
    (job,) = claim()
    assert job.expires_at is not None
    assert job.expires_at.tzinfo is not None
    assert close_to(job.expires_at, expires, seconds=0.01)


def test_every_claim_bumps_the_token_and_the_attempt():
    job_id = insert_one()
    (first,) = claim()
    give_back(worker_id=row(job_id).worker_id)  # not started: back uncounted
    (second,) = claim()
    assert second.lease_token > first.lease_token
    assert second.attempt == 1  # the unstarted attempt was given back


def test_queue_filter():
    a = insert_one(queue="a")
    b = insert_one(queue="b")
    c = insert_one(queue="c")
    assert claim_ids(queues=["a"]) == [a]
    assert sorted(claim_ids(queues=["b", "c", "nothing-here"])) == [b, c]
    assert claim_ids(queues=["a", "b", "c"]) == []


def test_paused_queues_are_not_claimed_until_resumed():
    paused = insert_one(queue="paused")
    active = insert_one(queue="active")
    QueueState.objects.create(name="paused", paused=True)
    QueueState.objects.create(name="active", paused=False)
    assert claim_ids() == [active]
    assert claim_ids(queues=["paused"]) == []
    QueueState.objects.filter(name="paused").update(paused=False)
    assert claim_ids(queues=["paused"]) == [paused]


def test_release_waiting_counts_down_and_returns_the_jobs_it_freed(backend):
    two = insert_one("two", waiting_for=2)
    one = insert_one("one", waiting_for=1)
    three = insert_one("three", waiting_for=3)
    assert sorted(backend.release_waiting({two: 1, one: 1, three: 5})) == [one, three]
    assert (row(two).waiting_for, row(one).waiting_for, row(three).waiting_for) == (1, 0, 0)
    assert sorted(claim_ids()) == [one, three]
    assert backend.release_waiting({two: 1}) == [two]
    assert claim_ids() == [two]
    assert backend.release_waiting({10**12: 1}) == []  # no such job: nothing freed


def test_a_batch_insert_keeps_every_rows_own_options():
    base = now()
    ids = insert(
        prepared("a", queue="q1", priority=3, max_attempts=2),
        prepared("b", queue="q2", priority=-3, run_at=base + timedelta(hours=2)),
        prepared("c", queue="q1", waiting_for=1, concurrency_key="k", concurrency_limit=4),
    )
    a, b, c = (row(job_id) for job_id in ids)
    assert (a.queue, a.priority, a.max_attempts, a.args) == ("q1", 3, 2, ["a", 0])
    assert (b.queue, b.priority, b.args) == ("q2", -3, ["b", 0])
    assert close_to(b.run_at, base + timedelta(hours=2), seconds=0.01)
    assert (c.waiting_for, c.concurrency_key, c.concurrency_limit) == (1, "k", 4)
    assert {a.status, b.status, c.status} == {JobStatus.READY}
    assert (a.attempts, a.lease_token, a.errors) == (0, 0, [])
