"""``current_job().set_progress()``: throttled, fenced, flushed with the outcome, shown escaped."""

from __future__ import annotations

import json
import math

import pytest
from django.db import connection
from django.urls import reverse

from django_durable_jobs import InvalidProgress, JobContext, JobStatus, Progress
from django_durable_jobs.db import get_backend
from django_durable_jobs.handle import JobHandle
from django_durable_jobs.models import Job
from django_durable_jobs.progress import MESSAGE_CHARS, ProgressReporter, check_progress
from django_durable_jobs.rows import ClaimedJob
from django_durable_jobs.testing import immediate_mode, run_pending_jobs
from django_durable_jobs.worker import outcomes
from django_durable_jobs.worker.outcomes import Attempt
from django_durable_jobs.worker.recorder import Recorder
from tests.conftest import wait_for
from tests.factories import make_job
from tests.test_admin import XSS, client_for, detail_url, user
from tests.testapp import progress_jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:django_durable_jobs_job_changelist"
DASHBOARD = "admin:django_durable_jobs_job_dashboard"


def _stored(job_id: int) -> dict | None:
    return Job.objects.get(id=job_id).progress


def _release(key: str) -> None:
    Counter.objects.filter(key=key).update(value=1)


# -- a real worker ----------------------------------------------------------------------


def test_a_worker_writes_progress_while_the_job_runs_and_keeps_the_last_value(start_worker):
    Counter.objects.create(key="p")
    handle = progress_jobs.step_by_step.enqueue("p")
    worker = start_worker("--burst", "--poll-interval", "0.05")
    wait_for(lambda: (_stored(handle.id) or {}).get("done") == 3)
    progress = handle.refresh().progress
    assert handle.status == JobStatus.RUNNING
    assert (progress.done, progress.total, progress.message) == (3, 10, "third")
    assert (progress.percent, progress.attempt) == (30, 1)
    assert progress.at is not None
    _release("p")
    assert worker.wait() == 0, worker.output()
    # The final value came within a second of the first: throttled, so it was written
    # with the outcome, never lost.
    progress = handle.refresh().progress
    assert handle.status == JobStatus.SUCCESSFUL
    assert (progress.done, progress.total, progress.message) == (10, 10, "all done")


def test_a_burst_of_values_is_one_write_and_the_last_one_is_flushed(start_worker):
    Counter.objects.create(key="b")
    handle = progress_jobs.burst_then_wait.enqueue("b", 5000)
    worker = start_worker("--burst", "--poll-interval", "0.05")
    wait_for(lambda: _stored(handle.id) is not None)
    # 5,000 calls in a few milliseconds: the first was written, the rest wait for the
    # interval (or the outcome): while the job waits, the row still says 1.
    assert _stored(handle.id)["done"] == 1
    assert _stored(handle.id)["message"] == "row 1"
    _release("b")
    assert worker.wait() == 0, worker.output()
    stored = _stored(handle.id)
    assert (stored["done"], stored["total"], stored["message"]) == (5000, 5000, "row 5000")


def test_an_async_job_reports_without_blocking_its_loop(start_worker):
    Counter.objects.create(key="a")
    handle = progress_jobs.async_reports.enqueue("a")
    worker = start_worker("--burst", "--poll-interval", "0.05")
    # set_progress() from the loop: handed to the job's thread (a database call on the
    # loop's thread would raise SynchronousOnlyOperation and fail the job).
    wait_for(lambda: (_stored(handle.id) or {}).get("done") == 2)
    assert handle.refresh().status == JobStatus.RUNNING
    _release("a")
    assert worker.wait() == 0, worker.output()
    assert handle.refresh().status == JobStatus.SUCCESSFUL, handle.errors
    assert (handle.progress.done, handle.progress.total) == (4, 4)


def test_a_timed_out_job_keeps_its_last_value(start_worker):
    handle = progress_jobs.burst_then_hang.enqueue(300)
    worker = start_worker("--burst", "--poll-interval", "0.05")
    assert worker.wait() == 0, worker.output()
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.FAILED, (job.status, worker.output())
    assert job.last_error["outcome"] == "timeout"
    assert job.progress["done"] == 300


def test_an_atomic_job_writes_its_progress_with_its_success(start_worker):
    handle = progress_jobs.atomic_reports.enqueue("t", 50)
    worker = start_worker("--burst", "--poll-interval", "0.05")
    assert worker.wait() == 0, worker.output()
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.SUCCESSFUL
    assert (job.progress["done"], job.progress["total"]) == (50, 50)


