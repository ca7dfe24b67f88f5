"""Several worker processes drain one table: every job runs exactly once, none is left behind."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from django_durable_jobs import JobStatus, enqueue_many
from django_durable_jobs.models import Job
from tests.testapp.jobs import bump
from tests.testapp.models import Counter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def drain(start_worker, *, jobs: int, processes: int, threads: int) -> float:
    Counter.objects.bulk_create(Counter(key=f"job-{i}") for i in range(jobs))
    enqueue_many(bump.prepare(f"job-{i}") for i in range(jobs))
    started = time.monotonic()
    workers = [start_worker("--burst", "--concurrency", str(threads)) for _ in range(processes)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.output()
    elapsed = time.monotonic() - started
    for worker in workers:
        log = worker.output()
        assert "Traceback" not in log, log
        assert "locked" not in log, log
    values = list(Counter.objects.values_list("value", flat=True))
    assert len(values) == jobs
    assert set(values) == {1}, f"{sum(v != 1 for v in values)} counters are not exactly 1"
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL, attempts=1, errors=[]).count() == jobs
    assert not Job.objects.exclude(status=JobStatus.SUCCESSFUL).exists()
    return jobs / elapsed


@pytest.mark.concurrent_writers
def test_four_processes_four_threads_drain_5000_jobs_exactly_once(start_worker):
    rate = drain(start_worker, jobs=5000, processes=4, threads=4)
    print(f"\n4 workers x 4 threads drained 5000 jobs on {connection.vendor}: {rate:.0f} jobs/s")


def test_two_sqlite_processes_drain_500_jobs_exactly_once(start_worker):
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; PostgreSQL runs the 5,000-job race")
    rate = drain(start_worker, jobs=500, processes=2, threads=4)
    print(f"\n2 workers x 4 threads drained 500 jobs on SQLite: {rate:.0f} jobs/s")
