"""give_back(): jobs whose worker is gone return to READY (or FAILED), charged only if started.

The rescuer (expired leases) and the supervisor (a dead worker's jobs) both
call it; ``uncount`` is a worker stopped on purpose.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from django_durable_jobs.constants import STATUS_BITS, AttemptOutcome, JobStatus
from django_durable_jobs.maintenance import rescue_expired_leases
from django_durable_jobs.meta import ORPHANED
from django_durable_jobs.models import FailedAttempts, Job
from django_durable_jobs.operations.job_history import history
from django_durable_jobs.operations.jobs import retry

from .support import (
    claim,
    claim_ids,
    close_to,
    expire_leases,
    give_back,
    in_threads,
    insert_one,
    now,
    row,
)

pytestmark = pytest.mark.django_db(transaction=True)


def failures() -> int:
    return sum(FailedAttempts.objects.values_list("failures", flat=True))


def test_only_expired_leases_are_given_back():
    ids = [insert_one(i) for i in range(3)]
    claim()
    expire_leases(ids[0], ids[2])
    given = give_back()
    assert sorted(job_id for job_id, _, _ in given) == [ids[0], ids[2]]
    assert row(ids[1]).status == JobStatus.RUNNING
    assert give_back() == []  # nothing else expired


def test_a_dead_workers_jobs_and_only_its_own():
    dead, alive = uuid.uuid4(), uuid.uuid4()
    for i in range(4):
        insert_one(i)
    mine = claim_ids(worker=dead, limit=2)
    theirs = claim_ids(worker=alive, limit=2)
    assert sorted(job_id for job_id, _, _ in give_back(worker_id=dead)) == sorted(mine)
    assert {row(job_id).status for job_id in theirs} == {JobStatus.RUNNING}


def test_only_the_job_ids_given_of_that_worker():
    dead, other = uuid.uuid4(), uuid.uuid4()
    for i in range(4):
        insert_one(i)
    first, second, third = claim_ids(worker=dead, limit=3)
    (foreign,) = claim_ids(worker=other)
    given = give_back(worker_id=dead, job_ids=[second, foreign])
    assert [job_id for job_id, _, _ in given] == [second]  # not another worker's job
    assert row(first).status == row(third).status == row(foreign).status == JobStatus.RUNNING
    assert give_back(worker_id=dead, job_ids=[]) == []  # an empty list gives back nothing
    assert row(first).status == JobStatus.RUNNING


def test_a_started_job_is_charged_and_an_unstarted_one_is_not(backend):
    worker = uuid.uuid4()
    started_id = insert_one("started")
    unstarted_id = insert_one("unstarted")
    started, unstarted = sorted(claim(worker=worker), key=lambda job: job.id)
    backend.mark_started([(started.id, started.lease_token, 1.0)])
    expire_leases(started.id, unstarted.id)
    given = give_back(message="lost it")
    assert sorted(given) == sorted(
        [(started_id, JobStatus.READY, True), (unstarted_id, JobStatus.READY, False)]
    )
    charged = row(started_id)
    assert (charged.status, charged.attempts) == (JobStatus.READY, 1)
    (entry,) = charged.errors
    assert entry["attempt"] == 1
    assert entry["outcome"] == AttemptOutcome.WORKER_LOST
    assert entry["message"] == "lost it"
    assert uuid.UUID(entry["worker"]) == worker
    # "at" reads like the worker's own entries: ISO 8601 with its offset (USE_TZ).
    at = datetime.fromisoformat(entry["at"])
    assert at.tzinfo is not None
    assert close_to(at, now())
    assert ORPHANED not in charged.meta
    spared = row(unstarted_id)
    assert (spared.status, spared.attempts, spared.errors) == (JobStatus.READY, 0, [])
    assert spared.meta[ORPHANED] == 1
    for job in (charged, spared):
        assert job.lease_expires_at is None
        assert job.finished_at is None
        assert close_to(job.run_at, now())  # claimable again at once
    assert failures() == 1  # the charged attempt, tallied with its write
    # Orphaned again on its next lost claim: the count grows.
    claim()
    Job.objects.filter(id=started_id).update(status=JobStatus.SUCCESSFUL)
    expire_leases(unstarted_id)
    assert give_back() == [(unstarted_id, JobStatus.READY, False)]
    assert row(unstarted_id).meta[ORPHANED] == 2


def test_a_started_job_on_its_last_attempt_fails(backend):
    last_id = insert_one("last", max_attempts=1)
    unstarted_id = insert_one("unstarted", max_attempts=1)
    last, _ = sorted(claim(), key=lambda job: job.id)
    backend.mark_started([(last.id, last.lease_token, 0.0)])
    expire_leases(last_id, unstarted_id)
    given = give_back(message="lost", final_message="lost for good")
    assert sorted(given) == sorted(
        [(last_id, JobStatus.FAILED, True), (unstarted_id, JobStatus.READY, False)]
    )
    failed = row(last_id)
    assert failed.attempts == 1
    assert [entry["message"] for entry in failed.errors] == ["lost for good"]
    assert close_to(failed.finished_at, now())
    assert claim_ids() == [unstarted_id]


def test_uncount_charges_nothing_even_on_the_last_attempt(backend):
    worker = uuid.uuid4()
    job_id = insert_one(max_attempts=1)
    (job,) = claim(worker=worker)
    backend.mark_started([(job.id, job.lease_token, 0.0)])
    given = give_back(
        worker_id=worker, uncount=True, outcome=AttemptOutcome.INTERRUPTED, message="stopped"
    )
    assert given == [(job_id, JobStatus.READY, False)]
    back = row(job_id)
    assert (back.status, back.attempts) == (JobStatus.READY, 0)
    assert ORPHANED not in back.meta
    # The started attempt is in the history, as interrupted, not as a failure.
    assert [(e["outcome"], e["message"]) for e in back.errors] == [
        (AttemptOutcome.INTERRUPTED, "stopped")
    ]
    assert failures() == 0


def test_the_unique_key_follows_the_new_status(backend):
    ready_running = STATUS_BITS[JobStatus.READY] | STATUS_BITS[JobStatus.RUNNING]
    kept = insert_one("kept", unique_key="kept", unique_states=ready_running)
    freed = insert_one("freed", unique_key="freed", unique_states=ready_running, max_attempts=1)
    jobs = sorted(claim(), key=lambda job: job.id)
    backend.mark_started([(job.id, job.lease_token, 0.0) for job in jobs])
    expire_leases(kept, freed)
    assert sorted(give_back()) == [(kept, JobStatus.READY, True), (freed, JobStatus.FAILED, True)]
    assert row(kept).unique_key == "kept"  # READY is one of its states
    assert row(freed).unique_key is None  # FAILED is not


def test_give_back_is_bounded_by_its_limit():
    ids = [insert_one(i) for i in range(7)]
    claim()
    expire_leases(*ids)
    batches = []
    while given := give_back(limit=3):
        assert len(given) <= 3
        batches.append(sorted(job_id for job_id, _, _ in given))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert sorted(job_id for batch in batches for job_id in batch) == ids


def test_the_rescuer_drains_every_expired_lease(backend):
    ids = [insert_one(i) for i in range(5)]
    claim()
    expire_leases(*ids)
    assert rescue_expired_leases(backend) == 5
    assert sorted(claim_ids()) == ids


def test_racing_rescuers_never_take_the_same_job():
    ids = [insert_one(i) for i in range(40)]
    claim()
    expire_leases(*ids)

    def rescue(_: int) -> list[int]:
        taken: list[int] = []
        while given := give_back(limit=3):
            taken += [job_id for job_id, _, _ in given]
        return taken

    results = in_threads(4, rescue)
    everything = [job_id for taken in results for job_id in taken]
    assert sorted(everything) == ids  # each exactly once
    assert {row(job_id).status for job_id in ids} == {JobStatus.READY}
    assert {row(job_id).attempts for job_id in ids} == {0}  # none given back twice


def test_a_lease_still_running_is_not_expired_by_the_clock_of_the_claim():
    job_id = insert_one()
    claim(lease=600)
    Job.objects.filter(id=job_id).update(lease_expires_at=now() + timedelta(seconds=30))
    assert give_back() == []


def test_a_rescued_attempt_takes_its_place_in_the_history_beside_an_operators_retry(backend):
    """The admin's and ``jobs show``'s history orders entries by their ``at``."""
    job_id = insert_one(max_attempts=1)
    for _ in range(2):
        (job,) = claim()
        backend.mark_started([(job.id, job.lease_token, 0.0)])
        expire_leases(job_id)
        assert give_back() == [(job_id, JobStatus.FAILED, True)]
        if not row(job_id).meta.get("retried"):
            retry([job_id])
    outcomes = [entry["outcome"] for entry in history(row(job_id))]
    assert outcomes == [
        AttemptOutcome.WORKER_LOST,
        AttemptOutcome.OPERATOR_RETRY,
        AttemptOutcome.WORKER_LOST,
    ]
