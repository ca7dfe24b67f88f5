"""The endings only a worker process has: shutdown, a lost worker, jobs claimed ahead of it.

(A started job of a killed worker being charged: ``tests/test_faults.py::test_1_*``.)

Real ``runworker`` subprocesses, killed for real. The rule under test: only a
job known to have started (its row's ``started_at``, set by the start mark or
the outcome) is charged an attempt when its worker is lost; the jobs claimed
ahead of the threads go back to READY uncounted, with nothing in their history.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest

from django_durable_jobs import JobStatus, enqueue_many
from django_durable_jobs.models import Job
from tests.conftest import wait_for, wait_until_started
from tests.testapp import endings, jobs
from tests.testapp.models import Counter

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAST = {"LEASE_SECONDS": 2.0, "HEARTBEAT_INTERVAL": 0.5}


def _signals(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_shutdown_interrupts_a_started_job_after_the_write(start_worker, tmp_path):
    marker, log = tmp_path / "started", tmp_path / "signals.jsonl"
    handle = jobs.sleeper.enqueue(60, str(marker))
    worker = start_worker("--shutdown-timeout", "0.5", env={"DDJ_TEST_SIGNAL_LOG": str(log)})
    wait_for(marker.exists)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    job = Job.objects.get(id=handle.id)
    assert (job.status, job.attempts) == (JobStatus.READY, 0)
    assert [entry["outcome"] for entry in job.errors] == ["interrupted"]
    events = [event for event in _signals(log) if event["job_id"] == handle.id]
    assert [event["signal"] for event in events] == ["job_started", "job_retrying"]
    assert events[1]["outcome"] == "interrupted"
    assert events[1]["row"] == ["READY", 0]  # sent after the write


def _poison_and_bystanders() -> tuple[int, list[int]]:
    """Fast jobs first (so the worker claims ahead), then a poison pill and 12 bystanders."""
    enqueue_many(jobs.noop.using(priority=10).prepare() for _ in range(40))
    poison = jobs.kills_its_worker.using(max_attempts=1).enqueue()
    Counter.objects.bulk_create(Counter(key=f"bystander-{i}") for i in range(12))
    bystanders = enqueue_many(
        endings.succeeds.using(max_attempts=1).prepare(f"bystander-{i}") for i in range(12)
    )
    return poison.id, [handle.id for handle in bystanders]


def _assert_bystanders_unharmed(poison_id: int, bystander_ids: list[int]) -> None:
    poison = Job.objects.get(id=poison_id)
    assert poison.status == JobStatus.FAILED
    assert poison.attempts == 1
    assert [entry["outcome"] for entry in poison.errors] == ["worker_lost"]
    assert "no attempts left" in poison.errors[0]["message"]
    bystanders = Job.objects.filter(id__in=bystander_ids)
    assert {job.status for job in bystanders} == {JobStatus.SUCCESSFUL}
    assert {job.attempts for job in bystanders} == {1}
    assert all(job.errors == [] for job in bystanders)  # no blame in their history
    # Some were claimed ahead by a process the poison killed, and given back unstarted:
    # on the old code these ended FAILED ("worker lost"), their only attempt used up.
    assert any(job.meta.get("orphaned") for job in bystanders)


def test_bystanders_claimed_ahead_of_a_poison_pill_are_not_charged(start_worker):
    # One thread: every bystander is claimed ahead, none runs beside the pill (one that
    # did would have started, and would rightly be charged).
    poison_id, bystander_ids = _poison_and_bystanders()
    supervisor = start_worker("--processes", "1", "--concurrency", "1", settings=FAST)
    finished = JobStatus.finished()
    wait_for(lambda: not Job.objects.exclude(status__in=finished).exists(), timeout=60)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait() == 0, supervisor.output()
    _assert_bystanders_unharmed(poison_id, bystander_ids)


def test_bystanders_are_not_charged_when_the_lease_expires_either(start_worker):
    """No supervisor: each crashed worker's jobs come back by lease expiry."""
    poison_id, bystander_ids = _poison_and_bystanders()
    finished = JobStatus.finished()
    for _ in range(4):  # the poison takes down a worker or two before it is FAILED
        worker = start_worker("--concurrency", "1", settings=FAST)
        deadline = time.monotonic() + 60
        while worker.proc.poll() is None and Job.objects.exclude(status__in=finished).exists():
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        if worker.proc.poll() is None:
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0, worker.output()
            break
    _assert_bystanders_unharmed(poison_id, bystander_ids)


def test_a_reused_worker_id_does_not_keep_its_predecessors_job_alive(start_worker, tmp_path):
    marker = tmp_path / "attempt-1"
    handle = jobs.slow_first_attempt.enqueue(str(marker))
    worker_id = str(uuid.uuid4())
    # A long lease: the predecessor's job must come back by the invariant, not by expiry.
    settings = {"LEASE_SECONDS": 60.0, "HEARTBEAT_INTERVAL": 0.5}
    first = start_worker("--worker-id", worker_id, settings=settings)
    wait_for(marker.exists)
    wait_until_started(handle)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = start_worker("--worker-id", worker_id, settings=settings)
    wait_for(lambda: Job.objects.get(id=handle.id).status == JobStatus.SUCCESSFUL, timeout=15)
    job = Job.objects.get(id=handle.id)
    assert job.attempts == 2
    assert [entry["outcome"] for entry in job.errors] == ["worker_lost"]
    assert "no thread of it was running the job" in job.errors[0]["message"]
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert second.output().count(f"job #{handle.id} was RUNNING under this worker's id") == 1


def test_a_running_job_is_not_told_to_cancel_by_its_heartbeats(start_worker):
    """On SQLite every heartbeat used to flag every running job as cancel-requested."""
    handle = endings.watches_for_cancel.enqueue(2.0)
    worker = start_worker("--burst", settings=FAST)  # four heartbeats during the job
    assert worker.wait(timeout=30) == 0, worker.output()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    assert handle.result is False
