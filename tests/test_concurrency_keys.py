"""Per-key concurrency: at most N RUNNING jobs share a key, enforced by the claim."""

from __future__ import annotations

import time
import uuid

import pytest

from django_durable_jobs import JobStatus, enqueue_many
from django_durable_jobs.db import get_backend
from django_durable_jobs.exceptions import InvalidJobArguments, InvalidJobOptions
from django_durable_jobs.models import Job
from tests.testapp import jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def claim(limit: int = 100) -> list:
    return get_backend("default").claim(
        worker_id=uuid.uuid4(), queues=None, limit=limit, lease_seconds=60
    )


def test_key_is_filled_from_the_arguments():
    handle = jobs.per_customer.enqueue(customer_id=7)
    row = Job.objects.get(id=handle.id)
    assert (row.concurrency_key, row.concurrency_limit) == ("customer:7", 1)
    handle = jobs.per_pair.enqueue(pair="EURUSD")
    assert Job.objects.get(id=handle.id).concurrency_key == "pair:EURUSD"


def test_missing_template_argument_is_refused_before_writing():
    # Passed positionally, customer_id fits the signature but not the key's template.
    with pytest.raises(InvalidJobOptions, match="customer_id"):
        jobs.per_customer.enqueue(7)
    # Not passed at all, the signature check names it first.
    with pytest.raises(InvalidJobArguments, match="customer_id"):
        jobs.per_customer.enqueue()
    assert not Job.objects.exists()


def test_one_claim_takes_at_most_the_free_slots_of_each_key():
    enqueue_many(
        [jobs.per_customer.prepare(customer_id=1) for _ in range(5)]
        + [jobs.per_pair.prepare(pair="A") for _ in range(5)]
        + [jobs.add.prepare(i, i) for i in range(5)]
    )
    claimed = claim()
    keys = [job.name for job in claimed]
    assert keys.count(jobs.per_customer.name) == 1
    assert keys.count(jobs.per_pair.name) == 2  # limit 2
    assert keys.count(jobs.add.name) == 5  # keyless jobs are not held back


def test_a_key_at_its_limit_is_skipped_and_others_still_flow():
    enqueue_many([jobs.per_customer.prepare(customer_id=1) for _ in range(3)])
    assert len(claim()) == 1
    later = jobs.per_customer.enqueue(customer_id=2)
    plain = jobs.add.enqueue(1, 1)
    assert sorted(job.id for job in claim()) == [later.id, plain.id]
    assert claim() == []  # both keys are at their limit


@pytest.mark.slow
def test_three_workers_never_run_two_jobs_of_a_key_at_once(start_worker):
    """200 jobs on 10 keys, limit 1, 3 workers x 4 threads; the jobs check themselves."""
    seconds, per_key, keys = 0.05, 20, 10
    enqueue_many(
        jobs.per_customer.prepare(customer_id=key, seconds=seconds)
        for _ in range(per_key)
        for key in range(keys)
    )
    started = time.monotonic()
    workers = [start_worker("--burst", "--concurrency", "4") for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.output()
    elapsed = time.monotonic() - started
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == per_key * keys
    assert Counter.objects.get(key="flow-started").value == per_key * keys
    violations = list(Counter.objects.filter(key__startswith="violation"))
    assert violations == []
    ideal = per_key * seconds  # each key's jobs one after another, all keys side by side
    print(f"\n200 jobs, 10 keys, limit 1: {elapsed:.2f}s (ideal {ideal:.2f}s + start-up)")
    assert elapsed < ideal * 4 + 8  # start-up of three processes, and a busy machine
