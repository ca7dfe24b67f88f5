"""The worker, as a real ``runworker`` subprocess: outcomes, retries, routing, shutdown."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job, QueueState, Worker
from tests.conftest import wait_for
from tests.testapp import jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def row(handle) -> Job:
    return Job.objects.get(id=handle.id)


def run_burst(start_worker, *args: str, settings: dict | None = None):
    worker = start_worker("--burst", *args, settings=settings)
    code = worker.wait(timeout=60)
    assert code == 0, worker.output()
    return worker


def test_success_records_result_times_and_worker(start_worker):
    handle = jobs.add.enqueue(2, 3)
    run_burst(start_worker)
    job = row(handle)
    assert job.status == JobStatus.SUCCESSFUL
    assert handle.refresh().result == 5
    assert job.attempts == 1
    assert job.errors == []
    assert job.worker_id is not None
    assert job.lease_expires_at is None
    assert job.enqueued_at <= job.started_at <= job.finished_at


def test_arguments_arrive_with_their_types(start_worker):
    when = timezone.now()
    handle = jobs.echo.enqueue((1, 2), when, timedelta(seconds=3), flag=True)
    run_burst(start_worker)
    result = handle.refresh().result
    assert result["types"] == ["tuple", "datetime", "timedelta"]
    assert result["args"] == [(1, 2), when, timedelta(seconds=3)]
    assert result["kwargs"] == {"flag": True}


def test_failure_retries_with_growing_delays_then_fails(start_worker):
    handle = jobs.fails_with_backoff.enqueue()
    worker = start_worker()
    wait_for(lambda: row(handle).status == JobStatus.FAILED, timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    job = row(handle)
    assert job.attempts == 3
    assert [entry["attempt"] for entry in job.errors] == [1, 2, 3]
    for entry in job.errors:
        assert entry["outcome"] == "error"
        assert entry["exception_class"] == "builtins.ValueError"
        assert entry["message"] == "still broken"
        assert 'raise ValueError("still broken")' in entry["traceback"]
    starts = [datetime.fromisoformat(entry["started_at"]) for entry in job.errors]
    first_gap, second_gap = (starts[1] - starts[0]), (starts[2] - starts[1])
    assert first_gap >= timedelta(seconds=0.3)
    assert second_gap >= timedelta(seconds=0.6)
    assert second_gap > first_gap
    assert job.finished_at is not None


def test_flaky_job_succeeds_after_two_failures(start_worker):
    Counter.objects.create(key="flaky")
    handle = jobs.flaky.enqueue(2, "flaky")
    worker = start_worker()
    wait_for(lambda: row(handle).status == JobStatus.SUCCESSFUL, timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert handle.refresh().result == "succeeded on attempt 3"
    assert [entry["message"] for entry in handle.errors] == [
        "attempt 1 failed",
        "attempt 2 failed",
    ]
    assert Counter.objects.get(key="flaky").value == 3


def test_retry_requested_by_the_job(start_worker):
    handle = jobs.asks_retry.enqueue(0.5)
    worker = start_worker()
    wait_for(lambda: row(handle).status == JobStatus.SUCCESSFUL, timeout=30)
    worker.signal(signal.SIGTERM)
    worker.wait()
    job = row(handle)
    assert job.attempts == 2
    (entry,) = job.errors
    assert entry["outcome"] == "retry"
    assert entry["message"] == "not yet"
    assert job.started_at - datetime.fromisoformat(entry["started_at"]) >= timedelta(seconds=0.5)


def test_cancel_raised_by_the_job(start_worker):
    handle = jobs.cancels_itself.enqueue("customer closed the account")
    run_burst(start_worker)
    job = row(handle)
    assert job.status == JobStatus.CANCELLED
    assert job.attempts == 1
    assert job.errors[0]["outcome"] == "cancelled"
    assert job.errors[0]["message"] == "customer closed the account"
    assert job.finished_at is not None


def test_unknown_job_name_fails_and_the_worker_goes_on(start_worker):
    ghost = Job.objects.create(name="shop.jobs.removed_long_ago")
    after = jobs.add.enqueue(1, 1)
    run_burst(start_worker)
    ghost.refresh_from_db()
    assert ghost.status == JobStatus.FAILED
    assert "unknown job 'shop.jobs.removed_long_ago'" in ghost.errors[0]["message"]
    assert ghost.errors[0]["outcome"] == "unknown_job"
    assert row(after).status == JobStatus.SUCCESSFUL


def test_corrupted_payload_fails_only_that_job(start_worker):
    broken = Job.objects.create(name=jobs.add.name, args={"not": "a list"})
    after = jobs.add.enqueue(1, 1)
    run_burst(start_worker)
    broken.refresh_from_db()
    assert broken.status == JobStatus.FAILED
    assert broken.errors[0]["outcome"] == "decode_error"
    assert "wrong shape" in broken.errors[0]["message"]
    assert row(after).status == JobStatus.SUCCESSFUL


def test_context_and_async_jobs(start_worker):
    with_context = jobs.with_context.enqueue("hello")
    async_job = jobs.async_add.enqueue(20, 22)
    run_burst(start_worker)
    assert with_context.refresh().result == {
        "label": "hello",
        "job_id": with_context.id,
        "attempt": 1,
    }
    assert async_job.refresh().result == 42


def test_unstorable_result_fails_without_retry(start_worker):
    handle = jobs.returns_unstorable.enqueue()
    run_burst(start_worker)
    job = row(handle)
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert "return value cannot be stored" in job.errors[0]["message"]
    assert "list" in job.errors[0]["message"]


def test_hostile_exceptions_are_recorded(start_worker):
    unprintable = jobs.raises_unprintable.enqueue()
    huge = jobs.raises_huge.enqueue()
    run_burst(start_worker)
    entry = row(unprintable).errors[0]
    assert entry["exception_class"] == "tests.testapp.jobs.Unprintable"
    assert "Unprintable" in entry["message"]
    entry = row(huge).errors[0]
    assert len(entry["message"]) < 11_000
    assert "characters truncated" in entry["message"]
    assert row(huge).status == JobStatus.FAILED


def test_priority_then_run_at_then_id_order(start_worker):
    now = timezone.now()
    low = jobs.record_order.using(priority=-10).enqueue("low")
    high = jobs.record_order.using(priority=10).enqueue("high")
    older = jobs.record_order.using(run_at=now - timedelta(minutes=5)).enqueue("older")
    first_default = jobs.record_order.enqueue("first")
    second_default = jobs.record_order.enqueue("second")
    run_burst(start_worker, "--concurrency", "1")
    assert all(
        handle.refresh().status == JobStatus.SUCCESSFUL
        for handle in (high, older, first_default, second_default, low)
    )
    # The order they ran in, on the worker's one clock (each job's monotonic stamp): a row's
    # started_at mixes the database clock and the worker's, and is only accurate to about a
    # millisecond across outcome batches, while these jobs start about a millisecond apart.
    stamps = {
        key.split("-")[1]: int(key.split("-")[2])
        for key in Counter.objects.filter(key__startswith="order-").values_list("key", flat=True)
    }
    assert sorted(stamps, key=stamps.get) == ["high", "older", "first", "second", "low"]


def test_queues_option_routes_jobs(start_worker):
    mine = jobs.add.using(queue="mine").enqueue(1, 1)
    other = jobs.add.using(queue="other").enqueue(1, 1)
    run_burst(start_worker, "--queues", "mine,spare")
    assert row(mine).status == JobStatus.SUCCESSFUL
    assert row(other).status == JobStatus.READY


def test_future_jobs_and_paused_queues_are_not_claimed(start_worker):
    later = jobs.add.using(delay=3600).enqueue(1, 1)
    QueueState.objects.create(name="held", paused=True)
    held = jobs.add.using(queue="held").enqueue(1, 1)
    now = jobs.add.enqueue(1, 1)
    run_burst(start_worker)
    assert row(later).status == JobStatus.READY
    assert row(held).status == JobStatus.READY
    assert row(now).status == JobStatus.SUCCESSFUL


def test_max_jobs(start_worker):
    handles = [jobs.add.enqueue(i, i) for i in range(5)]
    worker = start_worker("--max-jobs", "2", "--concurrency", "1")
    assert worker.wait() == 0, worker.output()
    statuses = [row(handle).status for handle in handles]
    assert statuses.count(JobStatus.SUCCESSFUL) == 2
    assert statuses.count(JobStatus.READY) == 3


def test_worker_row_lives_while_the_worker_runs(start_worker):
    worker = start_worker("--queues", "a,b", "--concurrency", "3")
    registered = wait_for(lambda: Worker.objects.first())
    assert registered.pid == worker.pid
    assert registered.queues == ["a", "b"]
    assert registered.concurrency == 3
    first_beat = registered.heartbeat_at
    wait_for(lambda: Worker.objects.get(id=registered.id).heartbeat_at > first_beat)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert not Worker.objects.exists()


def test_sigterm_always_stops_an_idle_worker(start_worker):
    """An idle worker spends its time in Event.wait(); a handler that set() that event
    from the interrupted main thread would deadlock on the event's lock now and then."""
    workers = [
        start_worker(settings={"POLL_INTERVAL": 0.001, "HEARTBEAT_INTERVAL": 0.2})
        for _ in range(12)
    ]
    wait_for(lambda: Worker.objects.count() == len(workers), timeout=60)
    time.sleep(0.5)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=20) == 0, worker.output()
    assert not Worker.objects.exists()


