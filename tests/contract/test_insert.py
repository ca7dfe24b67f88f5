"""insert(): many jobs in few statements, ids in input order, all or nothing."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from django.db import IntegrityError, transaction

from django_durable_jobs.constants import PRIORITY_MAX
from django_durable_jobs.enqueue import insert_jobs
from django_durable_jobs.models import Job

from .support import ALIAS, insert, prepared

pytestmark = pytest.mark.django_db(transaction=True)

#: Refused by the table's CHECK constraint, on every database.
BAD = {"priority": PRIORITY_MAX + 1}


def test_ids_come_back_in_input_order(backend):
    jobs = [prepared(i, priority=(i * 37) % 11 - 5, queue=f"q{i % 3}") for i in range(60)]
    ids = backend.insert(jobs, notify=False)
    assert len(ids) == 60
    assert None not in ids
    tags = dict(Job.objects.values_list("id", "args"))
    assert [tags[job_id][0] for job_id in ids] == list(range(60))
    assert backend.insert([], notify=False) == []


def test_a_batch_with_a_bad_row_writes_nothing(backend):
    insert(prepared("before"))
    jobs = [prepared(i) for i in range(10)]
    jobs[6] = prepared("bad", **BAD)
    # One statement is all or nothing by itself (autocommit); several need the caller's
    # transaction, which enqueue opens when insert_statements() says so.
    one_statement = backend.insert_statements(len(jobs)) == 1
    with pytest.raises(IntegrityError), nullcontext() if one_statement else transaction.atomic():
        backend.insert(jobs, notify=False)
    assert list(Job.objects.values_list("args", flat=True)) == [["before", 0]]
    # The connection is usable afterwards.
    assert insert(prepared("after")) != [None]


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_batch_of_several_statements_is_all_or_nothing_in_a_transaction(backend, where):
    """Past one statement (SQLite: 1,000 rows) the caller's transaction makes it atomic,
    as enqueue does; the bad row is in the first or the last statement."""
    count = 2500
    jobs = [prepared(i) for i in range(count)]
    jobs[0 if where == "first" else -1] = prepared("bad", **BAD)
    with pytest.raises(IntegrityError), transaction.atomic(using=ALIAS):
        backend.insert(jobs, notify=False)
    assert not Job.objects.exists()
    # enqueue's own path opens that transaction when it needs several statements.
    with pytest.raises(IntegrityError):
        insert_jobs(jobs, ALIAS)
    assert not Job.objects.exists()


@pytest.mark.parametrize("where", ["first", "last"])
def test_the_backend_itself_makes_a_batch_of_several_statements_all_or_nothing(backend, where):
    """No transaction around the call: the backend opens one when it needs several statements."""
    jobs = [prepared(i) for i in range(2500)]
    jobs[0 if where == "first" else -1] = prepared("bad", **BAD)
    with pytest.raises(IntegrityError):
        backend.insert(jobs, notify=False)
    assert not Job.objects.exists()


def test_a_large_batch_is_written_whole_in_input_order(backend):
    count = 2500
    ids = backend.insert([prepared(i) for i in range(count)], notify=False)
    assert len(set(ids)) == count
    tags = dict(Job.objects.values_list("id", "args"))
    assert [tags[job_id][0] for job_id in ids] == list(range(count))


def test_an_insert_inside_a_rolled_back_transaction_leaves_nothing(backend):
    with transaction.atomic(using=ALIAS):
        ids = backend.insert([prepared(i) for i in range(5)], notify=True)
        assert Job.objects.filter(id__in=ids).count() == 5  # visible to its own transaction
        transaction.set_rollback(True, using=ALIAS)
    assert not Job.objects.exists()
