"""Transactional enqueue: a job exists only if the enqueuing transaction commits.

A second real connection (another thread, so another Django connection) polls
the table and tries to claim, as a worker would, while the transaction is open.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from django_durable_jobs import enqueue_many
from django_durable_jobs.db import get_backend
from django_durable_jobs.models import Job
from tests.testapp.jobs import add, echo
from tests.testapp.models import Note


def from_another_connection(work: Callable[[], object]) -> object:
    """Run ``work`` in a new thread, on that thread's own database connections."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def visible_jobs(alias: str = "default") -> int:
    return from_another_connection(lambda: Job.objects.using(alias).count())  # type: ignore[return-value]


def claimable(alias: str = "default") -> list[int]:
    def claim() -> list[int]:
        if connections[alias].vendor == "sqlite":
            # The writer's open transaction holds SQLite's write lock: wait briefly, and
            # "database is locked" must mean "nothing claimed", not an error.
            with connections[alias].cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 200")
        jobs = get_backend(alias).claim(
            worker_id=uuid.uuid4(), queues=None, limit=10, lease_seconds=30
        )
        return [job.id for job in jobs]

    return from_another_connection(claim)  # type: ignore[return-value]


pytestmark = pytest.mark.django_db(transaction=True)


def test_job_is_invisible_until_commit_then_claimable():
    with transaction.atomic():
        handle = add.enqueue(1, 2)
        assert Job.objects.filter(id=handle.id).exists()  # visible to its own transaction
        assert visible_jobs() == 0
        assert claimable() == []
    assert visible_jobs() == 1
    assert claimable() == [handle.id]


def test_rollback_leaves_no_job():
    with pytest.raises(RuntimeError), transaction.atomic():
        Note.objects.create(text="rolled back")
        add.enqueue(1, 2)
        raise RuntimeError("abort")
    assert visible_jobs() == 0
    assert not Note.objects.exists()


def test_savepoint_rollback_removes_only_its_jobs():
    with transaction.atomic():
        kept = add.enqueue(1, 1)
        try:
            with transaction.atomic():
                add.enqueue(2, 2)
                raise RuntimeError("inner abort")
        except RuntimeError:
            pass
        assert visible_jobs() == 0
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]
    assert claimable() == [kept.id]


def test_bulk_enqueue_is_one_transaction_and_keeps_order():
    handles = enqueue_many(add.prepare(i, i) for i in range(2500))
    ids = [handle.id for handle in handles]
    assert ids == sorted(ids)
    rows = dict(Job.objects.values_list("id", "args"))
    assert [rows[i] for i in ids[:3]] == [[0, 0], [1, 1], [2, 2]]
    assert rows[ids[-1]] == [2499, 2499]


def test_bulk_enqueue_keeps_each_rows_own_options(settings):
    """One statement carries every column as an array: mixed and missing values per row."""
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "DEFAULT_TIMEOUT": 30}  # an int
    run_at = timezone.now() + timedelta(hours=1)
    prepared = [
        add.prepare(1, 1),
        add.using(timeout=1.5, priority=-100, delay=60).prepare(2, 2),
        add.using(run_at=run_at, priority=100, max_attempts=1, timeout=None).prepare(3, 3),
        add.using(concurrency_key="k", unique_key="u").prepare(4, 4),
        echo.prepare(x=["é", {"a": None}], y="\u2603"),
    ]
    handles = enqueue_many(prepared)
    rows = {row.id: row for row in Job.objects.filter(id__in=[handle.id for handle in handles])}
    first, second, third, fourth, fifth = (rows[handle.id] for handle in handles)
    assert (first.timeout, second.timeout, third.timeout) == (30.0, 1.5, None)
    assert (first.priority, second.priority, third.priority) == (0, -100, 100)
    assert second.run_at - second.enqueued_at == timedelta(seconds=60)
    assert third.run_at == run_at
    assert third.max_attempts == 1
    assert (fourth.concurrency_key, fourth.unique_key is not None) == ("k", True)
    assert first.concurrency_key is None
    assert first.unique_key is None
    assert fifth.kwargs == {"x": ["é", {"a": None}], "y": "\u2603"}


def test_bulk_enqueue_validates_everything_before_writing():
    from django_durable_jobs import InvalidJobArguments

    with pytest.raises(InvalidJobArguments, match=r"args\[0\]"):
        enqueue_many([add.prepare(1, 2), add.prepare({1}, 2)])
    assert visible_jobs() == 0


def test_bulk_enqueue_rolls_back_with_the_caller():
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_many(add.prepare(i, i) for i in range(10))
        raise RuntimeError("abort")
    assert visible_jobs() == 0


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
class TestJobsOnAnotherDatabase:
    """DURABLE_JOBS['DATABASE'] = 'other' while the caller's transaction is on 'default'."""

    @pytest.fixture(autouse=True)
    def jobs_on_other(self, settings):
        settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "DATABASE": "other"}

    def test_waits_for_the_callers_commit(self):
        with transaction.atomic():
            Note.objects.create(text="order placed")
            handle = add.enqueue(1, 2)
            assert handle.id is None
            assert visible_jobs("other") == 0
        assert handle.id is not None
        assert visible_jobs("other") == 1
        assert claimable("other") == [handle.id]

    def test_callers_rollback_enqueues_nothing(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            handle = add.enqueue(1, 2)
            raise RuntimeError("abort")
        assert handle.id is None
        assert visible_jobs("other") == 0

    def test_no_transaction_inserts_at_once(self):
        handle = add.enqueue(1, 2)
        assert handle.id is not None
        assert visible_jobs("other") == 1

    def test_transaction_on_the_jobs_database_itself_is_joined(self):
        with transaction.atomic(using="other"):
            handle = add.enqueue(1, 2)
            assert handle.id is not None
            assert visible_jobs("other") == 0
        assert visible_jobs("other") == 1
