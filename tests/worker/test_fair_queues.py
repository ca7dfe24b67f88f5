"""Weighted queues (``--queues emails:3,reports:1``): shares by weight, none starved, none idle."""

from __future__ import annotations

import json
import random
import signal
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from django_durable_jobs import InvalidJobOptions, JobStatus, UnknownQueue, enqueue_many
from django_durable_jobs.models import Job, QueueState
from django_durable_jobs.models import Worker as WorkerRow
from django_durable_jobs.registry import all_definitions
from django_durable_jobs.worker import Worker
from django_durable_jobs.worker.fairness import FairClaimer, parse_queues
from tests.conftest import wait_for
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def fill(queue: str, count: int, job=jobs.add) -> None:
    definition = job.using(queue=queue)
    args = (1, 1) if job is jobs.add else (0.2,)
    for start in range(0, count, 500):
        enqueue_many([definition.prepare(*args) for _ in range(min(500, count - start))])


def run_in_process(queues, concurrency: int = 4) -> Worker:
    worker = Worker(
        queues=queues,
        concurrency=concurrency,
        burst=True,
        install_signal_handlers=False,
        scheduler=False,
        poll_interval=0.05,
    )
    assert worker.run() == 0
    return worker


def start_order() -> list[str]:
    """The queue of each job, in the order the jobs started."""
    rows = Job.objects.order_by("started_at", "id").values_list("queue", "status")
    assert {status for _, status in rows} == {JobStatus.SUCCESSFUL}
    return [queue for queue, _ in rows]


# -- a busy queue does not starve another ------------------------------------------------


def test_a_busy_queue_cannot_starve_a_weighted_one():
    fill("busy", 2000)  # the older jobs: by priority then age, all of them would go first
    fill("small", 50)
    run_in_process({"busy": 3, "small": 1})
    order = start_order()
    last_small = max(i for i, queue in enumerate(order) if queue == "small")
    # Ideally the 50th small job is the 200th start (one in four); the busy queue still
    # has some 1,850 jobs to go then.
    assert last_small < 300, last_small
    head = order[:200]
    assert 0.18 <= head.count("small") / len(head) <= 0.32, head.count("small")


def test_without_weights_the_order_is_still_priority_then_age_across_queues():
    """The unweighted claim is unchanged: the busy queue's older jobs all go first."""
    fill("busy", 300)
    fill("small", 20)
    worker = run_in_process(["small", "busy"])
    assert worker.fair is None
    assert worker.queue_weights is None
    order = start_order()
    first_small = order.index("small")
    assert first_small >= 300 - 8, first_small  # only the last claim's jobs may interleave


def test_equal_weights_take_turns():
    fill("a", 400)
    fill("b", 400)
    run_in_process(["a:1", "b:1"])
    head = start_order()[:400]
    assert 0.4 <= head.count("a") / len(head) <= 0.6


# -- work-conserving ------------------------------------------------------------------------


def peak_overlap(seconds: float) -> int:
    """Most jobs running at once, for jobs that each run ``seconds``.

    (From ``started_at``: ``finished_at`` is when the outcome was written, in a batch.)
    """
    starts = list(
        Job.objects.filter(status=JobStatus.SUCCESSFUL).values_list("started_at", flat=True)
    )
    window = timedelta(seconds=seconds * 0.9)
    return max(sum(1 for other in starts if start <= other < start + window) for start in starts)


@pytest.mark.parametrize("why", ["empty", "paused"])
def test_a_queue_with_nothing_to_give_leaves_no_thread_idle(why):
    """The big weight is on a queue that has nothing claimable: the busy queue gets every slot."""
    if why == "paused":
        QueueState.objects.create(name="quiet", paused=True)
        fill("quiet", 10)
    fill("busy", 12, job=jobs.sleeper)  # 0.2 s each
    run_in_process({"quiet": 3, "busy": 1}, concurrency=4)
    assert Job.objects.filter(queue="busy", status=JobStatus.SUCCESSFUL).count() == 12
    # One slot in four would be busy's share; work-conserving, all four threads run it.
    assert peak_overlap(0.2) == 4
    if why == "paused":
        assert Job.objects.filter(queue="quiet", status=JobStatus.READY).count() == 10


