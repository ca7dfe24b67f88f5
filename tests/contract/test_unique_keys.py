"""Unique keys: at most one job holds a key, decided by the database, also between racing
transactions; insert() answers None for a job whose key is held."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import transaction

from django_durable_jobs.constants import STATUS_BITS, JobStatus
from django_durable_jobs.models import Job

from .support import ALIAS, claim, in_threads, insert, prepared, row, succeed

pytestmark = pytest.mark.django_db(transaction=True)

STATES = STATUS_BITS[JobStatus.READY] | STATUS_BITS[JobStatus.RUNNING]


def keyed(tag: object, key: str = "k") -> object:
    return prepared(tag, unique_key=key, unique_states=STATES)


def test_a_taken_key_gives_none_and_writes_nothing():
    (first,) = insert(keyed("first"))
    assert first is not None
    assert insert(keyed("second")) == [None]
    assert list(Job.objects.values_list("id", flat=True)) == [first]
    assert row(first).args == ["first", 0]


def test_a_batch_aligns_taken_and_repeated_keys_with_its_input():
    (held,) = insert(keyed("held", key="held"))
    ids = insert(
        prepared("plain-1"),
        keyed("a-1", key="a"),
        keyed("held-again", key="held"),
        prepared("plain-2"),
        keyed("a-2", key="a"),  # the batch's own earlier job holds "a"
        keyed("b", key="b"),
    )
    assert ids[2] is None
    assert ids[4] is None
    written = {job_id: row(job_id).args[0] for job_id in ids if job_id is not None}
    assert [written.get(job_id) for job_id in ids] == ["plain-1", "a-1", None, "plain-2", None, "b"]
    assert Job.objects.count() == 5
    assert row(held).args == ["held", 0]


def test_a_finished_job_frees_its_key(backend):
    (first,) = insert(keyed("first"))
    (job,) = claim()
    assert insert(keyed("while running")) == [None]
    backend.record([succeed(job)])
    (second,) = insert(keyed("after"))
    assert second is not None
    assert second != first


#: How long the first transaction keeps the key; the second must wait most of it.
HOLD = 0.5


def race(*, first_commits: bool) -> tuple[int | None, int | None]:
    """Two transactions insert the same key; the second starts while the first is open.

    Returns the ids each got. The second must wait for the first to end: if it
    rolled back, the key is free and the second job is written.
    """
    inserted = threading.Event()
    waited: list[float] = []

    def session(index: int) -> int | None:
        with transaction.atomic(using=ALIAS):
            if index == 0:
                (job_id,) = insert(keyed("first"))
                inserted.set()
                time.sleep(HOLD)  # the second is now waiting on this key
                if not first_commits:
                    transaction.set_rollback(True, using=ALIAS)
                return job_id
            assert inserted.wait(10)
            started = time.monotonic()
            (job_id,) = insert(keyed("second"))
            waited.append(time.monotonic() - started)
            return job_id

    first, second = in_threads(2, session)
    assert waited[0] > HOLD / 5  # the race happened: the second waited for the first
    return first, second


def test_racing_inserts_of_a_key_when_the_first_rolls_back_the_second_survives():
    first, second = race(first_commits=False)
    assert first is not None  # it had the key, then rolled back
    assert second is not None  # not swallowed by a job that never existed
    (job,) = Job.objects.all()
    assert (job.id, job.args) == (second, ["second", 0])


def test_racing_inserts_of_a_key_when_both_commit_exactly_one_row():
    first, second = race(first_commits=True)
    assert second is None
    (job,) = Job.objects.all()
    assert (job.id, job.args) == (first, ["first", 0])


def test_many_racing_inserts_of_one_key_write_exactly_one_row():
    def session(index: int) -> int | None:
        with transaction.atomic(using=ALIAS):
            (job_id,) = insert(keyed(index))
            return job_id

    results = in_threads(8, session)
    (job,) = Job.objects.all()
    assert [job_id for job_id in results if job_id is not None] == [job.id]
