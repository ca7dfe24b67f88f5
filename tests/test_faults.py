"""The fault-injection suite: each promise of docs/topics/guarantees.md under a real fault.

Real worker processes, a real database; "exactly once" is proven by counters
that jobs increment inside their own transaction. Cases 2 and 3 (SIGTERM with
short and long jobs, a second signal) live in test_worker.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_durable_jobs import JobStatus, enqueue_many
from django_durable_jobs.failures import MAX_TRACEBACK_CHARS
from django_durable_jobs.models import Job, Worker
from tests.conftest import wait_for, wait_until_started
from tests.faults import DatabaseProxy
from tests.testapp import jobs
from tests.testapp.models import Counter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: Short leases so that lost workers are noticed within seconds.
FAST = {"LEASE_SECONDS": 2.0, "HEARTBEAT_INTERVAL": 0.5}


def other_sessions() -> list[int]:
    """The server sessions on the test database other than this one (workers' connections)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
        return [row[0] for row in cursor.fetchall()]


def kill_sessions(ids: list[int]) -> int:
    """End these server sessions as a crash or an administrator would; how many ended."""
    ended = 0
    with connection.cursor() as cursor:
        for session in ids:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [session])
                ended += bool(cursor.fetchone()[0])
            else:
                cursor.execute(f"KILL CONNECTION {int(session)}")
                ended += 1
    return ended


def row(handle) -> Job:
    return Job.objects.get(id=handle.id)


def status(handle) -> str:
    return row(handle).status


def worker_ids() -> set:
    return set(Worker.objects.values_list("id", flat=True))


def test_1_killed_worker_job_is_retried_by_another_after_its_lease(start_worker, tmp_path):
    marker = tmp_path / "attempt-1-running"
    handle = jobs.slow_first_attempt.enqueue(str(marker))
    victim = start_worker(settings=FAST)
    wait_for(marker.exists)
    wait_until_started(handle)
    (victim_id,) = worker_ids()
    survivor = start_worker(settings=FAST)
    wait_for(lambda: len(worker_ids()) == 2)
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=30)
    rescue_seconds = time.monotonic() - killed_at
    job = row(handle)
    assert job.attempts == 2
    assert handle.refresh().result == "attempt 2"
    (lost,) = job.errors
    assert lost["outcome"] == "worker_lost"
    assert "lease expired" in lost["message"]
    assert lost["worker"].replace("-", "") == victim_id.hex
    assert "orphaned" not in job.meta  # it had started: charged, not given back
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
    wait_for(lambda: victim_id not in worker_ids(), timeout=15)  # the dead worker's row goes
    print(f"\nkill -9 -> job done by another worker: {rescue_seconds:.1f}s (lease 2 s)")
    survivor.signal(signal.SIGTERM)
    assert survivor.wait() == 0


def test_atomic_job_killed_mid_transaction_commits_exactly_once(start_worker, tmp_path):
    Counter.objects.create(key="atomic")
    marker = tmp_path / "inside-transaction"
    handle = jobs.atomic_slow_first_attempt.enqueue("atomic", str(marker))
    victim = start_worker(settings=FAST)
    wait_for(marker.exists)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert Counter.objects.get(key="atomic").value == 0  # the killed attempt rolled back
    survivor = start_worker(settings=FAST)
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=30)
    assert Counter.objects.get(key="atomic").value == 1
    assert row(handle).attempts == 2
    survivor.signal(signal.SIGTERM)
    survivor.wait()


@pytest.mark.concurrent_writers
def test_4_backend_killed_inside_a_job_rolls_back_and_retries(start_worker, tmp_path):
    Counter.objects.create(key="killed")
    marker, go = tmp_path / "backend-pid", tmp_path / "go"
    handle = jobs.writes_then_waits.enqueue("killed", str(marker), str(go))
    worker = start_worker(settings=FAST)
    backend_pid = int(wait_for(lambda: marker.exists() and marker.read_text()))
    kill_sessions([backend_pid])
    go.write_text("go")
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=30)
    after = jobs.add.enqueue(1, 1)
    wait_for(lambda: status(after) == JobStatus.SUCCESSFUL)
    job = row(handle)
    assert job.attempts == 2
    assert job.errors[0]["outcome"] == "error"
    assert "Error" in job.errors[0]["exception_class"]
    assert Counter.objects.get(key="killed").value == 1  # attempt 1's write rolled back
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert "already closed" not in worker.output()


