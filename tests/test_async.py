"""async def jobs on the worker's executor threads, and aenqueue() for async views."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from django_durable_jobs import InvalidJobArguments, JobStatus, aenqueue_many
from django_durable_jobs.models import Job
from django_durable_jobs.testing import run_pending_jobs
from tests.testapp import jobs
from tests.testapp.models import Counter


@pytest.mark.django_db
def test_async_job_uses_the_async_orm_and_sees_its_context():
    Counter.objects.create(key="async")
    handle = jobs.async_bump.enqueue("async")
    assert run_pending_jobs().succeeded == 1
    assert handle.refresh().result == {"attempt": 1}
    assert Counter.objects.get(key="async").value == 1


@pytest.mark.django_db
def test_async_atomic_job_rolls_back_its_async_orm_writes():
    # The async ORM runs on the executor thread's connection, so inside the
    # job's transaction: the failure rolls the write back.
    Counter.objects.create(key="atomic-async")
    handle = jobs.async_atomic_fails.enqueue("atomic-async")
    run_pending_jobs()
    assert handle.refresh().status == JobStatus.FAILED
    assert Counter.objects.get(key="atomic-async").value == 0


@pytest.mark.django_db(transaction=True)
def test_async_jobs_on_a_real_worker(start_worker):
    Counter.objects.create(key="worker-async")
    handles = [jobs.async_bump.enqueue("worker-async") for _ in range(6)]
    handles.append(jobs.async_add.enqueue(20, 22))
    worker = start_worker("--burst", "--concurrency", "3")
    assert worker.wait(timeout=60) == 0, worker.output()
    assert handles[-1].refresh().result == 42
    assert Counter.objects.get(key="worker-async").value == 6


@pytest.mark.django_db(transaction=True)
def test_aenqueue_from_async_code():
    async def view():
        handle = await jobs.add.aenqueue(1, 2)
        await handle.arefresh()
        return handle

    handle = async_to_sync(view)()
    assert handle.status == JobStatus.READY
    assert Job.objects.get(id=handle.id).name == "tests.testapp.jobs.add"


@pytest.mark.django_db(transaction=True)
def test_aenqueue_validates_before_writing():
    async def view():
        await jobs.add.aenqueue({1, 2}, 3)

    with pytest.raises(InvalidJobArguments, match="args\\[0\\]"):
        async_to_sync(view)()
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_aenqueue_joins_a_transaction_opened_in_sync_to_async():
    from asgiref.sync import sync_to_async

    def in_transaction(fail: bool) -> None:
        with transaction.atomic():
            async_to_sync(jobs.add.aenqueue)(1, 2)
            if fail:
                raise RuntimeError

    async def view():
        with pytest.raises(RuntimeError):
            await sync_to_async(in_transaction)(True)
        await sync_to_async(in_transaction)(False)

    async_to_sync(view)()
    assert Job.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_aenqueue_many():
    async def view():
        return await aenqueue_many([jobs.add.prepare(i, i) for i in range(3)])

    handles = async_to_sync(view)()
    assert sorted(Job.objects.values_list("id", flat=True)) == [h.id for h in handles]
