"""Rate limits and queue-wide limits, enforced by the claim across every worker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_durable_jobs import JobStatus, enqueue_many, job
from django_durable_jobs.db import get_backend
from django_durable_jobs.exceptions import InvalidJobOptions
from django_durable_jobs.maintenance.pruner import prune_rate_starts
from django_durable_jobs.models import Job, RateStart
from django_durable_jobs.rates import RateLimit, parse_rate
from django_durable_jobs.registry import all_definitions
from django_durable_jobs.rows import Outcome
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def claim(limit: int = 100, queues: list[str] | None = None) -> list:
    return get_backend("default").claim(
        worker_id=uuid.uuid4(), queues=queues, limit=limit, lease_seconds=60
    )


def succeed(claimed: list) -> None:
    get_backend("default").record(
        [Outcome(job, JobStatus.SUCCESSFUL, result_json="null") for job in claimed]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/m", RateLimit(100, 60.0)),
        ("50/10s", RateLimit(50, 10.0)),
        ("20/s", RateLimit(20, 1.0)),
        ("1000/h", RateLimit(1000, 3600.0)),
        ("5/d", RateLimit(5, 86400.0)),
        ("3 / 2 minutes", RateLimit(3, 120.0)),
    ],
)
def test_rates_are_read_as_starts_per_period(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "100", "0/s", "5/0s", "5/8d", "5/fortnight", "-1/s", 5])
def test_a_bad_rate_is_refused_with_the_syntax(text):
    with pytest.raises(InvalidJobOptions, match=r"rate|starts|period"):
        job(rate_limit=text)(jobs.add.func)


def test_a_rate_key_needs_a_rate_limit():
    with pytest.raises(InvalidJobOptions, match="rate_key needs a rate limit"):
        job(rate_key="x:{n}")(jobs.add.func)
    with pytest.raises(InvalidJobOptions, match="rate_key needs a rate limit"):
        jobs.add.using(rate_key="x")


def test_a_missing_template_argument_is_refused_before_writing():
    with pytest.raises(InvalidJobOptions, match=r"rate_key .*account_id"):
        jobs.rated_per_account.enqueue(7)  # positional: the template names a keyword
    assert not Job.objects.exists()


def test_the_row_carries_its_gate():
    row = Job.objects.get(id=jobs.rated.enqueue(1).id)
    assert (row.rate_key, row.rate_limit, row.rate_period) == (f"job:{jobs.rated.name}", 3, 10.0)
    row = Job.objects.get(id=jobs.rated_per_account.enqueue(account_id=4).id)
    assert (row.rate_key, row.rate_limit, row.rate_period) == ("key:acct:4", 1, 10.0)
    row = Job.objects.get(id=jobs.add.enqueue(1, 1).id)
    assert (row.rate_key, row.rate_limit, row.rate_period) == (None, None, None)


def test_a_claim_starts_no_more_than_the_limit_and_logs_each_start():
    enqueue_many([jobs.rated.prepare(i) for i in range(10)])
    first = claim()
    assert len(first) == 3
    assert claim() == []  # the window is full: the others stay READY and take no slot
    succeed(first)
    assert claim() == []  # finishing does not free a permit: starts count, not running jobs
    assert Job.objects.filter(status=JobStatus.READY).count() == 7
    assert RateStart.objects.filter(key=f"job:{jobs.rated.name}").count() == 3


def test_the_window_slides():
    fast = job(name="tests.rated_fast", rate_limit="2/1s")(jobs.add.func)
    enqueue_many([fast.prepare(i, i) for i in range(5)])
    assert len(claim()) == 2
    assert claim() == []
    time.sleep(1.1)
    assert len(claim()) == 2


def test_each_key_has_its_own_window():
    enqueue_many(
        [jobs.rated_per_account.prepare(account_id=account) for account in (1, 1, 2, 2, 3)]
    )
    claimed = Job.objects.filter(id__in=[job.id for job in claim()])
    assert sorted(row.kwargs["account_id"] for row in claimed) == [1, 2, 3]
    assert claim() == []


def test_jobs_without_limits_are_not_held_back():
    enqueue_many([jobs.rated.prepare(i) for i in range(10)])
    plain = enqueue_many([jobs.add.prepare(i, i) for i in range(4)])
    claimed = claim(limit=20)
    assert len(claimed) == 3 + 4
    assert {handle.id for handle in plain} <= {job.id for job in claimed}


def test_a_retry_is_a_start_too():
    fast = job(name="tests.rated_retry", rate_limit="1/10s")(jobs.add.func)
    fast.enqueue(1, 1)
    (first,) = claim()
    get_backend("default").record([Outcome(first, JobStatus.READY, error={"message": "boom"})])
    assert Job.objects.get(id=first.id).status == JobStatus.READY
    assert claim() == []  # its first attempt used the window's only permit


@override_settings(DURABLE_JOBS={"QUEUES": {"emails": {"rate_limit": "2/10s"}, "default": None}})
def test_a_queue_rate_limit_counts_every_job_of_the_queue():
    enqueue_many([jobs.add.using(queue="emails").prepare(i, i) for i in range(5)])
    enqueue_many([jobs.add.prepare(i, i) for i in range(3)])
    claimed = claim()
    assert sorted(job.queue for job in claimed) == ["default"] * 3 + ["emails"] * 2
    assert claim() == []
    assert claim(queues=["emails"]) == []
    assert RateStart.objects.filter(key="queue:emails").count() == 2


@override_settings(DURABLE_JOBS={"QUEUES": {"reports": {"concurrency": 2}, "default": None}})
def test_queue_concurrency_caps_running_jobs_of_the_queue():
    enqueue_many([jobs.add.using(queue="reports").prepare(i, i) for i in range(5)])
    first = claim()
    assert len(first) == 2
    assert claim(queues=["reports"]) == []
    succeed(first[:1])
    assert len(claim()) == 1  # a slot freed
    assert claim() == []
    assert not RateStart.objects.exists()  # concurrency logs nothing


@override_settings(DURABLE_JOBS={"QUEUES": {"rated": {"rate_limit": "2/10s"}, "default": None}})
def test_a_job_limit_and_its_queue_limit_both_apply(tmp_path):
    enqueue_many([jobs.rated_start.prepare(str(tmp_path / "log"), i) for i in range(10)])
    assert len(claim()) == 2  # the queue's 2 per 10 s, inside the job's own 5 per 2 s
    assert RateStart.objects.filter(key="queue:rated").count() == 2
    assert RateStart.objects.filter(key=f"job:{jobs.rated_start.name}").count() == 2


def test_old_starts_are_pruned_in_batches():
    fast = job(name="tests.rated_prune", rate_limit="3/1s")(jobs.add.func)
    enqueue_many([fast.prepare(i, i) for i in range(3)])
    assert len(claim()) == 3
    jobs.rated.enqueue(1)
    assert len(claim()) == 1
    time.sleep(1.1)
    assert prune_rate_starts(get_backend("default")) is False
    assert list(RateStart.objects.values_list("key", flat=True)) == [f"job:{jobs.rated.name}"]


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"emails": {"rate_limit": "fast"}}, "is not a rate"),
        ({"emails": {"concurrency": 0}}, "at least 1"),
        ({"emails": {"burst": 3}}, "unknown options"),
        ({"emails": "20/s"}, "must be a dict"),
    ],
)
def test_bad_queue_options_are_check_errors(queues, message):
    with override_settings(DURABLE_JOBS={"QUEUES": {**queues, "default": None}}):
        errors = [e for e in run_checks() if e.id == "django_durable_jobs.E005"]
    assert errors
    assert message in errors[0].msg


def _windows(starts: list[float], period: float) -> int:
    """The most starts in any window of ``period`` seconds."""
    starts = sorted(starts)
    most, low = 0, 0
    for high, at in enumerate(starts):
        while at - starts[low] >= period:
            low += 1
        most = max(most, high - low + 1)
    return most


@pytest.mark.slow
def test_three_workers_together_keep_a_job_rate_limit(start_worker, tmp_path: Path):
    """3 processes x 4 threads, 20 jobs at 5 per 2 s: each window holds at most 5 starts."""
    log = tmp_path / "starts"
    enqueue_many([jobs.rated_start.prepare(str(log), i) for i in range(20)])
    began = time.monotonic()
    # Not --burst: a worker whose claims are all held back by the limit would exit.
    workers = [start_worker("--concurrency", "4", "--queues", "rated") for _ in range(3)]
    deadline = time.monotonic() + 60
    while Job.objects.filter(status=JobStatus.SUCCESSFUL).count() < 20:
        assert time.monotonic() < deadline, [w.output()[-3000:] for w in workers]
        time.sleep(0.1)
    elapsed = time.monotonic() - began
    starts = [float(line) for line in log.read_text().split()]
    assert len(starts) == 20
    # Measured by the jobs themselves, on this host's clock: a little slack for the
    # time between a claim (the database's clock) and the job's first line.
    assert _windows(starts, 2.0 - 0.15) <= 5
    assert elapsed >= 6.0  # 20 jobs at 5 per 2 s: the last 5 start 6 s after the first


@pytest.mark.slow
def test_three_workers_together_keep_a_queue_concurrency(start_worker, tmp_path: Path):
    log = tmp_path / "gated"
    # A dict of QUEUES also lists the allowed queues: every queue the test jobs use.
    used = {definition.resolved_queue() for definition in all_definitions().values()}
    settings = {"QUEUES": {**dict.fromkeys(used), "gated": {"concurrency": 2}}}
    enqueue_many([jobs.in_gated_queue.prepare(str(log), i, 0.1) for i in range(30)])
    workers = [
        start_worker("--concurrency", "4", "--queues", "gated", settings=settings) for _ in range(3)
    ]
    deadline = time.monotonic() + 60
    while Job.objects.filter(status=JobStatus.SUCCESSFUL).count() < 30:
        assert time.monotonic() < deadline, [w.output()[-3000:] for w in workers]
        time.sleep(0.1)
    running = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert len(running) == 30
    assert max(running) <= 2


def test_the_job_page_shows_the_gate_escaped():
    from tests.test_admin import client_for, detail_url, user

    handle = jobs.rated_per_account.using(rate_key="<b>acct</b>").enqueue(account_id=1)
    page = client_for(user(superuser=True)).get(detail_url(Job.objects.get(id=handle.id)))
    text = page.content.decode()
    assert "1 per 10 s" in text
    assert "key:&lt;b&gt;acct&lt;/b&gt;" in text


def test_an_idle_worker_wakes_for_the_next_permit_not_the_next_poll():
    from django_durable_jobs.worker import Worker

    fast = job(name="tests.rated_wake", rate_limit="2/1s")(jobs.add.func)
    enqueue_many([fast.prepare(i, i) for i in range(4)])
    began = time.monotonic()
    Worker(
        max_jobs=4,
        poll_interval=10.0,
        listen=False,
        install_signal_handlers=False,
        scheduler=False,
        concurrency=2,
    ).run()
    elapsed = time.monotonic() - began
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() == 4
    assert 0.9 < elapsed < 5.0  # the second pair's permits free 1 s after the first's


def test_run_pending_jobs_runs_rate_limited_jobs_unless_told_to_keep_the_limits():
    from django_durable_jobs.testing import run_pending_jobs

    enqueue_many([jobs.rated.prepare(i) for i in range(5)])
    assert run_pending_jobs(rate_limits=True).succeeded == 3  # the window holds 3
    assert Job.objects.filter(status=JobStatus.READY).count() == 2
    assert run_pending_jobs().succeeded == 2


def test_a_process_that_declares_no_rate_limit_claims_with_the_plain_statement(monkeypatch):
    """No job of this process has a rate limit: the claim has no rate parts at all.

    (A row can carry a limit only if some code declared it: during the deploy that adds
    the first one, workers on the old code run those jobs without it, as documented.)
    """
    from django_durable_jobs.db import mysql, postgresql, sqlite

    for module in (postgresql, sqlite, mysql):
        monkeypatch.setattr(module, "job_rate_limits_declared", lambda: False)
    plain = postgresql._claim_statement(filtered=False, gated=False, gates_rated=False, rated=False)
    assert "rate" not in plain
    enqueue_many([jobs.rated.prepare(i) for i in range(5)] + [jobs.add.prepare(1, 1)])
    assert len(claim()) == 6  # not enforced by a process that declares no limit
    assert not RateStart.objects.exists()
