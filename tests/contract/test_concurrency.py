"""Concurrent claimers, each on its own connection: every job once, gates never exceeded.

PostgreSQL (``supports_skip_locked``) lets claims run side by side, each
skipping the rows another one holds; SQLite has one writer at a time, so its
claims take turns. Either way no job is claimed twice and none is lost.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import OperationalError, connections

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.db import get_backend
from django_durable_jobs.models import Job

from .support import (
    ALIAS,
    Holder,
    claim,
    claim_ids,
    expire_leases,
    give_back,
    in_threads,
    insert,
    prepared,
    succeed,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_racing_claimers_take_every_job_exactly_once(backend):
    ids = insert(*(prepared(i, priority=i % 7) for i in range(300)))

    def drain(_: int) -> list[int]:
        get_backend(ALIAS).prepare_worker_connection()  # as every worker does first
        worker = uuid.uuid4()
        taken: list[int] = []
        while batch := claim_ids(worker=worker, limit=7):
            taken += batch
        return taken

    results = in_threads(6, drain)
    everything = [job_id for taken in results for job_id in taken]
    assert len(everything) == len(set(everything))  # nobody claimed a job twice
    assert sorted(everything) == sorted(ids)  # and none was left behind
    assert not Job.objects.exclude(status=JobStatus.RUNNING).exists()
    assert set(Job.objects.values_list("attempts", "lease_token").distinct()) == {(1, 1)}
    # Each job's worker is the one that reported it.
    workers = dict(Job.objects.values_list("id", "worker_id"))
    for taken in results:
        assert len({workers[job_id] for job_id in taken}) <= 1


def test_a_claim_never_waits_for_a_row_another_transaction_holds(backend):
    locked, *others = insert(*(prepared(i, priority=10 - i) for i in range(4)))
    with Holder(locked):

        def claim_elsewhere(_: int) -> tuple[list[int], float]:
            if not backend.supports_skip_locked:
                # One writer at a time: wait a moment for the lock, then give up.
                with connections[ALIAS].cursor() as cursor:
                    cursor.execute("PRAGMA busy_timeout = 200")
            started = time.monotonic()
            taken = claim_ids()
            return taken, time.monotonic() - started

        ((taken, seconds),) = in_threads(1, claim_elsewhere)
    assert seconds < 3.0  # the holder keeps its lock for 15 s
    if backend.supports_skip_locked:
        assert sorted(taken) == sorted(others)  # the held row is skipped, the others taken
    else:
        assert taken == []  # "database is locked" means "nothing this time", not an error
    assert claim_ids() == ([locked] if backend.supports_skip_locked else [locked, *others])


def test_per_key_limits_hold_across_one_claim():
    insert(*(prepared(i, concurrency_key="one", concurrency_limit=1) for i in range(4)))
    insert(*(prepared(i, concurrency_key="two", concurrency_limit=2) for i in range(4)))
    plain = insert(*(prepared(i) for i in range(3)))
    claimed = claim(limit=100)
    keys = list(Job.objects.filter(status="RUNNING").values_list("concurrency_key", flat=True))
    assert keys.count("one") == 1
    assert keys.count("two") == 2
    assert set(plain) <= {job.id for job in claimed}
    assert claim_ids() == []  # both keys full: their other jobs wait, taking no slot


def test_a_finished_job_frees_its_keys_slot(backend):
    insert(*(prepared(i, concurrency_key="k", concurrency_limit=1) for i in range(2)))
    (first,) = claim()
    assert claim() == []
    backend.record([succeed(first)])
    (second,) = claim()
    assert second.id != first.id


def test_racing_claimers_never_exceed_a_keys_limit(backend):
    limits = {"solo": 1, "trio": 3}
    for key, limit in limits.items():
        insert(*(prepared(i, concurrency_key=key, concurrency_limit=limit) for i in range(9)))
    insert(*(prepared(i) for i in range(20)))
    claimers = 4
    rounds = 0
    while Job.objects.exclude(status=JobStatus.SUCCESSFUL).exists():
        rounds += 1
        assert rounds <= 12, "the keys' jobs should drain in 9 rounds"
        batches = in_threads(claimers, lambda _: claim(limit=5))
        claimed = [job for batch in batches for job in batch]
        assert len({job.id for job in claimed}) == len(claimed)
        running = Job.objects.filter(status=JobStatus.RUNNING)
        for key, limit in limits.items():
            assert running.filter(concurrency_key=key).count() <= limit, (key, rounds)
        backend.record([succeed(job) for job in claimed])
    # Every round took a full slot of each key that had jobs left (no slot went unused).
    assert rounds == 9


def test_renewal_skips_a_row_another_transaction_holds_or_waits_for_the_one_writer(backend):
    insert(prepared("held"))
    (job,) = claim()
    hold = 1.0
    with Holder(job.id, timeout=hold):  # commits by itself after ``hold`` seconds
        started = time.monotonic()
        renewed = backend.renew_leases({job.id: job.lease_token}, 600)
        seconds = time.monotonic() - started
    if backend.supports_skip_locked:
        # That row is being finished, cancelled or rescued right now: the next heartbeat
        # renews it if it is still ours. Waiting could deadlock with our own completer.
        assert renewed == {}
        assert seconds < hold
    else:
        assert renewed == {job.id: False}  # it waited for the write lock
    assert backend.renew_leases({job.id: job.lease_token}, 600) == {job.id: False}


def test_a_rescue_never_waits_for_a_row_another_transaction_holds(backend):
    held, *others = insert(*(prepared(i) for i in range(3)))
    claim()
    expire_leases(held, *others)
    with Holder(held):

        def rescue(_: int) -> tuple[list[int], float]:
            if not backend.supports_skip_locked:
                with connections[ALIAS].cursor() as cursor:
                    cursor.execute("PRAGMA busy_timeout = 200")
            started = time.monotonic()
            try:
                given: list[int] | str = [job_id for job_id, _, _ in give_back()]
            except OperationalError as exc:  # SQLite: the one writer is busy (the heartbeat
                given = str(exc)  # logs it and rescues at its next round)
            return given, time.monotonic() - started

        ((given, seconds),) = in_threads(1, rescue)
    assert seconds < 3.0  # the holder keeps its lock for 15 s
    if backend.supports_skip_locked:
        assert sorted(given) == sorted(others)  # the held row is skipped, the others taken
    else:
        assert "database is locked" in given
    assert sorted(job_id for job_id, _, _ in give_back()) == (
        [held] if backend.supports_skip_locked else sorted([held, *others])
    )