@pytest.mark.concurrent_writers
def test_5_dropped_idle_connections_still_pick_up_the_next_job(start_worker):
    worker = start_worker("--poll-interval", "1")
    wait_for(worker_ids)
    time.sleep(1.5)  # idle, with claimer, heartbeat (and LISTEN) connections open
    assert kill_sessions(other_sessions()) >= 2
    enqueued = time.monotonic()
    handle = jobs.add.enqueue(1, 2)
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=10)
    assert time.monotonic() - enqueued < 3.0  # a poll interval or two
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_6_job_failing_every_time_runs_exactly_max_attempts(start_worker):
    Counter.objects.create(key="fails")
    handle = jobs.always_fails_counted.enqueue("fails")
    worker = start_worker(settings=FAST)
    wait_for(lambda: status(handle) == JobStatus.FAILED, timeout=30)
    time.sleep(2)  # never picked again
    job = row(handle)
    assert Counter.objects.get(key="fails").value == 3
    assert job.attempts == 3
    assert [entry["attempt"] for entry in job.errors] == [1, 2, 3]
    assert all("RuntimeError: fails every time" in entry["traceback"] for entry in job.errors)
    starts = [datetime.fromisoformat(entry["started_at"]) for entry in job.errors]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert timedelta(seconds=0.3) <= gaps[0] < gaps[1] < timedelta(seconds=5)  # growing, bounded
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_7_sleeping_and_spinning_jobs_time_out_and_the_worker_goes_on(start_worker):
    sleeping = jobs.sleeper.using(timeout=2, max_attempts=1).enqueue(600)
    spinning = jobs.spin.using(timeout=2).enqueue(600)
    others = [jobs.add.using(priority=-1).enqueue(i, i) for i in range(5)]
    worker = start_worker("--concurrency", "2", settings=FAST)
    for handle, where in ((sleeping, "sleeper"), (spinning, "spin")):
        wait_for(lambda handle=handle: status(handle) == JobStatus.FAILED, timeout=30)
        (entry,) = row(handle).errors
        assert entry["outcome"] == "timeout"
        assert entry["exception_class"] == "django_durable_jobs.exceptions.JobTimeout"
        assert "timed out after 2s" in entry["message"]
        assert "Where the job was when it timed out" in entry["traceback"]
        assert where in entry["traceback"]
    for handle in others:
        wait_for(lambda handle=handle: status(handle) == JobStatus.SUCCESSFUL, timeout=30)
    # The sleeping thread cannot be interrupted: the process recycles itself...
    wait_for(lambda: "re-executing this worker process" in worker.output(), timeout=30)
    later = jobs.add.enqueue(7, 7)
    wait_for(lambda: status(later) == JobStatus.SUCCESSFUL, timeout=30)  # ...and goes on
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_8_poison_pill_fails_after_max_attempts_while_other_jobs_flow(start_worker):
    Counter.objects.bulk_create(Counter(key=f"flow-{i}") for i in range(20))
    poison = jobs.kills_its_worker.enqueue()
    enqueue_many(jobs.bump.prepare(f"flow-{i}") for i in range(20))
    supervisor = start_worker("--processes", "2", "--concurrency", "2", settings=FAST)
    wait_for(lambda: status(poison) == JobStatus.FAILED, timeout=60)
    wait_for(lambda: not Job.objects.exclude(id=poison.id).exclude(status="SUCCESSFUL").exists())
    # At least once: a bystander that finished in the killed process just before its
    # outcome was written runs again (exactly-once effects need atomic=True).
    values = list(Counter.objects.values_list("value", flat=True))
    assert min(values) >= 1
    print(f"\npoison pill: {sum(v > 1 for v in values)} of 20 bystanders ran twice")
    job = row(poison)
    assert job.attempts == 2
    assert [entry["outcome"] for entry in job.errors] == ["worker_lost", "worker_lost"]
    assert "process exited with status 1" in job.errors[0]["message"]
    assert "no attempts left" in job.errors[-1]["message"]
    assert supervisor.proc.poll() is None  # the pool is alive, not crash-looping
    wait_for(lambda: len(worker_ids()) == 2)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait() == 0, supervisor.output()


