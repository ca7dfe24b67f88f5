"""Multi-step runs, chained jobs and groups: the hand-off commits with the step's success."""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import timedelta

import pytest

from django_durable_jobs import JobStatus, group, operations
from django_durable_jobs.models import Job
from tests.conftest import wait_for
from tests.testapp import jobs
from tests.testapp.models import Counter
from tests.testapp.pipelines import OrderPipeline, ShortRun

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"LEASE_SECONDS": 2.0, "HEARTBEAT_INTERVAL": 0.5}


def counters(order_id: int) -> tuple[int, int, int]:
    def value(step: str) -> int:
        row = Counter.objects.filter(key=f"{step}-{order_id}").first()
        return row.value if row else 0

    return value("reserve"), value("charge"), value("confirm")


def create_counters(order_id: int) -> None:
    for step in ("reserve", "charge", "confirm"):
        Counter.objects.create(key=f"{step}-{order_id}")


def test_steps_are_jobs_named_after_the_class():
    names = [definition.name for definition in OrderPipeline._steps]
    assert names == ["tests.orders.reserve", "tests.orders.charge", "tests.orders.confirm"]
    assert ShortRun._steps[0].name == "tests.testapp.pipelines.ShortRun.first"


def test_a_run_passes_each_result_to_the_next_step(start_worker):
    create_counters(1)
    run = OrderPipeline.start(1)
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    steps = list(run.jobs())
    assert [job.name.rsplit(".", 1)[1] for job in steps] == ["reserve", "charge", "confirm"]
    assert all(job.status == JobStatus.SUCCESSFUL for job in steps)
    assert [job.parent_id for job in steps] == [None, steps[0].id, steps[1].id]
    assert [job.meta["step"] for job in steps] == [1, 2, 3]
    assert run.status == JobStatus.SUCCESSFUL
    assert run.result == "order 1 confirmed (R1)"
    assert counters(1) == (1, 1, 1)


def test_next_delay_and_done_shape_the_hand_off():
    from django_durable_jobs import Done, Next
    from django_durable_jobs.db.base import ClaimedJob

    run_id = uuid.uuid4()
    job = ClaimedJob(
        1, "tests.orders.charge", "default", 0, "[]", "{}", 1, 3, None, 1, "{}", run_id, 0
    )
    after_charge = OrderPipeline._steps[1].after
    stored, (follow,) = after_charge(job, Next({"order_id": 4}, delay=timedelta(minutes=5)))
    assert stored == {"order_id": 4}
    assert (follow.name, follow.delay, follow.parent_id, follow.run_id) == (
        "tests.orders.confirm",
        300.0,
        1,
        run_id,
    )
    assert json.loads(follow.args_json) == [{"order_id": 4}]
    stored, (follow,) = after_charge(job, {"order_id": 4})  # a plain value: next step now
    assert follow.delay is None
    assert after_charge(job, Done("early")) == ("early", [])
    assert OrderPipeline._steps[2].after(job, "last") == ("last", [])


def test_a_delayed_step_waits(start_worker):
    create_counters(2)
    run = OrderPipeline.start(2, delay=3600)
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0
    confirm = run.jobs().last()
    assert confirm.name == "tests.orders.confirm"
    assert confirm.status == JobStatus.READY
    assert (confirm.run_at - confirm.enqueued_at).total_seconds() > 3500
    assert counters(2) == (1, 1, 0)


def test_done_ends_the_run_early(start_worker):
    run = ShortRun.start(-3)
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0
    assert run.jobs().count() == 1
    assert (run.status, run.result) == (JobStatus.SUCCESSFUL, -30)
    run = ShortRun.start(4)
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0
    assert run.result == 5


def test_killed_during_step_two_resumes_without_repeating_step_one(start_worker, tmp_path):
    create_counters(5)
    run = OrderPipeline.start(5, hang=1)  # step 2's first attempt hangs
    env = {"DDJ_TEST_MARKER_DIR": str(tmp_path)}
    first = start_worker(settings=FAST, env=env)
    wait_for((tmp_path / "charging").exists, timeout=30)
    # Killed once its row shows it started (the start mark): the attempt counts.
    wait_for(lambda: run.jobs().filter(started_at__isnull=False, status="RUNNING").exists())
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = start_worker(settings=FAST, env=env)
    wait_for(lambda: run.status == JobStatus.SUCCESSFUL and run.jobs().count() == 3, timeout=60)
    assert counters(5) == (1, 2, 1)  # step 1 once, step 2 retried, step 3 once
    steps = list(run.jobs())
    assert steps[1].attempts == 2
    assert steps[1].errors[0]["outcome"] == "worker_lost"
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


def test_a_failed_step_is_retried_without_rerunning_earlier_steps(start_worker):
    create_counters(6)
    Counter.objects.create(key="decline-6")
    run = OrderPipeline.start(6)
    worker = start_worker()
    wait_for(lambda: run.status == JobStatus.FAILED, timeout=30)
    charge = run.jobs().last()
    assert (charge.name, charge.attempts) == ("tests.orders.charge", 3)
    Counter.objects.filter(key="decline-6").delete()  # the card works now
    assert operations.retry([charge.id]).done == 1
    wait_for(lambda: run.status == JobStatus.SUCCESSFUL and run.jobs().count() == 3, timeout=30)
    assert counters(6) == (1, 4, 1)  # reserve never again; charge 3 + 1; confirm once
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_then_runs_a_follow_up_after_success_only(start_worker):
    good = jobs.add.using(then=jobs.record_order.prepare("after-good")).enqueue(1, 2)
    bad = jobs.cancels_itself.using(then=jobs.record_order.prepare("after-bad")).enqueue("no")
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0
    (follow,) = Job.objects.filter(name=jobs.record_order.name)
    assert follow.parent_id == good.id
    assert follow.status == JobStatus.SUCCESSFUL
    assert follow.args == ["after-good"]
    assert Job.objects.get(id=bad.id).status == JobStatus.CANCELLED


def test_group_callback_runs_once_after_every_member_ended(start_worker):
    handle = group(
        [jobs.add.prepare(1, 1), jobs.cancels_itself.prepare("no"), jobs.add.prepare(2, 2)],
        then=jobs.collect.prepare("g1"),
    )
    callback = Job.objects.get(id=handle.callback.id)
    assert (callback.status, callback.waiting_for) == (JobStatus.READY, 3)
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0, worker.output()
    callback.refresh_from_db()
    assert callback.status == JobStatus.SUCCESSFUL
    assert callback.waiting_for == 0
    assert Counter.objects.get(key="collected-g1").value == 3
    assert handle.callback.refresh().result == ["CANCELLED", "SUCCESSFUL", "SUCCESSFUL"]


def test_group_callback_released_by_the_sweep_when_members_end_otherwise(start_worker):
    handle = group(
        [jobs.add.prepare(1, 1), jobs.add.prepare(2, 2)], then=jobs.collect.prepare("g2")
    )
    operations.cancel([member.id for member in handle.members])  # not through a worker
    assert Job.objects.get(id=handle.callback.id).waiting_for == 2
    worker = start_worker(settings=FAST)
    wait_for(lambda: handle.callback.refresh().status == JobStatus.SUCCESSFUL, timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