def test_sigterm_lets_the_running_job_finish(start_worker, tmp_path):
    marker = tmp_path / "started"
    running = jobs.sleeper.enqueue(1.5, str(marker))
    waiting = [jobs.add.using(priority=-1).enqueue(i, i) for i in range(3)]
    worker = start_worker("--concurrency", "1")
    wait_for(marker.exists)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    assert row(running).status == JobStatus.SUCCESSFUL
    for handle in waiting:
        job = row(handle)
        assert (job.status, job.attempts, job.errors) == (JobStatus.READY, 0, [])


def test_shutdown_timeout_releases_the_running_job(start_worker, tmp_path):
    marker = tmp_path / "started"
    handle = jobs.sleeper.enqueue(60, str(marker))
    worker = start_worker("--shutdown-timeout", "1")
    wait_for(marker.exists)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    assert time.monotonic() - started < 10
    job = row(handle)
    assert job.status == JobStatus.READY
    assert job.attempts == 0  # interrupted, not failed
    assert job.errors[-1]["outcome"] == "interrupted"
    assert "interrupted by shutdown" in job.errors[-1]["message"]
    assert job.lease_expires_at is None


def test_second_signal_stops_at_once_and_releases(start_worker, tmp_path):
    marker = tmp_path / "started"
    handle = jobs.sleeper.enqueue(60, str(marker))
    worker = start_worker("--shutdown-timeout", "60")
    wait_for(marker.exists)
    worker.signal(signal.SIGINT)
    time.sleep(0.3)
    assert worker.proc.poll() is None  # still waiting for the job
    started = time.monotonic()
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=10) == 1
    assert time.monotonic() - started < 5
    job = row(handle)
    assert (job.status, job.attempts) == (JobStatus.READY, 0)
    assert job.errors[-1]["outcome"] == "interrupted"


