"""Between jobs a worker keeps healthy connections and drops broken ones; DEBUG cannot leak."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from django_durable_jobs.connections import tidy_connections
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def test_query_log_is_emptied_so_debug_does_not_grow_memory():
    connection.force_debug_cursor = True
    try:
        for i in range(20):
            Note.objects.create(text=str(i))
        assert len(connection.queries_log) >= 20
        tidy_connections()
        assert len(connection.queries_log) == 0
    finally:
        connection.force_debug_cursor = False


def test_healthy_connection_is_kept_whatever_conn_max_age_says():
    connection.ensure_connection()
    raw = connection.connection
    connection.close_at = 0  # what CONN_MAX_AGE=0 would mean: "expired"
    tidy_connections()
    assert connection.connection is raw
    assert connection.close_at is None


def test_connection_left_in_a_transaction_is_dropped():
    connection.ensure_connection()
    atomic = transaction.atomic()
    atomic.__enter__()  # a job that never left its atomic block
    Note.objects.create(text="never committed")
    tidy_connections()
    assert not connection.in_atomic_block
    assert connection.connection is None
    assert not Note.objects.exists()  # reconnects; the open transaction was rolled back
