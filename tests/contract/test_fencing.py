"""Fencing: every write about a running job holds only with its current lease token.

record(), mark_started(), renew_leases() and write_progress() each write a job
only while it is RUNNING under the token of the claim that wrote the outcome;
a stale write changes nothing and is left out of the ids returned.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable_jobs.constants import STATUS_BITS, JobStatus
from django_durable_jobs.db import Outcome
from django_durable_jobs.models import FailedAttempts, Job

from .support import (
    claim,
    close_to,
    error,
    give_back,
    insert,
    insert_one,
    now,
    prepared,
    row,
    succeed,
)

pytestmark = pytest.mark.django_db(transaction=True)


def taken_over() -> tuple:
    """A job claimed, given back, and claimed again: ``(stale claim, current claim)``."""
    insert_one()
    (stale,) = claim()
    give_back(worker_id=row(stale.id).worker_id)
    (current,) = claim()
    assert current.id == stale.id
    assert current.lease_token != stale.lease_token
    return stale, current


def failures() -> int:
    return sum(FailedAttempts.objects.values_list("failures", flat=True))


def test_record_writes_a_success(backend):
    job_id = insert_one()
    (job,) = claim()
    assert backend.record([succeed(job, "3")]) == {job_id}
    done = row(job_id)
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCESSFUL, 3, 1)
    assert close_to(done.finished_at, now())
    assert done.lease_expires_at is None
    assert done.errors == []


def test_a_stale_token_writes_nothing(backend):
    stale, current = taken_over()
    assert backend.record([succeed(stale)]) == set()
    assert backend.mark_started([(stale.id, stale.lease_token, 0.0)]) == set()
    assert backend.write_progress([(stale.id, stale.lease_token, '{"done": 1}')]) == set()
    assert backend.renew_leases({stale.id: stale.lease_token}, 600) == {}
    still = row(stale.id)
    assert (still.status, still.lease_token, still.result) == (
        JobStatus.RUNNING,
        current.lease_token,
        None,
    )
    assert still.started_at is None
    assert still.progress is None
    assert close_to(still.lease_expires_at, now() + timedelta(seconds=60))
    # The current holder's writes hold.
    assert backend.record([succeed(current)]) == {current.id}


def test_a_job_no_longer_running_is_not_written(backend):
    insert_one("done")
    insert_one("cancelled")
    done, cancelled = sorted(claim(), key=lambda job: job.id)
    assert backend.record([succeed(done, "1")]) == {done.id}
    Job.objects.filter(id=cancelled.id).update(status=JobStatus.CANCELLED)
    # Same tokens, but the jobs left RUNNING: a second outcome, a late progress, a renewal.
    again = Outcome(done, JobStatus.FAILED, error=error(1))
    assert backend.record([again, succeed(cancelled)]) == set()
    assert backend.mark_started([(done.id, done.lease_token, 0.0)]) == set()
    assert backend.write_progress([(cancelled.id, cancelled.lease_token, "{}")]) == set()
    assert backend.renew_leases({done.id: done.lease_token}, 60) == {}
    assert (row(done.id).status, row(done.id).result, row(done.id).errors) == (
        JobStatus.SUCCESSFUL,
        1,
        [],
    )
    assert row(cancelled.id).status == JobStatus.CANCELLED
    assert failures() == 0  # the refused failure is not tallied either


def test_a_mixed_batch_returns_only_the_ids_written(backend):
    stale, _current = taken_over()
    insert_one("other")
    (other,) = claim()
    written = backend.record([succeed(stale), succeed(other)])
    assert written == {other.id}
    assert row(stale.id).status == JobStatus.RUNNING
    assert row(other.id).status == JobStatus.SUCCESSFUL
    assert backend.record([]) == set()


def test_a_retry_goes_back_ready_later_with_its_history(backend):
    job_id = insert_one(max_attempts=3)
    (job,) = claim()
    retry = Outcome(job, JobStatus.READY, error=error(1), retry_delay=600.0)
    assert backend.record([retry]) == {job_id}
    back = row(job_id)
    assert back.status == JobStatus.READY
    assert back.attempts == 1  # charged
    assert [entry["message"] for entry in back.errors] == ["boom"]
    assert close_to(back.run_at, now() + timedelta(seconds=600))
    assert back.finished_at is None
    assert back.lease_expires_at is None
    assert claim() == []  # not before its delay
    assert failures() == 1  # a failed attempt is tallied with its write


def test_a_final_failure_keeps_the_whole_history(backend):
    job_id = insert_one(max_attempts=2)
    (job,) = claim()
    backend.record([Outcome(job, JobStatus.READY, error=error(1, "first"))])
    (job,) = claim()
    assert job.attempt == 2
    assert backend.record([Outcome(job, JobStatus.FAILED, error=error(2, "second"))]) == {job_id}
    failed = row(job_id)
    assert failed.status == JobStatus.FAILED
    assert [entry["message"] for entry in failed.errors] == ["first", "second"]
    assert close_to(failed.finished_at, now())
    assert failures() == 2


def test_an_uncounted_outcome_gives_the_attempt_back(backend):
    job_id = insert_one()
    (job,) = claim()
    assert backend.record([Outcome(job, JobStatus.READY, uncount=True)]) == {job_id}
    back = row(job_id)
    assert (back.status, back.attempts, back.errors) == (JobStatus.READY, 0, [])
    assert failures() == 0


def test_started_at_comes_from_the_start_mark_or_else_from_the_outcome(backend):
    insert_one("marked")
    insert_one("unmarked")
    marked, unmarked = sorted(claim(), key=lambda job: job.id)
    assert backend.mark_started([(marked.id, marked.lease_token, 30.0)]) == {marked.id}
    started_at = row(marked.id).started_at
    assert close_to(started_at, now() - timedelta(seconds=30))
    # A second mark never moves it.
    assert backend.mark_started([(marked.id, marked.lease_token, 0.0)]) == {marked.id}
    assert row(marked.id).started_at == started_at
    ran = time.monotonic() - 20.0
    outcomes = [
        dataclasses.replace(succeed(marked), started=ran),
        dataclasses.replace(succeed(unmarked), started=ran),
    ]
    assert backend.record(outcomes) == {marked.id, unmarked.id}
    assert row(marked.id).started_at == started_at
    assert close_to(row(unmarked.id).started_at, now() - timedelta(seconds=20))


def test_renewal_extends_only_leases_held_and_reports_cancel_requests(backend):
    insert_one("keep")
    insert_one("cancel")
    keep, cancel = sorted(claim(lease=5), key=lambda job: job.id)
    Job.objects.filter(id=cancel.id).update(cancel_requested_at=timezone.now())
    held = {keep.id: keep.lease_token, cancel.id: cancel.lease_token}
    assert backend.renew_leases(held, 600) == {keep.id: False, cancel.id: True}
    for job_id in held:
        assert close_to(row(job_id).lease_expires_at, now() + timedelta(seconds=600))
    wrong = {keep.id: keep.lease_token + 1}
    assert backend.renew_leases(wrong, 5) == {}
    assert close_to(row(keep.id).lease_expires_at, now() + timedelta(seconds=600))
    assert backend.renew_leases({}, 5) == {}


def test_progress_is_written_as_json_while_the_lease_holds(backend):
    job_id = insert_one()
    (job,) = claim()
    value = json.dumps({"done": 3, "total": 10, "message": "é"})
    assert backend.write_progress([(job_id, job.lease_token, value)]) == {job_id}
    assert row(job_id).progress == {"done": 3, "total": 10, "message": "é"}
    assert backend.write_progress([]) == set()


READY, RUNNING, SUCCESSFUL = (
    STATUS_BITS[JobStatus.READY],
    STATUS_BITS[JobStatus.RUNNING],
    STATUS_BITS[JobStatus.SUCCESSFUL],
)


@pytest.mark.parametrize(
    ("states", "claimed_keeps", "finish", "finished_keeps"),
    [
        (READY | RUNNING, True, JobStatus.SUCCESSFUL, False),
        (READY | RUNNING | SUCCESSFUL, True, JobStatus.SUCCESSFUL, True),
        (READY | RUNNING, True, JobStatus.READY, True),
        (RUNNING, True, JobStatus.READY, False),
        (READY | SUCCESSFUL, False, JobStatus.SUCCESSFUL, False),
    ],
    ids=["success-frees", "success-keeps", "retry-keeps", "retry-frees", "claim-frees"],
)
def test_a_job_keeps_its_unique_key_only_in_its_unique_states(
    backend, states, claimed_keeps, finish, finished_keeps
):
    job_id = insert_one(unique_key="k", unique_states=states)
    (job,) = claim()
    assert row(job_id).unique_key == ("k" if claimed_keeps else None)
    outcome = Outcome(job, finish, uncount=True) if finish == JobStatus.READY else succeed(job)
    assert backend.record([outcome]) == {job_id}
    assert row(job_id).unique_key == ("k" if finished_keeps else None)
    # A free key can be taken again at once; a kept one cannot.
    assert (insert(prepared("again", unique_key="k", unique_states=states)) == [None]) is (
        finished_keeps
    )
