"""Job middleware (``DURABLE_JOBS["MIDDLEWARE"]``): its order, what it sees, every ending.

The same chain runs on a worker, in ``run_pending_jobs()`` and in immediate mode
(one ``execute``); a worker subprocess run proves it is built once per process
and wraps sync, async and atomic jobs there too. Middleware and jobs are in
``tests/testapp/middleware.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from django_durable_jobs import Cancel, JobStatus, Retry, Snooze
from django_durable_jobs.checks import check_settings
from django_durable_jobs.exceptions import JobTimeout
from django_durable_jobs.models import Job
from django_durable_jobs.testing import immediate_mode, run_pending_jobs
from django_durable_jobs.worker import execution
from tests.testapp import endings, tasks
from tests.testapp import middleware as mw
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)


def paths(*names: str) -> list[str]:
    return [f"tests.testapp.middleware.{name}" for name in names]


@pytest.fixture
def use(settings):
    """``use("first", "second")``: these middleware, in this order, from now on."""
    mw.EVENTS.clear()
    mw.BUILDS.clear()

    def use(*names: str) -> None:
        settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MIDDLEWARE": paths(*names)}

    return use


def counter(key: str = "k") -> str:
    Counter.objects.create(key=key)
    return key


def value(key: str) -> int:
    return Counter.objects.get(key=key).value


TAGGED = ["first", "second", "tenant=acme", "builds=1", "job", "second:after", "first:after"]


@pytest.mark.parametrize("mode", ["run_pending_jobs", "immediate"])
def test_the_first_listed_is_the_outermost_and_each_sees_the_running_job(use, mode):
    use("first", "second", "tenant")
    key = counter()
    if mode == "immediate":
        with immediate_mode():
            handle = mw.reports.enqueue(key, tenant="acme")
    else:
        handle = mw.reports.enqueue(key, tenant="acme")
        assert run_pending_jobs().succeeded == 1
    assert Job.objects.get(id=handle.id).result == TAGGED
    assert [(name, when) for name, when, _ in mw.EVENTS] == [
        ("first", "before"),
        ("second", "before"),
        ("second", "after"),
        ("first", "after"),
    ]
    seen = mw.EVENTS[0][2]
    assert seen == {"current_job": True, "args": ("k",), "kwargs": {"tenant": "acme"}}
    assert mw.current_tenant() is None  # put back after the job


def test_an_async_job_runs_inside_the_same_middleware(use):
    use("first", "second", "tenant")
    key = counter()
    handle = mw.reports_async.enqueue(key, tenant="acme")
    assert run_pending_jobs().succeeded == 1
    # The trail is a contextvar (seen in the job's event loop); the tenant is
    # thread-local state of the executor thread, where sync_to_async (the ORM) runs.
    assert Job.objects.get(id=handle.id).result == TAGGED
    assert value(key) == 1


@pytest.mark.parametrize("definition", [mw.speaks, mw.speaks_async], ids=["sync", "async"])
def test_a_locale_middleware_reaches_sync_and_async_jobs(use, definition):
    use("locale")
    handle = definition.enqueue(language="fr")
    run_pending_jobs()
    assert Job.objects.get(id=handle.id).result == "fr"


def test_a_django_task_runs_inside_the_middleware(use):
    use("first")
    tasks.multiply.enqueue(6, 7)
    run_pending_jobs()
    assert Job.objects.get().result == 42
    assert [(when, detail) for _, when, detail in mw.EVENTS] == [
        ("before", {"current_job": True, "args": (6, 7), "kwargs": {}}),
        ("after", 42),
    ]


def test_a_takes_context_job_gets_the_context_the_middleware_does_not_see_in_args(use):
    use("first")
    key = counter()
    handle = mw.with_context.enqueue(key)
    run_pending_jobs()
    assert Job.objects.get(id=handle.id).result == ["first", "context=True", "job", "first:after"]
    assert mw.EVENTS[0][2]["args"] == ("k",)


def test_a_worker_builds_the_chain_once_and_runs_sync_async_and_atomic_jobs_in_it(
    start_worker,
):
    key = counter()
    Counter.objects.create(key="mw")
    sync = [mw.reports.enqueue(key, tenant="acme") for _ in range(8)]
    concurrent = mw.reports_async.enqueue(key, tenant="acme")
    atomic = mw.reports_atomic.enqueue(key, mw="write")
    worker = start_worker(
        "--burst",
        "--concurrency",
        "4",
        settings={"MIDDLEWARE": paths("first", "second", "tenant", "scripted")},
    )
    assert worker.wait() == 0, worker.output()
    rows = {row.id: row for row in Job.objects.all()}
    assert {row.status for row in rows.values()} == {JobStatus.SUCCESSFUL}
    # builds=1 in every job, from four threads: the factories ran once in that process.
    for handle in [*sync, concurrent]:
        assert rows[handle.id].result == TAGGED, rows[handle.id].result
    assert rows[atomic.id].result == ["first", "second", "job", "second:after", "first:after"]
    assert (value(key), value("mw")) == (10, 1)  # the atomic job's and its middleware's writes


@dataclasses.dataclass(frozen=True)
class Ending:
    mw: str
    status: str
    history: list[str]
    bumps: int
    fail: bool = False
    exception_class: str | None = None
    message: str | None = None
    result: Any = None


ENDINGS = {
    "middleware raises before the job: a failed attempt, retried, the job never ran": Ending(
        "raise_before",
        JobStatus.FAILED,
        ["error", "error"],
        bumps=0,
        exception_class="builtins.RuntimeError",
        message="middleware failed before the job",
    ),
    "middleware raises after the job: a failed attempt, retried, the job ran each time": Ending(
        "raise_after",
        JobStatus.FAILED,
        ["error", "error"],
        bumps=2,
        exception_class="builtins.RuntimeError",
        message="middleware failed after the job",
    ),
    "the job's exception goes through the middleware unchanged": Ending(
        "",
        JobStatus.FAILED,
        ["error", "error"],
        bumps=2,
        fail=True,
        exception_class="builtins.ValueError",
        message="the job failed",
    ),
    "middleware catches the job's exception and returns: a success, with its value": Ending(
        "swallow",
        JobStatus.SUCCESSFUL,
        [],
        bumps=1,
        fail=True,
        result="recovered from the job failed",
    ),
    "middleware raises Cancel: cancelled, the job never ran": Ending(
        "cancel_before", JobStatus.CANCELLED, ["cancelled"], bumps=0, message="tenant suspended"
    ),
    "middleware tries to change the arguments: they are read-only": Ending(
        "mutate",
        JobStatus.FAILED,
        ["error", "error"],
        bumps=0,
        exception_class="builtins.TypeError",
        message="does not support item assignment",
    ),
}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_each_ending_through_the_middleware(use, ending):
    use("first", "scripted")
    key = counter()
    handle = mw.reports.enqueue(key, mw=ending.mw, fail=ending.fail)
    run_pending_jobs(with_scheduled=True)
    job = Job.objects.get(id=handle.id)
    assert job.status == ending.status, job.errors
    assert [entry["outcome"] for entry in job.errors] == ending.history
    assert job.attempts == max(1, len(ending.history))
    if ending.history:
        if ending.exception_class:
            assert job.errors[-1]["exception_class"] == ending.exception_class
        assert ending.message in job.errors[-1]["message"]
    assert value(key) == ending.bumps
    if ending.status == JobStatus.SUCCESSFUL:
        assert job.result == ending.result
    if ending.fail and ending.status == JobStatus.FAILED:
        passed = [detail for name, _, detail in mw.EVENTS if name == "scripted"]
        assert [type(exc) for exc in passed] == [ValueError, ValueError]


def test_an_ending_in_immediate_mode_is_the_same(use):
    use("scripted")
    key = counter()
    with immediate_mode():
        handle = mw.reports.enqueue(key, mw="raise_after")
    job = Job.objects.get(id=handle.id)
    assert (job.status, job.attempts, value(key)) == (JobStatus.FAILED, 2, 2)
    assert job.errors[-1]["message"] == "middleware failed after the job"


CONTROL = {
    "Cancel": (endings.cancels_itself, Cancel, JobStatus.CANCELLED, ["cancelled"], 1),
    "Retry": (endings.asks_for_a_retry, Retry, JobStatus.SUCCESSFUL, ["retry"], 2),
    "Snooze": (endings.snoozes_once, Snooze, JobStatus.SUCCESSFUL, ["snoozed"], 1),
}


@pytest.mark.parametrize(
    ("definition", "exc_type", "status", "history", "attempts"), CONTROL.values(), ids=CONTROL
)
def test_the_jobs_control_exceptions_pass_through_unchanged(
    use, definition, exc_type, status, history, attempts
):
    use("first", "scripted")
    key = counter()
    handle = definition.enqueue(key)
    run_pending_jobs(with_scheduled=True)
    job = Job.objects.get(id=handle.id)
    assert (job.status, job.attempts) == (status, attempts)
    assert [entry["outcome"] for entry in job.errors] == history
    (passed,) = [detail for name, _, detail in mw.EVENTS if name == "scripted"]
    assert type(passed) is exc_type


def test_an_atomic_jobs_middleware_commits_and_rolls_back_with_it(use):
    use("scripted")
    key = counter()
    Counter.objects.create(key="mw")
    ok = mw.reports_atomic.enqueue(key, mw="write")
    run_pending_jobs()
    assert Job.objects.get(id=ok.id).status == JobStatus.SUCCESSFUL
    assert (value(key), value("mw")) == (1, 1)

    failing = mw.reports_atomic.enqueue(key, mw="write,raise_after")
    run_pending_jobs(with_scheduled=True)
    job = Job.objects.get(id=failing.id)
    assert (job.status, job.attempts) == (JobStatus.FAILED, 2)
    assert job.errors[-1]["message"] == "middleware failed after the job"
    assert (value(key), value("mw")) == (1, 1)  # both attempts' writes rolled back


def test_the_timeout_covers_the_middleware(use):
    use("scripted")
    key = counter()
    handle = mw.reports.using(timeout=0.5, max_attempts=1).enqueue(key, mw="dawdle")
    run_pending_jobs()
    job = Job.objects.get(id=handle.id)
    assert job.status == JobStatus.FAILED
    assert [entry["outcome"] for entry in job.errors] == ["timeout"]
    assert value(key) == 0  # the middleware never got to call the job


def test_a_jobs_timeout_goes_through_the_middleware(use):
    use("scripted")
    key = counter()
    handle = endings.times_out.enqueue(key)
    run_pending_jobs()
    job = Job.objects.get(id=handle.id)
    assert [entry["outcome"] for entry in job.errors] == ["timeout"]
    (passed,) = [detail for name, _, detail in mw.EVENTS if name == "scripted"]
    assert isinstance(passed, JobTimeout)


def test_factories_run_once_per_process_and_again_when_the_setting_changes(use):
    use("not_used", "first")
    key = counter()
    handles = [mw.reports.enqueue(key) for _ in range(3)]
    assert run_pending_jobs().succeeded == 3
    for handle in handles:
        result = Job.objects.get(id=handle.id).result
        assert result == ["first", "tenant=None", "builds=1", "job", "first:after"]
    assert mw.BUILDS == {"not_used": 1, "first": 1}  # MiddlewareNotUsed: left out

    use("second")
    again = mw.reports.enqueue(key)
    run_pending_jobs()
    assert Job.objects.get(id=again.id).result[0] == "second"
    assert mw.BUILDS["second"] == 1


def test_without_middleware_the_job_is_called_directly(settings):
    assert execution._middleware.handler() is None
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MIDDLEWARE": paths("first")}
    assert execution._middleware.handler() is not None
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MIDDLEWARE": []}
    assert execution._middleware.handler() is None


def test_a_factory_that_returns_an_async_function_fails_each_attempt_saying_why(use):
    use("first", "returns_async")
    key = counter()
    handle = mw.reports.enqueue(key)
    run_pending_jobs(with_scheduled=True)
    job = Job.objects.get(id=handle.id)
    assert (job.status, value(key)) == (JobStatus.FAILED, 0)
    message = job.errors[-1]["message"]
    assert "tests.testapp.middleware.returns_async" in message
    assert "plain (not async) callable" in message


# -- the system check -----------------------------------------------------------------
BAD = {
    "a string, not a list": ("tests.testapp.middleware.first", "must be a list"),
    "not a dotted path": ([mw.first], "not a dotted path"),
    "no such module": (["no_such_module.tenant"], "cannot be imported"),
    "no such name": (paths("nope"), "cannot be imported"),
    "not callable": (paths("NOT_CALLABLE"), "not a plain callable"),
    "an async factory": (paths("async_factory"), "not a plain callable"),
}


@pytest.mark.parametrize(("value", "fragment"), BAD.values(), ids=BAD)
def test_a_bad_middleware_setting_is_a_check_error(settings, value, fragment):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MIDDLEWARE": value}
    (message,) = [m for m in check_settings() if m.id == "django_durable_jobs.E012"]
    assert fragment in message.msg
    assert message.hint


def test_good_middleware_passes_the_check(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "MIDDLEWARE": paths("first", "tenant")}
    assert [m.id for m in check_settings()] == []


def test_a_worker_with_a_bad_middleware_path_does_not_start(start_worker):
    worker = start_worker("--burst", settings={"MIDDLEWARE": ["no_such_module.tenant"]})
    assert worker.wait() != 0
    assert "django_durable_jobs.E012" in worker.output()
