"""Behind a transaction-pooling PgBouncer: what can be detected is said at start-up.

``.ci/pgbouncer`` runs this file (with a part of the suite) through a real
PgBouncer in transaction mode (``DDJ_TEST_POOLER=transaction``); the normal
PostgreSQL pass runs the direct-connection half. LISTEN cannot work through
the pooler (the LISTEN lands on a server connection other clients then use):
a worker that still has ``LISTEN_NOTIFY`` on says so once, with the fix.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.db import connection

from django_durable_jobs import JobStatus
from tests.conftest import wait_for
from tests.testapp import jobs

POOLED = os.environ.get("DDJ_TEST_POOLER") == "transaction"
WARNING = "LISTEN/NOTIFY does not reach this worker"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (runs in the PostgreSQL and PgBouncer passes)")


def _worker_with_listen(start_worker):
    worker = start_worker("--concurrency", "2", settings={"LISTEN_NOTIFY": True})
    handle = jobs.add.enqueue(2, 3)
    wait_for(lambda: handle.refresh().status == JobStatus.SUCCESSFUL, timeout=30)  # polling
    return worker


@pytest.mark.skipif(not POOLED, reason="runs through PgBouncer (.ci/pgbouncer)")
def test_through_the_pooler_listen_is_reported_and_polling_runs_the_jobs(start_worker):
    worker = _worker_with_listen(start_worker)
    wait_for(lambda: WARNING in worker.output(), timeout=15)
    assert "DURABLE_JOBS['LISTEN_NOTIFY'] = False (or runworker --no-listen)" in worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert worker.output().count(WARNING) == 1


@pytest.mark.skipif(POOLED, reason="a direct connection: the normal PostgreSQL pass")
def test_on_a_direct_connection_the_probe_arrives_and_nothing_is_said(start_worker):
    worker = _worker_with_listen(start_worker)
    time.sleep(4)  # past the probe's 3 s
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert WARNING not in worker.output()
