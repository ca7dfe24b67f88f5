"""PREPARED_STATEMENTS: our hot statements are prepared on Django's connections, nothing else is.

Django opens psycopg connections with ``prepare_threshold=None``, with which psycopg
ignores ``prepare=True``; these tests look at the server's own list of prepared
statements on the connection.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.db import get_backend
from django_durable_jobs.db.base import Outcome
from django_durable_jobs.models import Job
from tests.testapp.jobs import add

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture(autouse=True)
def fresh_connection():
    connection.close()  # no statement prepared by an earlier test
    yield
    connection.close()


def test_enqueue_prepares_its_insert_once():
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    statements = prepared_statements()
    assert len(statements) == 1
    assert "INSERT INTO django_durable_jobs_job" in statements[0]
    assert Job.objects.count() == 2


def test_the_projects_own_queries_stay_unprepared():
    add.enqueue(1, 2)
    cursor = psycopg.Cursor(connection.connection)  # server-side binding, like the ORM's option
    for i in range(20):  # well past psycopg's usual threshold of 5
        cursor.execute("SELECT %s::int + 1", [i])
    assert not any("SELECT $1::int + 1" in s for s in prepared_statements())
    assert connection.connection.prepare_threshold is not None  # ours were allowed


def test_turned_off_nothing_is_prepared(settings):
    settings.DURABLE_JOBS = {"PREPARED_STATEMENTS": False}
    add.enqueue(1, 2)
    add.enqueue(3, 4)
    assert prepared_statements() == []
    assert connection.connection.prepare_threshold is None
    assert Job.objects.count() == 2


def test_a_rollback_drops_the_statements_and_the_next_enqueue_prepares_again():
    add.enqueue(1, 2)
    with pytest.raises(RuntimeError), transaction.atomic():
        add.enqueue(3, 4)
        raise RuntimeError("roll back")
    # psycopg deallocates everything after a rollback; the next enqueue must not
    # execute a statement the server no longer has.
    assert prepared_statements() == []
    add.enqueue(5, 6)
    assert len(prepared_statements()) == 1
    assert sorted(Job.objects.values_list("args", flat=True)) == [[1, 2], [5, 6]]


def test_a_session_that_lost_them_fails_with_the_fix_in_the_error():
    # What a transaction-pooling PgBouncer before 1.21 does: the next statement
    # runs on a server session that never saw our PREPARE.
    add.enqueue(1, 2)
    connection.connection.pgconn.exec_(b"DEALLOCATE ALL")  # behind psycopg's back
    with pytest.raises(DatabaseError) as raised:
        add.enqueue(3, 4)
    notes = "".join(getattr(raised.value.__cause__, "__notes__", []))
    assert "DURABLE_JOBS['PREPARED_STATEMENTS'] = False" in notes
    assert Job.objects.count() == 1


def test_claim_and_record_are_never_prepared_even_when_the_project_prepares_everything():
    # A prepared claim may switch to a generic plan after five runs; with statistics
    # that have not seen a fresh backlog it drained a large table 5x slower.
    connection.ensure_connection()
    connection.connection.prepare_threshold = 0  # the project's choice: prepare all
    backend = get_backend("default")
    worker_id = uuid.uuid4()
    for i in range(8):
        add.enqueue(i, i)
    for _ in range(8):
        for claimed in backend.claim(worker_id=worker_id, queues=None, limit=1, lease_seconds=60):
            backend.record([Outcome(claimed, JobStatus.SUCCESSFUL, result_json="null")])
    statements = prepared_statements()
    assert any("INSERT INTO django_durable_jobs_job" in s for s in statements)
    assert not any("UPDATE django_durable_jobs_job AS j" in s for s in statements), statements
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 8
