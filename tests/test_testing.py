"""The helpers of django_durable_jobs.testing, on the real tables, from TestCase and pytest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import TestCase, TransactionTestCase

from django_durable_jobs import JobFailed, JobStatus
from django_durable_jobs.models import Job, QueueState
from django_durable_jobs.scheduler import UnknownSchedule, set_schedule_enabled
from django_durable_jobs.testing import (
    assert_enqueued,
    assert_not_enqueued,
    enqueued_jobs,
    fire_due_schedules,
    immediate_mode,
    run_pending_jobs,
)
from tests.testapp import jobs
from tests.testapp.models import Counter, Note


@pytest.mark.django_db
class TestAssertions:
    def test_assert_enqueued_matches_decoded_arguments_and_returns_rows(self):
        handle = jobs.echo.enqueue((1, 2), flag=True)
        (row,) = assert_enqueued(jobs.echo, args=[(1, 2)], kwargs={"flag": True})
        assert row.id == handle.id
        assert_enqueued(jobs.echo)  # any arguments
        assert_enqueued("tests.testapp.jobs.echo", kwargs={"flag": True})

    def test_assert_enqueued_failure_lists_what_was_there(self):
        jobs.add.enqueue(1, 2)
        with pytest.raises(AssertionError) as info:
            assert_enqueued(jobs.add, args=[1, 3])
        message = str(info.value)
        assert "Expected job tests.testapp.jobs.add args=[1, 3] (READY)" in message
        assert "args=[1, 2]" in message

    def test_assert_enqueued_with_nothing_enqueued(self):
        with pytest.raises(AssertionError, match="found no such job at all"):
            assert_enqueued(jobs.add)

    def test_count_queue_and_priority(self):
        jobs.add.enqueue(1, 1)
        jobs.add.using(queue="fast", priority=5).enqueue(1, 1)
        assert_enqueued(jobs.add, args=[1, 1], count=2)
        assert_enqueued(jobs.add, queue="fast", priority=5, count=1)
        with pytest.raises(AssertionError, match="Expected 3 x"):
            assert_enqueued(jobs.add, count=3)
        with pytest.raises(AssertionError):
            assert_enqueued(jobs.add, queue="fast", priority=0)

    def test_assert_not_enqueued(self):
        assert_not_enqueued(jobs.add)
        jobs.add.enqueue(1, 2)
        assert_not_enqueued(jobs.add, args=[2, 2])
        with pytest.raises(AssertionError, match=r"Expected no job tests\.testapp\.jobs\.add"):
            assert_not_enqueued(jobs.add)

    def test_enqueued_jobs_filters_ready_by_default(self):
        first = jobs.add.enqueue(1, 2)
        second = jobs.noop.enqueue()
        Job.objects.filter(id=second.id).update(status=JobStatus.SUCCESSFUL)
        assert [row.id for row in enqueued_jobs()] == [first.id]
        assert [row.id for row in enqueued_jobs(status=None)] == [first.id, second.id]
        assert list(enqueued_jobs(jobs.noop)) == []

    def test_a_rolled_back_enqueue_is_not_enqueued(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            jobs.add.enqueue(1, 2)
            raise RuntimeError
        assert_not_enqueued(jobs.add)


@pytest.mark.django_db
class TestRunPendingJobs:
    def test_runs_ready_jobs_through_the_real_path(self):
        handle = jobs.add.enqueue(2, 3)
        report = run_pending_jobs()
        assert (report.succeeded, report.failed, report.total) == (1, 0, 1)
        row = Job.objects.get(id=handle.id)
        assert row.status == JobStatus.SUCCESSFUL
        assert handle.refresh().result == 5
        assert row.attempts == 1
        assert row.lease_token == 1
        assert row.finished_at is not None

    def test_jobs_enqueued_by_jobs_run_too(self):
        Counter.objects.create(key="chain")
        jobs.chain.enqueue(3, "chain")
        report = run_pending_jobs()
        assert report.succeeded == 4
        assert Counter.objects.get(key="chain").value == 4

    def test_a_due_retry_waits_unless_with_scheduled(self):
        handle = jobs.always_fails.enqueue("nope")  # max_attempts=3, FixedDelay(0.2)
        report = run_pending_jobs()
        assert (report.retried, report.failed) == (1, 0)
        assert handle.refresh().status == JobStatus.READY
        report = run_pending_jobs(with_scheduled=True)
        assert (report.retried, report.failed) == (1, 1)
        job = handle.refresh().job
        assert job.status == JobStatus.FAILED
        assert [entry["message"] for entry in job.errors] == ["nope"] * 3

    def test_raise_errors_raises_job_failed_with_the_traceback(self):
        jobs.raises_unprintable.enqueue()
        with pytest.raises(JobFailed, match="Unprintable"):
            run_pending_jobs(raise_errors=True)

    def test_respects_queues_priority_pause_and_run_at(self):
        low = jobs.record_order.using(priority=-5).enqueue("low")
        high = jobs.record_order.using(priority=5).enqueue("high")
        other = jobs.add.using(queue="other").enqueue(1, 1)
        later = jobs.add.using(delay=3600).enqueue(1, 1)
        QueueState.objects.create(name="paused", paused=True)
        paused = jobs.add.using(queue="paused").enqueue(1, 1)
        run_pending_jobs(queues=["default"])
        order = [Job.objects.get(id=h.id).finished_at for h in (high, low)]
        assert order[0] <= order[1]
        for handle, status in [
            (low, JobStatus.SUCCESSFUL),
            (high, JobStatus.SUCCESSFUL),
            (other, JobStatus.READY),
            (later, JobStatus.READY),
            (paused, JobStatus.READY),
        ]:
            assert handle.refresh().status == status, handle
        run_pending_jobs()
        assert other.refresh().status == JobStatus.SUCCESSFUL
        assert paused.refresh().status == JobStatus.READY

    def test_max_jobs_bounds_a_job_that_enqueues_itself(self):
        Counter.objects.create(key="bounded")
        jobs.chain.enqueue(100, "bounded")
        report = run_pending_jobs(max_jobs=5)
        assert report.total == 5
        assert Counter.objects.get(key="bounded").value == 5


@pytest.mark.django_db
class TestImmediateModeWithPytest:
    def test_enqueue_outside_a_transaction_runs_at_once(self, durable_jobs_immediate):
        handle = jobs.add.enqueue(2, 2)
        assert handle.refresh().status == JobStatus.SUCCESSFUL
        assert handle.result == 4

    def test_inside_a_transaction_it_waits_for_the_commit(
        self, durable_jobs_immediate, django_capture_on_commit_callbacks
    ):
        Counter.objects.create(key="tx")
        with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
            handle = jobs.bump.enqueue("tx")
            assert handle.refresh().status == JobStatus.READY
            assert Counter.objects.get(key="tx").value == 0
        assert len(callbacks) == 1
        assert handle.refresh().status == JobStatus.SUCCESSFUL
        assert Counter.objects.get(key="tx").value == 1

    def test_retries_run_back_to_back_with_the_real_history(self, durable_jobs_immediate):
        Counter.objects.create(key="flaky")
        handle = jobs.flaky.enqueue(2, "flaky")  # fails twice, then succeeds
        job = handle.refresh().job
        assert job.status == JobStatus.SUCCESSFUL
        assert job.attempts == 3
        assert [entry["outcome"] for entry in job.errors] == ["error", "error"]
        assert handle.result == "succeeded on attempt 3"

    def test_failures_are_recorded_not_raised(self, durable_jobs_immediate):
        handle = jobs.always_fails.enqueue("bad")
        assert handle.refresh().status == JobStatus.FAILED
        assert handle.attempts == 3
        with pytest.raises(JobFailed, match="bad"):
            _ = handle.result

    def test_retry_and_cancel_behave_as_on_a_worker(self, durable_jobs_immediate):
        retried = jobs.asks_retry.enqueue(60.0)
        assert retried.refresh().status == JobStatus.SUCCESSFUL
        assert [entry["outcome"] for entry in retried.errors] == ["retry"]
        cancelled = jobs.cancels_itself.enqueue("no thanks")
        assert cancelled.refresh().status == JobStatus.CANCELLED

    def test_delayed_jobs_run_at_once_too(self, durable_jobs_immediate):
        handle = jobs.add.using(delay=3600).enqueue(1, 2)
        assert handle.refresh().status == JobStatus.SUCCESSFUL

    def test_the_durable_jobs_fixture_is_the_testing_module(self, durable_jobs):
        jobs.add.enqueue(5, 5)
        durable_jobs.assert_enqueued(jobs.add, args=[5, 5])
        assert durable_jobs.run_pending_jobs().succeeded == 1


class ImmediateModeInTestCase(TestCase):
    """A TestCase wraps each test in a transaction; immediate mode sees through it."""

    def test_runs_at_once_outside_the_tests_own_atomic_blocks(self):
        with immediate_mode():
            handle = jobs.add.enqueue(3, 4)
        assert handle.refresh().status == JobStatus.SUCCESSFUL

    def test_an_explicit_atomic_block_waits_for_its_commit(self):
        Counter.objects.create(key="tc")
        with immediate_mode(), self.captureOnCommitCallbacks(execute=True):
            with transaction.atomic():
                jobs.bump.enqueue("tc")
                Note.objects.create(text="written with the job")
            assert Counter.objects.get(key="tc").value == 0
        assert Counter.objects.get(key="tc").value == 1

    def test_assertions_and_drain_work_in_a_test_case(self):
        jobs.add.enqueue(1, 2)
        assert_enqueued(jobs.add, args=[1, 2])
        assert run_pending_jobs().succeeded == 1
        assert_not_enqueued(jobs.add)


class ImmediateModeInTransactionTestCase(TransactionTestCase):
    def test_a_rollback_runs_nothing(self):
        Counter.objects.create(key="rb")
        with immediate_mode():
            with pytest.raises(RuntimeError), transaction.atomic():
                jobs.bump.enqueue("rb")
                raise RuntimeError
            assert Job.objects.count() == 0
            with transaction.atomic():
                handle = jobs.bump.enqueue("rb")
            assert handle.refresh().status == JobStatus.SUCCESSFUL
        assert Counter.objects.get(key="rb").value == 1


# -- fire_due_schedules ------------------------------------------------------------------

PERIODIC = {
    "nightly": {
        "job": "tests.testapp.jobs.report",
        "schedule": "30 2 * * *",
        "timezone": "Europe/Paris",
        "kwargs": {"kind": "full"},
    },
    "probe": {"job": "tests.testapp.jobs.periodic_probe", "schedule": "every 15 minutes"},
    "off": {"job": "tests.testapp.jobs.periodic_probe", "schedule": "hourly", "enabled": False},
}


@pytest.fixture
def periodic(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "PERIODIC": PERIODIC}


@pytest.mark.django_db
@pytest.mark.usefixtures("periodic")
class TestFireDueSchedules:
    def test_enqueues_the_latest_tick_of_each_enabled_entry_once(self):
        at = datetime(2026, 7, 1, 0, 40, tzinfo=UTC)  # 02:40 in Paris (summer time)
        handles = fire_due_schedules(at=at)
        assert sorted(handle.name for handle in handles) == [
            "tests.testapp.jobs.periodic_probe",
            "tests.testapp.jobs.report",
        ]
        (nightly,) = assert_enqueued(jobs.report, kwargs={"kind": "full"})
        assert nightly.meta["fire_time"] == "2026-07-01T00:30:00+00:00"
        assert fire_due_schedules(at=at) == []  # the ledger has them: not again
        report = run_pending_jobs()
        assert report.succeeded == 2
        probe = Job.objects.get(name="tests.testapp.jobs.periodic_probe")
        assert probe.result["fire_time"] == "2026-07-01T00:30:00+00:00"  # the tick, not now

    def test_since_enqueues_every_tick_in_between_and_names_filters(self):
        start = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
        end = datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
        handles = fire_due_schedules(at=end, since=start, names=["probe"])
        assert len(handles) == 4  # 12:15, 12:30, 12:45, 13:00
        set_schedule_enabled("off", True)  # an operator's override counts
        assert len(fire_due_schedules(at=end, names=["off"])) == 1
        with pytest.raises(UnknownSchedule, match="'nope'"):
            fire_due_schedules(at=end, names=["nope"])
        with pytest.raises(ValueError, match="aware"):
            fire_due_schedules(at=datetime(2026, 7, 1, 13, 0))


def _run_in(mode: str, start) -> None:
    """Enqueue with ``start()``, then run everything in ``mode``."""
    if mode == "immediate":
        with immediate_mode():
            start()
    else:
        start()
        run_pending_jobs()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["run_pending_jobs", "immediate"])
class TestFollowUpsRunOutsideAWorker:
    """then= jobs, the next steps of a run and group callbacks: none is dropped."""

    def test_a_chained_job_runs(self, mode):
        Counter.objects.create(key="chained")
        _run_in(mode, lambda: jobs.add.using(then=jobs.bump.prepare("chained")).enqueue(1, 1))
        assert Counter.objects.get(key="chained").value == 1
        assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCESSFUL}

    def test_every_step_of_a_run_runs(self, mode):
        from tests.testapp.pipelines import OrderPipeline

        for name in ("reserve", "charge", "confirm"):
            Counter.objects.create(key=f"{name}-8")
        runs = []
        _run_in(mode, lambda: runs.append(OrderPipeline.start(8)))
        (run,) = runs
        assert run.jobs().count() == 3
        assert run.status == JobStatus.SUCCESSFUL
        assert run.result == "order 8 confirmed (R8)"

    def test_a_group_callback_runs_after_its_members(self, mode):
        from django_durable_jobs import group

        handles = []
        _run_in(
            mode,
            lambda: handles.append(
                group(
                    [jobs.add.prepare(1, 1), jobs.add.prepare(2, 2)], then=jobs.collect.prepare("t")
                )
            ),
        )
        (handle,) = handles
        assert handle.callback.refresh().status == JobStatus.SUCCESSFUL
        assert handle.callback.result == ["SUCCESSFUL", "SUCCESSFUL"]