@pytest.mark.concurrent_writers
def test_9_ten_processes_race_for_10000_jobs(start_worker):
    total = 10_000
    Counter.objects.bulk_create(Counter(key=f"race-{i}") for i in range(total))
    enqueue_many(jobs.bump.prepare(f"race-{i}") for i in range(total))
    started = time.monotonic()
    workers = [start_worker("--burst", "--concurrency", "2") for _ in range(10)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.output()
    elapsed = time.monotonic() - started
    for worker in workers:
        log = worker.output()
        assert "deadlock" not in log.lower(), log
        assert "Traceback" not in log, log
    assert set(Counter.objects.values_list("value", flat=True)) == {1}
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == total
    print(
        f"\n10 processes x 2 threads: {total} jobs in {elapsed:.1f}s = {total / elapsed:.0f} jobs/s"
    )


def test_10_stale_worker_reporting_late_changes_nothing(start_worker, tmp_path):
    marker, log = tmp_path / "pause-attempt-1", tmp_path / "signals.jsonl"
    handle = jobs.slow_first_attempt.enqueue(str(marker))
    stale = start_worker(settings=FAST, env={"DDJ_TEST_SIGNAL_LOG": str(log)})
    wait_for(marker.exists)
    wait_until_started(handle)
    (stale_id,) = worker_ids()
    os.kill(stale.pid, signal.SIGSTOP)  # frozen: no heartbeats, lease expires
    fresh = start_worker(settings=FAST)
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=30)
    os.kill(stale.pid, signal.SIGCONT)  # wakes up, finishes attempt 1, reports it
    wait_for(lambda: "late report ignored" in stale.output(), timeout=20)
    job = row(handle)
    assert handle.refresh().result == "attempt 2"
    assert job.attempts == 2
    assert [entry["outcome"] for entry in job.errors] == ["worker_lost"]
    assert job.worker_id != stale_id
    for worker in (stale, fresh):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
    # The stale worker's ignored report sent no end signal: its receivers never saw
    # a finish that did not happen.
    stale_signals = [
        json.loads(line)["signal"]
        for line in log.read_text().splitlines()
        if json.loads(line)["pid"] == stale.pid
    ]
    assert stale_signals == ["job_started"]


def test_11_undecodable_and_hostile_jobs_are_recorded_and_shown_escaped(start_worker):
    ghost = Job.objects.create(name="shop.jobs.gone")
    corrupted = Job.objects.create(name=jobs.add.name, args={"not": "a list"})
    unprintable = jobs.raises_unprintable.enqueue()
    deep = jobs.deep_recursion.enqueue()
    html = jobs.always_fails.using(max_attempts=1).enqueue("<script>alert('x')</script>")
    after = jobs.add.enqueue(1, 1)
    worker = start_worker("--burst")
    assert worker.wait() == 0, worker.output()
    assert status(after) == JobStatus.SUCCESSFUL
    failed = [ghost.id, corrupted.id, unprintable.id, deep.id, html.id]
    assert set(Job.objects.filter(id__in=failed).values_list("status", flat=True)) == {"FAILED"}
    assert len(row(deep).errors[0]["traceback"]) <= MAX_TRACEBACK_CHARS + 100
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(admin)
    for job_id in failed:
        page = client.get(f"/admin/django_durable_jobs/job/{job_id}/change/")
        assert page.status_code == 200
    page = client.get(f"/admin/django_durable_jobs/job/{html.id}/change/").content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page