# -- immediate mode and run_pending_jobs ------------------------------------------------


def test_run_pending_jobs_keeps_the_progress_of_a_failed_attempt():
    handle = progress_jobs.reports_then_fails.enqueue(7)
    report = run_pending_jobs(with_scheduled=True)
    assert report.failed == 1
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.FAILED
    # Kept, not cleared, across attempts: the last attempt's last value, and its number.
    assert job.progress["done"] == 7
    assert job.progress["total"] == 14
    assert job.progress["attempt"] == 2


def test_immediate_mode_and_django_tasks_read_the_progress():
    with immediate_mode():
        result = progress_jobs.task_reports.enqueue(3)
    assert result.return_value == 3
    assert (result.progress.done, result.progress.total, result.progress.message) == (3, 3, "task")
    fetched = progress_jobs.task_reports.get_result(result.id)
    assert fetched.progress == result.progress
    Job.objects.filter(id=int(result.id)).update(progress={"done": 1, "total": 2})
    fetched.refresh()
    assert fetched.progress.done == 1
    assert fetched.return_value == 3  # the rest of Django's result is still refreshed


def test_a_bad_value_fails_the_attempt_with_a_clear_message():
    handle = progress_jobs.bad_progress.enqueue(5, 3)
    run_pending_jobs()
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.FAILED
    assert job.last_error["exception_class"] == "django_durable_jobs.exceptions.InvalidProgress"
    assert "done cannot exceed total" in job.last_error["message"]
    assert job.progress is None


# -- throttling and fencing, on the real row ------------------------------------------


def _running_reporter(clock) -> tuple[Job, ProgressReporter]:
    job = make_job(JobStatus.RUNNING, lease_token=4)
    reporter = ProgressReporter(job.id, 4, 1, clock=clock)
    reporter.bind("default")
    return job, reporter


def test_writes_are_at_most_one_per_second_and_the_pending_value_is_kept():
    now = [100.0]
    job, reporter = _running_reporter(lambda: now[0])
    reporter.set(1, 10)
    assert _stored(job.id)["done"] == 1  # the first value: at once
    reporter.set(2, 10)
    now[0] += 0.9
    reporter.set(3, 10, "three")
    assert _stored(job.id)["done"] == 1  # within the second: not written...
    assert json.loads(reporter.unwritten())["done"] == 3  # ...but kept for the outcome
    now[0] += 0.1
    reporter.set(4, 10)
    assert _stored(job.id)["done"] == 4  # a second after the last write
    assert reporter.unwritten() is None


def test_a_stale_token_writes_nothing_and_stops_the_reporter():
    job = make_job(JobStatus.RUNNING, lease_token=5)  # taken over: the claim moved to 5
    stale = ProgressReporter(job.id, 4, 1, clock=lambda: 0.0)
    stale.bind("default")
    stale.set(1, 10)
    assert _stored(job.id) is None
    assert stale.unwritten() is None  # nothing left for the outcome write either
    backend = get_backend("default")
    assert backend.write_progress([(job.id, 4, '{"done": 9}')]) == set()
    assert backend.write_progress([(job.id, 5, '{"done": 9}')]) == {job.id}
    assert _stored(job.id) == {"done": 9}


def test_the_recorder_flushes_only_under_the_attempts_token():
    job = make_job(JobStatus.RUNNING, lease_token=5)
    recorder = Recorder(get_backend("default"))
    for token in (4, 5):
        claimed = ClaimedJob(
            id=job.id, name=job.name, queue="default", priority=0, args=[], kwargs={},
            attempt=1, max_attempts=1, timeout=None, lease_token=token, meta={},
            run_id=None, unique_states=0,
        )  # fmt: skip
        outcome = outcomes.succeeded(Attempt(claimed, None), "ok", [])
        outcome.progress = json.dumps({"done": token, "total": 5})
        written = recorder.record([outcome])
        assert (job.id in written.ids) is (token == 5)
        assert _stored(job.id) == (None if token == 4 else {"done": 5, "total": 5})
    assert Job.objects.get(id=job.id).status == JobStatus.SUCCESSFUL


