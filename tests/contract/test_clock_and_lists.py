"""db_now(), the operations' lists (distinct_queues, distinct_names), and wake-ups."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.models import Job
from tests.factories import make_job
from tests.testapp.jobs import echo, noop

from .support import ALIAS, claim, close_to, insert, insert_one, prepared

pytestmark = pytest.mark.django_db(transaction=True)


def test_db_now_is_an_aware_clock_that_moves_forward(backend):
    first = backend.db_now()
    assert first.tzinfo is not None
    assert close_to(first, timezone.now(), seconds=60)  # same machine: roughly the same time
    time.sleep(0.02)
    assert backend.db_now() > first


def test_the_claims_lease_is_on_the_database_clock(backend):
    insert_one()
    claim(lease=120)
    lease = Job.objects.get().lease_expires_at
    assert close_to(lease, backend.db_now() + timedelta(seconds=120), seconds=2)


def test_distinct_queues_lists_every_queue_that_has_jobs_in_any_state(backend):
    insert_one(queue="ready")
    insert_one(queue="waiting", waiting_for=1)
    insert_one(queue="later", run_at=backend.db_now() + timedelta(days=1))
    insert_one(queue="running")
    claim(queues=["running"])
    for status, queue in [
        (JobStatus.SUCCESSFUL, "done"),
        (JobStatus.FAILED, "failed"),
        (JobStatus.CANCELLED, "cancelled"),
        (JobStatus.SUCCESSFUL, "ready"),  # a queue in two states: listed once
    ]:
        make_job(status, queue=queue)
    assert backend.distinct_queues() == [
        "cancelled",
        "done",
        "failed",
        "later",
        "ready",
        "running",
        "waiting",
    ]


def test_distinct_names_lists_backlog_and_history_names(backend):
    insert(prepared("a"), prepared("b"))  # tests.testapp.jobs.add, twice
    insert(noop.prepare())
    claim(limit=1)
    make_job(JobStatus.FAILED, name=echo.name)
    make_job(JobStatus.SUCCESSFUL, name="gone.from.the.code")
    assert backend.distinct_names() == sorted(
        {"tests.testapp.jobs.add", noop.name, echo.name, "gone.from.the.code"}
    )


def test_distinct_names_list_ready_running_and_waiting_jobs(backend):
    # Each from its own partial index (a sample of the table read a 20-million-row history).
    make_job(JobStatus.READY, name="a.ready")
    make_job(JobStatus.READY, name="b.later", run_at=timezone.now() + timedelta(days=1))
    make_job(JobStatus.RUNNING, name="c.running")
    make_job(JobStatus.READY, name="d.waiting", waiting_for=2)
    assert backend.distinct_names() == ["a.ready", "b.later", "c.running", "d.waiting"]


def test_an_empty_table_has_no_queues_and_no_names(backend):
    assert backend.distinct_queues() == []
    assert backend.distinct_names() == []


def test_wake_ups_are_sent_at_commit_where_the_database_has_them(backend):
    if not backend.supports_listen_notify:
        # The operation does not exist here: workers poll. Saying so is the contract.
        with pytest.raises(NotImplementedError, match="poll"):
            backend.listen_connection()
        backend.notify({"default"})  # a no-op, never an error
        assert insert(prepared("x", queue="emails")) != [None]
        return
    listener = backend.listen_connection()
    try:
        with transaction.atomic(using=ALIAS):
            backend.insert([prepared("x", queue="emails")], notify=True)
            assert not received(listener, 0.3)  # nothing before the commit
        assert received(listener, 5, until={"emails"}) == {"emails"}
        with transaction.atomic(using=ALIAS):
            backend.insert([prepared("y", queue="reports")], notify=True)
            transaction.set_rollback(True, using=ALIAS)
        assert not received(listener, 0.3)  # nothing for a rollback
        backend.notify({"a", "b"})
        assert received(listener, 5, until={"a", "b"}) == {"a", "b"}
    finally:
        listener.close()


def received(listener, timeout: float, until: set[str] | None = None) -> set[str]:
    """The payloads (queue names) of the wake-ups within ``timeout``, or once ``until`` came."""
    payloads: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (until and until <= payloads):
        for notice in listener.notifies(timeout=0.1, stop_after=1):
            payloads.add(notice.payload)
    return payloads