# -- the claimer's arithmetic (no database: the shares themselves) ---------------------------


def always(queue: str, limit: int) -> list[str]:
    return [queue] * limit


@pytest.mark.parametrize(
    "weights", [{"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 5}, {"w": 7, "x": 2, "y": 1, "z": 1}]
)
def test_shares_stay_within_the_documented_bound_for_any_round_size(weights):
    claimer = FairClaimer(weights)
    total, count = sum(weights.values()), len(weights)
    given = dict.fromkeys(weights, 0)
    picks: list[str] = []
    rounds = random.Random(19)
    for _ in range(3000):
        claimed, failure = claimer.claim(always, rounds.choice([1, 1, 2, 3, 8, 64]))
        assert failure is None
        for queue in claimed:
            given[queue] += 1
            picks.append(queue)
            for name, weight in weights.items():
                exact = len(picks) * weight / total
                assert exact - count * weight / total <= given[name] <= exact + 1
    # Over any stretch, not only from the start: within Q + 1 jobs of the exact share.
    for start in range(0, len(picks), 997):
        seen = dict.fromkeys(weights, 0)
        for n, queue in enumerate(picks[start : start + 3000], 1):
            seen[queue] += 1
            for name, weight in weights.items():
                assert abs(seen[name] - n * weight / total) <= count + 1


def test_rounds_of_one_slot_are_fair_too():
    claimer = FairClaimer({"emails": 3, "reports": 1})
    picks = [claimer.claim(always, 1)[0][0] for _ in range(8)]
    assert picks == ["emails", "reports", "emails", "emails"] * 2


def test_an_idle_queue_saves_no_credit_for_later():
    ready = {"a": 1000, "b": 0}

    def claim(queue: str, limit: int) -> list[str]:
        taken = min(limit, ready[queue])
        ready[queue] -= taken
        return [queue] * taken

    claimer = FairClaimer({"a": 1, "b": 1})
    for _ in range(50):
        claimed, _ = claimer.claim(claim, 8)
        assert claimed == ["a"] * 8  # b has nothing: a takes every slot
    ready["b"] = 1000
    claimed, _ = claimer.claim(claim, 8)
    assert claimed.count("b") == 4  # its share again, not a 400-job catch-up burst


def test_a_failing_claim_returns_the_jobs_claimed_before_it():
    def claim(queue: str, limit: int) -> list[str]:
        if queue == "b":
            raise ConnectionError("gone")
        return [queue] * limit

    claimer = FairClaimer({"a": 1, "b": 1})
    claimed, failure = claimer.claim(claim, 4)
    assert claimed == ["a", "a"]
    assert isinstance(failure, ConnectionError)


# -- options --------------------------------------------------------------------------------


def test_the_forms_of_the_option():
    assert parse_queues(None).names is None
    assert parse_queues("b,a,a").names == ["a", "b"]  # unweighted: merged, as before
    assert parse_queues("b,a").weights is None
    selection = parse_queues("emails:3,reports")
    assert selection.weights == {"emails": 3, "reports": 1}
    assert selection.fair
    assert parse_queues(["emails:3", "reports:1"]) == selection.__class__(
        ["emails", "reports"], {"emails": 3, "reports": 1}
    )
    assert parse_queues({"emails": 3, "reports": 1}).describe() == "emails:3,reports:1"
    # A colon followed by something not numeric is part of the name; a name that ends in
    # :<number> takes an explicit weight.
    assert parse_queues("api:v2").names == ["api:v2"]
    assert parse_queues("tenant:1:2,x").weights == {"tenant:1": 2, "x": 1}
    assert not parse_queues("emails:3").fair  # one queue: the plain claim


def test_a_weighted_worker_may_claim_ahead_per_queue(settings):
    options = {"install_signal_handlers": False, "scheduler": False, "concurrency": 2}
    assert Worker(queues=["a", "b"], **options).prefetch == 64
    assert Worker(queues=["a:1", "b:1", "c:1"], **options).prefetch == 3 * 64
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "PREFETCH": 10}
    assert Worker(queues=["a:1", "b:1", "c:1"], **options).prefetch == 10


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("emails:0", "invalid weight 0"),
        ("emails:-2", "invalid weight -2"),
        ("emails:1.5", "invalid weight '1.5'"),
        ("emails:", "invalid weight ''"),
        ("emails:1001", "invalid weight 1001"),
        ("emails:3,emails:1", "'emails' is listed twice"),
        ("emails:3,reports,emails", "'emails' is listed twice"),
        ({"emails": True}, "invalid weight True"),
        ({"emails": "3"}, "invalid weight '3'"),
        (["emails:2", 7], "each entry must be a queue name"),
        ("bad queue:2", "not a valid queue name"),
    ],
)
def test_bad_weights_are_refused_before_the_worker_starts(queues, message):
    with pytest.raises(InvalidJobOptions, match=message):
        Worker(queues=queues, install_signal_handlers=False, scheduler=False)
    assert not WorkerRow.objects.exists()