def test_a_finished_job_takes_no_more_progress():
    job = make_job(JobStatus.SUCCESSFUL, lease_token=4)
    assert get_backend("default").write_progress([(job.id, 4, '{"done": 1}')]) == set()


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "total", "message", "match"),
    [
        (-1, 10, None, r"done cannot be negative"),
        (1, -1, None, r"total cannot be negative"),
        (11, 10, None, r"done cannot exceed total"),
        ("3", 10, None, r"done must be an int or a float"),
        (True, 10, None, r"done must be an int or a float"),
        (math.nan, 10, None, r"done must be an int or a float, finite"),
        (1, math.inf, None, r"total must be an int or a float, finite \(or None"),
        (1, 10, 42, r"the message must be a str or None"),
    ],
)
def test_bad_values_are_refused_with_the_fix(done, total, message, match):
    with pytest.raises(InvalidProgress, match=match):
        check_progress(done, total, message)
    context = JobContext(job_id=1, name="x", queue="default", attempt=1, max_attempts=1)
    with pytest.raises(InvalidProgress):
        context.set_progress(done, total, message)
    assert context.progress is None  # nothing kept


def test_long_messages_are_cut_and_totals_may_be_unknown():
    context = JobContext(job_id=1, name="x", queue="default", attempt=1, max_attempts=1)
    context.set_progress(12.5, None, "x" * 1000)  # a hand-made context: kept, never written
    progress = context.progress
    assert len(progress.message) == MESSAGE_CHARS
    assert progress.message.endswith("…")
    assert (progress.done, progress.total, progress.fraction, progress.percent) == (
        12.5,
        None,
        None,
        None,
    )
    assert Progress(done=0, total=0).fraction == 1.0


def test_unreadable_stored_values_read_as_no_progress():
    job = make_job(JobStatus.RUNNING, progress={"done": "lots"})
    assert JobHandle(job.id, job.name, "default").progress is None
    assert Progress.from_value(["not", "a", "dict"]) is None


# -- the admin ---------------------------------------------------------------------------


def _xss_job() -> Job:
    return make_job(
        JobStatus.RUNNING,
        progress={"done": 3, "total": 12, "message": XSS, "at": "2026-01-01T00:00:00+00:00"},
    )


def test_the_admin_shows_the_bar_everywhere_and_escapes_the_message():
    job = _xss_job()
    client = client_for(user("view_job", "view_job_payload"))
    bar = '<progress class="ddj-progress" max="12" value="3" title="3 / 12 (25%)">25%</progress>'
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    for url in (reverse(CHANGELIST), detail_url(job), reverse(DASHBOARD)):
        page = client.get(url).content.decode()
        assert bar in page, url
        assert XSS not in page, url
    # The message on the job's page and the dashboard; the list has the bar only (1280 px).
    for url in (detail_url(job), reverse(DASHBOARD)):
        assert escaped in client.get(url).content.decode(), url
    assert "alert" not in client.get(reverse(CHANGELIST)).content.decode()
    dashboard = client.get(reverse(DASHBOARD)).content.decode()
    assert 'id="running-jobs"' in dashboard
    assert f">#{job.id}</a>" in dashboard


def test_without_the_payload_permission_the_bar_shows_but_not_the_message():
    job = _xss_job()
    client = client_for(user("view_job"))
    for url in (reverse(CHANGELIST), detail_url(job), reverse(DASHBOARD)):
        page = client.get(url).content.decode()
        assert 'max="12" value="3"' in page, url
        assert "alert" not in page, url


def test_jobs_without_progress_show_no_bar():
    make_job(JobStatus.RUNNING)
    client = client_for(user("view_job", "view_job_payload"))
    for url in (reverse(CHANGELIST), reverse(DASHBOARD)):
        assert "<progress" not in client.get(url).content.decode(), url


def test_an_unknown_total_is_an_indeterminate_bar():
    job = make_job(JobStatus.RUNNING, progress={"done": 1234, "total": None})
    page = client_for(user("view_job")).get(detail_url(job)).content.decode()
    assert '<progress class="ddj-progress" title="1,234"></progress>' in page


def test_every_vendors_writer_stores_the_same_json():
    job = make_job(JobStatus.RUNNING, lease_token=2)
    value = {"done": 1.5, "total": 3, "message": "é", "at": None, "attempt": 1}
    get_backend("default").write_progress([(job.id, 2, json.dumps(value))])
    assert _stored(job.id) == value
    assert connection.vendor in ("sqlite", "postgresql", "mysql")
