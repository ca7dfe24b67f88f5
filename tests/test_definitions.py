"""@job, the registry, .using() and early validation of every option."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_durable_jobs import (
    InvalidJobDefinition,
    InvalidJobOptions,
    JobDefinition,
    UnknownJob,
    UnknownQueue,
    get_job,
    job,
)
from django_durable_jobs.exceptions import DuplicateJobName
from django_durable_jobs.models import Job
from tests.testapp import jobs
from tests.testapp.jobs import add, renamed_function


def test_bare_decorator_registers_under_dotted_path():
    assert isinstance(add, JobDefinition)
    assert add.name == "tests.testapp.jobs.add"
    assert get_job("tests.testapp.jobs.add") is add
    assert add.__name__ == "add"
    assert add.__wrapped__ is add.func


def test_name_option_keeps_a_stable_name():
    assert renamed_function.name == "stable.name"
    assert get_job("stable.name") is renamed_function


def test_calling_the_definition_runs_the_function_directly():
    assert add(2, 3) == 5


def test_unknown_name_raises_with_a_hint():
    with pytest.raises(UnknownJob, match="renamed or removed"):
        get_job("tests.testapp.jobs.does_not_exist")


def test_unknown_name_imports_a_dotted_module_lazily():
    # tests.lazy_jobs is not an autodiscovered jobs module: importing by name finds it.
    definition = get_job("tests.lazy_jobs.lazy")
    assert definition.name == "tests.lazy_jobs.lazy"


def test_decorator_with_options():
    definition = jobs.always_fails
    assert definition.max_attempts == 3
    assert definition.retry.delay(1) == pytest.approx(0.2)


def test_nested_function_is_refused():
    def outer():
        @job
        def inner():
            pass

    with pytest.raises(InvalidJobDefinition, match="module-level"):
        outer()


def test_lambda_is_refused():
    with pytest.raises(InvalidJobDefinition, match="lambda"):
        job(lambda: None)


def test_method_is_refused():
    with pytest.raises(InvalidJobDefinition, match="module-level"):

        class Service:
            @job
            def run(self):
                pass


def test_non_function_is_refused():
    with pytest.raises(InvalidJobDefinition, match="function defined with def"):
        job(print)


def test_duplicate_name_is_refused():
    with pytest.raises(DuplicateJobName, match=r"already used by tests\.testapp\.jobs\.add"):
        job(name="tests.testapp.jobs.add")(jobs.renamed_function.func)


@pytest.mark.parametrize("priority", [-101, 101, 1.5, "1", True])
def test_priority_out_of_range(priority):
    with pytest.raises(InvalidJobOptions, match="priority"):
        job(priority=priority)
    with pytest.raises(InvalidJobOptions, match="priority"):
        add.using(priority=priority)


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"timeout": -1},
        {"timeout": "soon"},
        {"queue": "has space"},
        {"queue": ""},
        {"retry": "sometimes"},
    ],
)
def test_invalid_definition_options(options):
    with pytest.raises(InvalidJobOptions):
        job(**options)


def test_using_returns_a_copy():
    fast = add.using(priority=50, queue="fast", delay=dt.timedelta(seconds=5))
    assert fast.priority == 50
    assert fast.queue == "fast"
    assert fast.delay == 5.0
    assert add.priority == 0  # the original never changes
    assert fast.name == add.name


def test_using_run_at_and_delay_exclude_each_other():
    with pytest.raises(InvalidJobOptions, match="not both"):
        add.using(run_at=timezone.now(), delay=1)


def test_using_later_option_replaces_earlier():
    later = add.using(delay=10).using(run_at=timezone.now())
    assert later.delay is None
    assert later.run_at is not None


def test_naive_run_at_with_use_tz_is_refused():
    with pytest.raises(InvalidJobOptions, match="naive datetime"):
        add.using(run_at=dt.datetime(2030, 1, 1))


@pytest.mark.parametrize("delay", [-1, "5", None.__class__])
def test_invalid_delay(delay):
    with pytest.raises(InvalidJobOptions, match="delay"):
        add.using(delay=delay)


@pytest.mark.django_db
def test_unknown_queue_is_refused_when_queues_are_declared(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "QUEUES": ["default", "emails"]}
    add.using(queue="emails").enqueue(1, 2)
    with pytest.raises(UnknownQueue, match="unknown queue 'emial'"):
        add.using(queue="emial")
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_definition_queue_is_checked_against_settings_at_enqueue(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "QUEUES": ["other"]}
    with pytest.raises(UnknownQueue):
        add.enqueue(1, 2)  # the definition uses DEFAULT_QUEUE "default"
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_settings_defaults_are_read_at_enqueue_not_import(settings):
    settings.DURABLE_JOBS = {
        **settings.DURABLE_JOBS,
        "DEFAULT_QUEUE": "late",
        "DEFAULT_MAX_ATTEMPTS": 9,
        "DEFAULT_TIMEOUT": 12.5,
    }
    row = Job.objects.get(id=add.enqueue(1, 2).id)
    assert (row.queue, row.max_attempts, row.timeout) == ("late", 9, 12.5)


@pytest.mark.django_db
def test_enqueue_writes_the_options():
    run_at = timezone.now() + dt.timedelta(hours=1)
    handle = add.using(queue="q1", priority=-7, run_at=run_at, max_attempts=2).enqueue(1, 2)
    row = Job.objects.get(id=handle.id)
    assert row.name == "tests.testapp.jobs.add"
    assert (row.queue, row.priority, row.max_attempts, row.status) == ("q1", -7, 2, "READY")
    assert abs((row.run_at - run_at).total_seconds()) < 0.001
    assert row.attempts == 0


@pytest.mark.django_db
def test_delay_is_measured_from_enqueue():
    before = timezone.now()
    row = Job.objects.get(id=add.using(delay=60).enqueue(1, 2).id)
    assert 59 <= (row.run_at - before).total_seconds() <= 65