OUTAGE = 30.0


def _run_through_outage(start_worker, outage, restore, *, env=None):
    """Workers run jobs; the database goes away for OUTAGE seconds; nothing fails for it."""
    Counter.objects.bulk_create(Counter(key=f"o-{i}") for i in range(40))
    enqueue_many(jobs.slow_db_job.prepare(f"o-{i}", 0.2) for i in range(40))
    worker = start_worker("--concurrency", "4", "--poll-interval", "0.5", env=env)
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() >= 4, timeout=30)
    outage()
    time.sleep(OUTAGE)
    restore()
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 40, timeout=90)
    late = jobs.add.enqueue(1, 1)
    wait_for(lambda: status(late) == JobStatus.SUCCESSFUL, timeout=30)
    assert not Job.objects.filter(status=JobStatus.FAILED).exists()
    for job in Job.objects.all():
        assert all(entry["outcome"] != "error" for entry in job.errors), job.errors
    assert min(Counter.objects.values_list("value", flat=True)) >= 2
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    log = worker.output()
    trouble = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert len(trouble) < 40, "\n".join(trouble)  # bounded, not one line per retry
    return log


@pytest.mark.concurrent_writers
def test_12_database_unreachable_for_30s(start_worker):
    settings = connection.settings_dict
    proxy = DatabaseProxy(settings["HOST"], int(settings["PORT"]))
    try:
        log = _run_through_outage(
            start_worker, proxy.cut, proxy.restore, env={"DDJ_TEST_DB_PORT": str(proxy.port)}
        )
    finally:
        proxy.close()
    assert "database unavailable" in log
    if connection.vendor == "postgresql":
        assert "LISTEN connection restored" in log
    assert "claiming resumed" in log


@pytest.mark.postgres_only
def test_12_database_read_only_for_30s(start_worker):
    name = connection.settings_dict["NAME"]
    quoted = connection.ops.quote_name(name)

    def set_read_only(value: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {quoted} SET default_transaction_read_only = {value}")
            if value == "on":  # a failover: sessions are cut and come back read-only
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                )

    try:
        # Back to writable without cutting sessions: workers must notice by themselves.
        log = _run_through_outage(
            start_worker, lambda: set_read_only("on"), lambda: set_read_only("off")
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {quoted} RESET default_transaction_read_only")
    assert "read-only" in log


@pytest.mark.postgres_only
def test_13_killed_listen_connection_reconnects_and_polling_covers(start_worker):
    worker = start_worker("--poll-interval", "1")
    wait_for(worker_ids)
    wait_for(lambda: _listeners() == 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        )
    handle = jobs.add.enqueue(1, 2)
    wait_for(lambda: status(handle) == JobStatus.SUCCESSFUL, timeout=10)
    wait_for(lambda: "LISTEN connection restored" in worker.output(), timeout=20)
    wait_for(lambda: _listeners() == 1)
    assert "LISTEN connection lost" in worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def _listeners() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        )
        return cursor.fetchone()[0]


def test_14_far_future_job_survives_20_restarts_and_runs_once(start_worker):
    Counter.objects.create(key="future")
    handle = jobs.bump.using(run_at=timezone.now() + timedelta(days=7)).enqueue("future")
    for _ in range(20):
        worker = start_worker("--burst", settings=FAST)
        assert worker.wait() == 0, worker.output()
        assert (status(handle), row(handle).attempts) == (JobStatus.READY, 0)
    # Seven days pass: the claim compares run_at with the database clock, so moving
    # run_at back seven days is the clock moving forward seven days.
    Job.objects.filter(id=handle.id).update(
        run_at=row(handle).run_at - timedelta(days=7, seconds=1)
    )
    for _ in range(3):
        worker = start_worker("--burst", settings=FAST)
        assert worker.wait() == 0
    assert status(handle) == JobStatus.SUCCESSFUL
    assert row(handle).attempts == 1
    assert Counter.objects.get(key="future").value == 1