def test_invalid_queue_option_is_a_command_error(start_worker):
    worker = start_worker("--queues", "bad queue")
    assert worker.wait() == 1
    assert "not a valid queue name" in worker.output()


@pytest.mark.postgres_only
def test_listen_notify_wakes_an_idle_worker(start_worker):
    worker = start_worker("--poll-interval", "30")
    wait_for(lambda: Worker.objects.exists())
    time.sleep(0.5)  # idle, in its 30 s poll wait
    started = time.monotonic()
    handle = jobs.add.enqueue(1, 2)
    wait_for(lambda: row(handle).status == JobStatus.SUCCESSFUL, timeout=5)
    assert time.monotonic() - started < 2
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_operator_cancel_reaches_a_cooperative_running_job(start_worker, tmp_path):
    from django_durable_jobs import operations

    marker = tmp_path / "running"
    handle = jobs.cooperative.enqueue(str(marker))
    worker = start_worker(settings={"HEARTBEAT_INTERVAL": 0.3, "LEASE_SECONDS": 5.0})
    wait_for(marker.exists)
    result = operations.cancel([handle.id])
    assert row(handle).status == JobStatus.CANCELLED
    # The worker's next heartbeat sees the row is no longer its own and tells the job.
    wait_for((tmp_path / "running.stopped").exists, timeout=10)
    wait_for(lambda: "late report ignored" in worker.output(), timeout=10)
    job = row(handle)
    assert job.status == JobStatus.CANCELLED  # the job's own late "success" changed nothing
    assert job.result is None
    assert (result.done, result.refused_count) == (1, 0)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_slow_jobs_are_not_hoarded_by_one_worker(start_worker):
    """Claim-ahead adapts to job duration: a worker busy with slow jobs leaves the rest."""
    handles = [jobs.sleeper.enqueue(0.6) for _ in range(6)]
    first = start_worker("--concurrency", "1")
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).count() >= 1, timeout=20)
    second = start_worker("--concurrency", "1")
    wait_for(lambda: all(row(handle).status == JobStatus.SUCCESSFUL for handle in handles), 30)
    workers = {row(handle).worker_id for handle in handles}
    assert len(workers) == 2  # the second worker found jobs left to take
    for worker in (first, second):
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0


def test_prefetch_follows_job_and_claim_times():
    from django_durable_jobs.worker.prefetch import AdaptivePrefetch

    prefetch = AdaptivePrefetch(size=8, cap=64)
    assert prefetch.allowance == 0  # nothing known yet: no claiming ahead
    prefetch.job_seconds, prefetch.claim_seconds = 0.0001, 0.001  # fast jobs, 1 ms claims
    assert prefetch.allowance == 64  # capped
    prefetch.job_seconds = 0.002
    assert prefetch.allowance == 4  # 8 threads finish 4 jobs during a claim
    prefetch.job_seconds = 1.0
    assert prefetch.allowance == 0  # slow jobs: never ahead
    never = AdaptivePrefetch(size=8, cap=0)
    never.job_seconds = 0.0001
    assert never.allowance == 0


@pytest.mark.parametrize("declared", [None, 3.0])
def test_the_poll_interval_is_the_projects_else_the_databases_default(settings, declared):
    """No NOTIFY (MariaDB/MySQL): a shorter default, unless the project sets POLL_INTERVAL."""
    from django_durable_jobs.db import get_backend
    from django_durable_jobs.worker.process import Worker as WorkerProcess

    durable = {key: value for key, value in settings.DURABLE_JOBS.items() if key != "POLL_INTERVAL"}
    if declared is not None:
        durable["POLL_INTERVAL"] = declared
    settings.DURABLE_JOBS = durable
    worker = WorkerProcess(install_signal_handlers=False, scheduler=False)
    fallback = get_backend("default").default_poll_interval or 1.0
    assert worker.poll_interval == (declared or fallback)
    assert worker.poll_interval == (
        3.0 if declared else 0.25 if worker.backend.vendor == "mysql" else 1.0
    )
