"""What an operator sees of a running worker: its log lines and its recycling.

Real ``runworker`` subprocesses (issue 20, items 2 and 4).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from pathlib import Path

import pytest

from django_durable_jobs import JobStatus
from tests.conftest import wait_for
from tests.testapp import endings, jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_worker_logs_an_info_line_per_finished_job(start_worker):
    first, second = jobs.add.enqueue(1, 2), jobs.add.enqueue(3, 4)
    worker = start_worker("--burst")
    assert worker.wait() == 0, worker.output()
    output = worker.output()
    for handle in (first, second):
        line = rf"INFO \[.*\] django_durable_jobs.worker: job #{handle.id} tests.testapp.jobs.add "
        assert re.search(line + r"\[queue default, attempt 1/5\] succeeded in", output), output
    assert output.count(" succeeded in ") == 2


def test_the_info_lines_go_with_log_level_warning(start_worker):
    handle = jobs.add.enqueue(1, 2)
    worker = start_worker("--burst", "--log-level", "WARNING")
    assert worker.wait() == 0, worker.output()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    assert f"job #{handle.id}" not in worker.output()


def test_log_format_json_is_one_object_per_line_with_the_jobs_fields(start_worker):
    Counter.objects.create(key="j")
    ok = jobs.add.enqueue(1, 2)
    bad = endings.raises.using(max_attempts=1).enqueue("j")
    worker = start_worker("--burst", "--log-format", "json")
    assert worker.wait() == 0, worker.output()
    lines = [line for line in worker.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    by_job = {record["job_id"]: record for record in records if "job_id" in record}
    success, failure = by_job[ok.id], by_job[bad.id]
    assert success["level"] == "INFO"
    assert success["outcome"] == "success"
    assert (success["job_name"], success["job_queue"], success["job_attempt"]) == (
        "tests.testapp.jobs.add",
        "default",
        1,
    )
    assert isinstance(success["duration"], float)
    assert (failure["level"], failure["outcome"]) == ("ERROR", "error")
    assert "broken on purpose" in failure["message"]
    assert any(record["message"].startswith("worker ") for record in records)  # start / stop


def test_max_memory_recycles_a_worker_after_its_job_finishes(start_worker):
    hoarder = jobs.hoards_memory.using(priority=10).enqueue(200)
    later = jobs.add.enqueue(2, 2)
    worker = start_worker("--burst", "--concurrency", "1", "--max-memory", "150")
    assert worker.wait(timeout=60) == 0, worker.output()
    output = worker.output()
    assert "over --max-memory 150 MB" in output, output
    assert "re-executing this worker process to recycle it" in output
    assert hoarder.refresh().status == JobStatus.SUCCESSFUL  # it finished; it was not cut short
    assert hoarder.result == 1
    assert later.refresh().status == JobStatus.SUCCESSFUL
    # The re-executed process ran the later job, with the leak gone: its hoard is empty.
    assert output.count(" starting: pid=") == 2


def test_max_memory_recycles_each_child_of_a_supervisor(start_worker):
    hoarders = [jobs.hoards_memory.enqueue(200) for _ in range(2)]  # each outlasts a reading
    supervisor = start_worker("--processes", "1", "--concurrency", "1", "--max-memory", "150")
    wait_for(lambda: all(h.refresh().status == JobStatus.SUCCESSFUL for h in hoarders), timeout=60)
    wait_for(lambda: supervisor.output().count("recycled itself; restarting it") >= 2, timeout=30)
    # Each hoarder ran in a fresh child: neither saw the other's leak.
    assert [h.refresh().result for h in hoarders] == [1, 1]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait() == 0, supervisor.output()


def _touch(path: Path) -> None:
    """A new mtime, the same content: what the autoreloader sees as an edit."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(worker) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)


def test_reload_restarts_the_worker_on_a_code_change_after_its_job_finishes(start_worker, tmp_path):
    marker = tmp_path / "started"
    running = jobs.sleeper.enqueue(2, str(marker))
    worker = start_worker("--reload", "--shutdown-timeout", "20", new_session=True)
    try:
        wait_for(marker.exists, timeout=30)
        # A module the worker imported. Touched again each second: an edit made before
        # the reloader's first look at the files would be its baseline, not a change.
        wait_for(
            lambda: _touch(Path(jobs.__file__)) or "reloading the worker" in worker.output(),
            timeout=30,
            interval=1.0,
        )
        job = running.refresh().job
        assert (job.status, job.attempts, job.errors) == (JobStatus.SUCCESSFUL, 1, [])
        output = worker.output()
        assert "jobs.py changed: stopping the worker (its running jobs finish first)" in output
        wait_for(lambda: worker.output().count(" starting: pid=") == 2, timeout=30)
        after = jobs.add.enqueue(20, 22)  # the new process runs jobs
        wait_for(lambda: after.refresh().status == JobStatus.SUCCESSFUL, timeout=30)
        child = int(worker.output().split(" starting: pid=")[-1].split()[0])
        worker.signal(signal.SIGTERM)  # the parent only, as a process manager does
        assert worker.wait() == 0
        wait_for(lambda: "stopped after" in worker.output().split(" starting: pid=")[-1])
        wait_for(lambda: not _alive(child))  # no orphan left running
    finally:
        _kill_group(worker)


def test_reload_and_processes_do_not_go_together(start_worker):
    worker = start_worker("--reload", "--processes", "2")
    assert worker.wait() == 1
    assert "--reload runs one worker process: drop --processes." in worker.output()


def test_a_reloading_worker_whose_parent_is_killed_stops_instead_of_running_orphaned(
    start_worker,
):
    worker = start_worker("--reload", new_session=True)
    try:
        wait_for(lambda: " starting: pid=" in worker.output(), timeout=30)
        child = int(worker.output().split(" starting: pid=")[-1].split()[0])
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        wait_for(lambda: "the reloader's parent process is gone" in worker.output())
        wait_for(lambda: not _alive(child))
        assert "stopped after 0 jobs" in worker.output()
    finally:
        _kill_group(worker)
