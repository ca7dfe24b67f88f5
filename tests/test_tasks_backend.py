"""DurableJobsBackend against the behaviour Django documents for django.tasks backends.

Runs on Django 6.x (django.tasks) and on Django 5.2 (the django-tasks backport).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_durable_jobs import InvalidJobArguments, JobStatus
from django_durable_jobs.models import Job
from django_durable_jobs.tasks_backend import (
    DurableJobsBackend,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
    task_finished,
    task_started,
)
from django_durable_jobs.testing import assert_enqueued, run_pending_jobs
from tests.testapp import jobs, tasks
from tests.testapp.models import Counter

try:
    from django.tasks import default_task_backend, task_backends
    from django.tasks.exceptions import TaskResultMismatch
except ImportError:
    from django_tasks import default_task_backend, task_backends
    from django_tasks.exceptions import TaskResultMismatch

pytestmark = pytest.mark.django_db

BACKEND = "django_durable_jobs.tasks_backend.DurableJobsBackend"


def test_the_backend_declares_what_it_supports():
    backend = task_backends["default"]
    assert isinstance(backend, DurableJobsBackend)
    assert backend.supports_defer is True
    assert backend.supports_async_task is True
    assert backend.supports_get_result is True
    assert backend.supports_priority is True
    assert default_task_backend.alias == "default"


def test_enqueue_writes_a_job_and_returns_a_ready_result():
    result = tasks.multiply.enqueue(6, 7)
    assert result.status == TaskResultStatus.READY
    assert result.id == str(int(result.id))
    assert result.enqueued_at is not None
    assert result.backend == "default"
    assert result.args == [6, 7]
    assert result.kwargs == {}
    assert result.errors == []
    assert result.attempts == 0
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    job = Job.objects.get(id=int(result.id))
    assert job.name == "tests.testapp.tasks.multiply"
    assert (job.queue, job.priority, job.max_attempts) == ("default", 0, 2)
    assert_enqueued(tasks.multiply, args=[6, 7])


def test_queue_priority_and_run_after_map_to_job_options():
    when = timezone.now() + timedelta(hours=1)
    result = tasks.send_email.using(run_after=when, priority=-3).enqueue("a@example.com")
    job = Job.objects.get(id=int(result.id))
    assert (job.queue, job.priority, job.run_at) == ("emails", -3, when)
    assert run_pending_jobs().total == 0  # deferred: not due yet
    assert result.task.run_after == when


def test_a_successful_run_is_read_back_with_get_result():
    result = tasks.multiply.enqueue(6, 7)
    run_pending_jobs()
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL
    assert fetched.return_value == 42
    assert fetched.is_finished
    assert fetched.attempts == 1
    assert len(fetched.worker_ids) == 1
    assert fetched.started_at <= fetched.finished_at
    assert fetched.last_attempted_at == fetched.started_at
    assert fetched.task.func is tasks.multiply.func
    assert tasks.multiply.get_result(result.id).return_value == 42
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42


def test_failures_are_retried_per_options_then_failed_with_errors():
    result = tasks.fails.enqueue("broken")
    report = run_pending_jobs(with_scheduled=True)
    assert (report.retried, report.failed) == (1, 1)  # OPTIONS max_attempts=2
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert [error.exception_class_path for error in result.errors] == ["builtins.ValueError"] * 2
    assert result.errors[0].exception_class is ValueError
    assert "broken" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


def test_task_context_carries_the_attempt_and_result():
    Counter.objects.create(key="ctx")
    Counter.objects.create(key="once")
    result = tasks.with_context.enqueue("ctx")
    retried = tasks.fails_once.enqueue("once")
    run_pending_jobs(with_scheduled=True)
    assert default_task_backend.get_result(result.id).return_value == {
        "attempt": 1,
        "id": result.id,
        "status": TaskResultStatus.RUNNING,
    }
    assert default_task_backend.get_result(retried.id).return_value == 2
    assert Counter.objects.get(key="once").value == 2


def test_async_tasks_run():
    result = tasks.async_multiply.enqueue(3, 5)
    run_pending_jobs()
    assert default_task_backend.get_result(result.id).return_value == 15


def test_a_cancelled_job_reads_as_failed():
    result = tasks.cancels.enqueue()
    run_pending_jobs()
    assert Job.objects.get(id=int(result.id)).status == JobStatus.CANCELLED
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[0].exception_class_path == "django_durable_jobs.exceptions.Cancel"


def test_invalid_tasks_and_arguments_raise_before_writing():
    with pytest.raises(InvalidTask, match="priority"):
        tasks.multiply.using(priority=101)
    with pytest.raises(InvalidTask, match="Queue 'other'"):
        tasks.multiply.using(queue_name="other")
    with pytest.raises(InvalidTask, match="aware"):
        tasks.multiply.using(run_after=timezone.now().replace(tzinfo=None))
    with pytest.raises(InvalidJobArguments, match="JSON values"):
        tasks.multiply.enqueue(timezone.now(), 2)
    with pytest.raises(TypeError):  # what Django's own backends raise for it
        tasks.multiply.enqueue({1}, 2)
    assert Job.objects.count() == 0


def test_get_result_of_unknown_ids_and_other_tasks():
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("123456789")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("not-a-number")
    plain_job = jobs.add.enqueue(1, 2)
    with pytest.raises(TaskResultDoesNotExist, match=r"not a django\.tasks Task"):
        default_task_backend.get_result(str(plain_job.id))
    other = tasks.send_email.enqueue("b@example.com")
    with pytest.raises(TaskResultMismatch):
        tasks.multiply.get_result(other.id)


def test_enqueue_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.multiply.enqueue(1, 2)
        raise RuntimeError
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_on_another_alias_the_id_arrives_with_the_commit():
    with transaction.atomic(using="other"):
        result = tasks.multiply.enqueue(2, 2)
        assert (result.id, result.enqueued_at) == ("", None)
    assert result.id == str(Job.objects.get().id)
    assert result.enqueued_at is not None


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result():
    async def view():
        result = await tasks.multiply.aenqueue(2, 21)
        fetched = await default_task_backend.aget_result(result.id)
        return result, fetched

    result, fetched = async_to_sync(view)()
    assert fetched.status == TaskResultStatus.READY
    assert fetched.args == [2, 21]
    run_pending_jobs()
    assert async_to_sync(tasks.multiply.aget_result)(result.id).return_value == 42


@pytest.mark.parametrize("sender", [None, DurableJobsBackend], ids=["any", "our-backend"])
def test_django_task_signals_are_sent(sender):
    seen = []

    def record(sender, task_result, signal, **kwargs):
        seen.append((signal, task_result.id, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(record, sender=sender)
    try:
        ok = tasks.multiply.enqueue(1, 1)
        bad = tasks.cancels.enqueue()
        run_pending_jobs()
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(record, sender=sender)
    assert (task_enqueued, ok.id, TaskResultStatus.READY) in seen
    assert (task_started, ok.id, TaskResultStatus.RUNNING) in seen
    assert (task_finished, ok.id, TaskResultStatus.SUCCESSFUL) in seen
    assert (task_finished, bad.id, TaskResultStatus.FAILED) in seen


def test_checks_report_bad_options_and_queues():
    backend = DurableJobsBackend(
        "bad",
        {"BACKEND": BACKEND, "QUEUES": ["ok", "not ok"], "OPTIONS": {"max_attempts": 0, "x": 1}},
    )
    ids = sorted(message.id for message in backend.check())
    assert ids == [
        "django_durable_jobs.E020",
        "django_durable_jobs.E020",
        "django_durable_jobs.E021",
    ]
    assert DurableJobsBackend("good", {"BACKEND": BACKEND, "OPTIONS": {"timeout": 5}}).check() == []


def test_options_set_job_options():
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": BACKEND,
                "OPTIONS": {"max_attempts": 7, "timeout": 30, "atomic": True},
            }
        }
    ):
        result = tasks.multiply.enqueue(1, 2)
        job = Job.objects.get(id=int(result.id))
        assert (job.max_attempts, job.timeout) == (7, 30.0)
        from django_durable_jobs import get_job

        assert get_job("tests.testapp.tasks.multiply").atomic is True
    tasks.multiply.enqueue(1, 2)  # the configured backend again: its options again
    assert get_job("tests.testapp.tasks.multiply").atomic is False


@pytest.mark.django_db(transaction=True)
def test_runworker_runs_django_tasks(start_worker):
    results = [tasks.multiply.enqueue(n, 2) for n in range(3)]
    email = tasks.send_email.enqueue("c@example.com")
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    assert [default_task_backend.get_result(r.id).return_value for r in results] == [0, 2, 4]
    assert default_task_backend.get_result(email.id).return_value == "sent to c@example.com"


def test_in_immediate_mode_the_result_shows_the_run():
    from django_durable_jobs.testing import immediate_mode

    with immediate_mode():
        result = tasks.multiply.enqueue(4, 5)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 20


def test_backends_of_other_threads_reuse_the_registered_definition():
    import threading

    from django_durable_jobs import get_job

    tasks.multiply.enqueue(1, 1)
    before = get_job("tests.testapp.tasks.multiply")
    thread = threading.Thread(target=lambda: task_backends["default"].validate_task(tasks.multiply))
    thread.start()
    thread.join()
    assert get_job("tests.testapp.tasks.multiply") is before


def test_the_returned_result_is_the_stored_one():
    result = tasks.multiply.enqueue(2, 3)
    stored = default_task_backend.get_result(result.id)
    assert result.enqueued_at == stored.enqueued_at
    assert result == stored
    before = result.enqueued_at
    result.refresh()
    assert result.enqueued_at == before


def test_an_unstorable_return_value_is_recorded_with_its_real_class():
    result = tasks.returns_a_set.enqueue()
    run_pending_jobs()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert [error.exception_class_path for error in result.errors] == ["builtins.TypeError"]


def test_task_finished_is_sent_after_the_write_inside_the_exception_handler():
    import sys

    seen = []

    def record(sender, task_result, **kwargs):
        row = Job.objects.get(id=int(task_result.id))
        seen.append((task_result.status, row.status, sys.exc_info()[0]))

    task_finished.connect(record)
    try:
        ok = tasks.multiply.enqueue(1, 1)
        bad = tasks.fails.using(priority=-1).enqueue("boom")
        run_pending_jobs(with_scheduled=True)
    finally:
        task_finished.disconnect(record)
    assert seen == [
        (TaskResultStatus.SUCCESSFUL, JobStatus.SUCCESSFUL, None),
        (TaskResultStatus.FAILED, JobStatus.FAILED, ValueError),
    ]
    assert ok.id != bad.id
