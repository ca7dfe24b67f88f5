"""What an operator sees of a running worker: its log lines and its recycling.

Real ``runworker`` subprocesses (issue 20, items 2 and 4).
"""

from __future__ import annotations

import json
import re
import signal

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