def test_a_queue_the_settings_do_not_allow_is_refused(settings):
    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, "QUEUES": ["default", "emails"]}
    with pytest.raises(UnknownQueue, match=r"unknown queue 'nope'.*Add it there"):
        Worker(queues={"emails": 3, "nope": 1}, install_signal_handlers=False, scheduler=False)


def test_runworker_names_the_fix(start_worker):
    worker = start_worker("--queues", "emails:3,reports:0")
    assert worker.wait() == 1
    output = worker.output()
    assert "--queues emails:3,reports:0: queue 'reports' has an invalid weight 0" in output
    assert "whole number from 1 to 1000" in output
    assert not WorkerRow.objects.exists()
    # Every queue the test jobs use is allowed (the system checks demand it), not "nope".
    used = sorted({"emails"} | {d.resolved_queue() for d in all_definitions().values()})
    unknown = start_worker("--queues", "emails:3,nope", settings={"QUEUES": used})
    assert unknown.wait() == 1
    assert "unknown queue 'nope'" in unknown.output()


# -- where the weights show -----------------------------------------------------------------


def test_weights_show_in_the_log_the_worker_row_stats_and_admin(start_worker):
    from django.contrib.auth.models import User

    handle = jobs.add.using(queue="reports").enqueue(2, 3)
    worker = start_worker("--queues", "emails:3,reports:1", "--poll-interval", "0.05")
    wait_for(lambda: Job.objects.get(id=handle.id).status == JobStatus.SUCCESSFUL)
    row = WorkerRow.objects.get()
    assert row.queues == ["emails", "reports"]
    assert row.queue_weights == {"emails": 3, "reports": 1}
    assert row.queue_labels == ["emails:3", "reports:1"]

    out = StringIO()
    call_command("jobs", "stats", stdout=out)
    assert "emails:3,reports:1" in out.getvalue()
    out = StringIO()
    call_command("jobs", "stats", "--json", stdout=out)
    (listed,) = json.loads(out.getvalue())["workers"]
    assert listed["queue_weights"] == {"emails": 3, "reports": 1}

    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    page = client.get(reverse("admin:django_durable_jobs_worker_changelist")).content.decode()
    assert "emails:3, reports:1" in page
    dashboard = client.get(reverse("admin:django_durable_jobs_job_dashboard"))
    assert "<code>emails:3</code>" in dashboard.content.decode()

    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert "queues=emails:3,reports:1 concurrency=" in worker.output()


def test_supervised_children_get_the_weights(start_worker):
    supervisor = start_worker("--processes", "2", "--queues", "emails:3,reports:1")
    rows = wait_for(lambda: len(WorkerRow.objects.all()) == 2 and list(WorkerRow.objects.all()))
    assert all(row.queue_weights == {"emails": 3, "reports": 1} for row in rows)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait() == 0
