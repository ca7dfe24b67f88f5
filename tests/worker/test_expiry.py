"""``expires=``: a job not started by its expiry time ends CANCELLED, "expired", and never runs.

On both databases: the claim never takes an expired job (a worker subprocess,
``run_pending_jobs()``, the claim itself), the maintenance service ends it with
its history entry, in bounded batches; a job that started in time runs to its
end, a retry due after the expiry does not start; delayed jobs, groups, unique
keys, an operator's retry, bad options, and what the admin and ``jobs show`` show.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models.functions import Now
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_durable_jobs import InvalidJobDefinition, InvalidJobOptions, JobStatus, group, job
from django_durable_jobs.conf import app_settings
from django_durable_jobs.db import get_backend
from django_durable_jobs.maintenance import expire_due_jobs, run_maintenance
from django_durable_jobs.models import FailedAttempts, Job
from django_durable_jobs.operations import retry
from django_durable_jobs.testing import run_pending_jobs
from django_durable_jobs.worker.pool import JobPool
from django_durable_jobs.worker.recorder import Recorder
from tests.conftest import wait_for
from tests.test_cli import jobs as jobs_command
from tests.testapp import expiring, jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"LEASE_SECONDS": 2.0, "HEARTBEAT_INTERVAL": 0.2}


def backend():
    return get_backend(app_settings.DATABASE)


def claim(limit: int = 10):
    return backend().claim(worker_id=uuid.uuid4(), queues=None, limit=limit, lease_seconds=30.0)


def counter(key: str) -> int:
    return Counter.objects.get(key=key).value


def assert_expired(job_id: int, *, entries: int = 1) -> Job:
    """CANCELLED, finished, the last history entry "expired" naming the expiry time."""
    row = Job.objects.get(id=job_id)
    assert row.status == JobStatus.CANCELLED
    assert row.finished_at is not None
    assert row.finished_at >= row.expires_at
    assert len(row.errors) == entries
    entry = row.errors[-1]
    assert entry["outcome"] == "expired"
    assert entry["message"].startswith("not started before it expired at ")
    named = parse_datetime(
        entry["message"].removeprefix("not started before it expired at ").split()[0]
    )
    assert named == row.expires_at
    return row


def expire_at_once(*handles) -> None:
    """Move these jobs' expiry into the past (the database clock), instead of waiting."""
    Job.objects.filter(id__in=[h.id for h in handles]).update(
        expires_at=Now() - timedelta(seconds=1)
    )


# -- the claim never starts an expired job; the maintenance service ends it -------------
def test_an_expired_job_is_never_claimed_and_ends_expired_with_its_history():
    Counter.objects.create(key="e")
    handle = expiring.runs.using(expires=0.3).enqueue("e")
    row = Job.objects.get(id=handle.id)
    # Computed at the insert, on the database clock: enqueued_at + 0.3 s.
    assert row.expires_at - row.enqueued_at == timedelta(seconds=0.3)
    time.sleep(0.4)
    assert claim() == []
    assert Job.objects.get(id=handle.id).status == JobStatus.READY  # until the service runs
    assert expire_due_jobs(backend()) == 1
    row = assert_expired(handle.id)
    assert (row.attempts, row.started_at, row.result) == (0, None, None)
    assert counter("e") == 0
    assert not FailedAttempts.objects.exists()  # an expiry is not a failure
    assert expire_due_jobs(backend()) == 0  # ended once


def test_a_worker_runs_the_fresh_job_and_expires_the_stale_one(start_worker):
    Counter.objects.create(key="fresh")
    Counter.objects.create(key="stale")
    stale = expiring.short_lived.enqueue("stale")  # @job(expires=0.3)
    fresh = expiring.short_lived.using(expires=60).enqueue("fresh")  # overrides @job's
    worker = start_worker("--poll-interval", "0.05", settings=FAST)
    try:
        wait_for(lambda: Job.objects.get(id=fresh.id).status == JobStatus.SUCCESSFUL)
    except BaseException:
        print(worker.output())
        raise
    # Its heartbeat's maintenance round ends the stale one.
    wait_for(lambda: Job.objects.get(id=stale.id).status == JobStatus.CANCELLED)
    worker.stop()
    assert_expired(stale.id)
    assert (counter("fresh"), counter("stale")) == (1, 0)


def test_run_pending_jobs_never_runs_an_expired_job():
    Counter.objects.create(key="e")
    handle = expiring.short_lived.enqueue("e")
    expire_at_once(handle)
    report = run_pending_jobs(with_scheduled=True)
    assert report.total == 0
    assert_expired(handle.id)
    assert counter("e") == 0


def test_a_job_that_started_in_time_runs_to_its_end():
    Counter.objects.create(key="e")
    handle = expiring.runs.using(expires=0.3).enqueue("e", 0.5)  # runs past its expiry
    assert run_pending_jobs().succeeded == 1
    row = Job.objects.get(id=handle.id)
    assert (row.status, row.result, row.errors) == (JobStatus.SUCCESSFUL, "ran", [])
    assert row.finished_at > row.expires_at
    assert expire_due_jobs(backend()) == 0  # a RUNNING or finished job is never touched


def test_a_running_job_past_its_expiry_is_left_to_finish():
    Counter.objects.create(key="e")
    handle = expiring.runs.using(expires=30).enqueue("e")
    (claimed,) = claim()
    expire_at_once(handle)
    assert expire_due_jobs(backend()) == 0
    assert Job.objects.get(id=handle.id).status == JobStatus.RUNNING
    assert claimed.expires_at is not None


def test_a_retry_due_after_the_expiry_does_not_start():
    Counter.objects.create(key="e")
    handle = expiring.fails_first.using(expires=0.4).enqueue("e")  # retry after 0.6 s
    report = run_pending_jobs()
    assert (report.retried, counter("e")) == (1, 1)
    time.sleep(0.7)
    assert run_pending_jobs().total == 0
    row = assert_expired(handle.id, entries=2)
    assert row.errors[0]["outcome"] == "error"
    assert row.attempts == 1
    assert counter("e") == 1  # the retry never ran
    # The first attempt's error counts as a failure; the expiry does not.
    assert sum(FailedAttempts.objects.values_list("failures", flat=True)) == 1


def test_a_job_claimed_in_time_but_still_waiting_for_a_thread_at_its_expiry_is_not_run():
    # A claimed job waits in its worker's local queue for a free thread; the
    # thread that takes it after its expiry records this ending instead of running it.
    Counter.objects.create(key="e")
    late = expiring.runs.using(expires=30).enqueue("e")
    in_time = expiring.runs.using(expires=30).enqueue("e")
    claimed = {job.id: job for job in claim()}
    assert claimed[late.id].expires_at == Job.objects.get(id=late.id).expires_at
    expire_at_once(late)
    claimed[late.id].expires_at = Job.objects.get(id=late.id).expires_at
    worker_id = uuid.uuid4()
    pool = JobPool(
        size=1,
        backend=backend(),
        worker_id=worker_id,
        recorder=Recorder(backend(), worker_id=worker_id),
        on_slot_freed=lambda: None,
    )
    pool.start()
    try:
        pool.submit([claimed[late.id], claimed[in_time.id]])
        wait_for(lambda: Job.objects.get(id=in_time.id).status == JobStatus.SUCCESSFUL)
        wait_for(lambda: not pool.held())
    finally:
        pool.stop()
    row = Job.objects.get(id=late.id)
    assert (row.status, row.attempts, row.started_at) == (JobStatus.CANCELLED, 0, None)
    assert row.errors[-1]["outcome"] == "expired"
    assert "waited for a free thread" in row.errors[-1]["message"]
    assert counter("e") == 1  # only the job in time ran
    assert not FailedAttempts.objects.exists()


# -- delayed jobs -------------------------------------------------------------------------
def test_a_delayed_job_runs_if_it_comes_due_before_its_expiry():
    Counter.objects.create(key="e")
    # Relative expiry counts from the enqueue, like the delay: a 0.3 s window.
    handle = expiring.runs.using(delay=0.3, expires=0.6).enqueue("e")
    row = Job.objects.get(id=handle.id)
    assert row.expires_at - row.run_at == timedelta(seconds=0.3)
    assert run_pending_jobs().total == 0  # not due yet
    time.sleep(0.35)
    assert run_pending_jobs().succeeded == 1
    assert counter("e") == 1


def test_a_delayed_job_not_started_in_its_window_expires():
    Counter.objects.create(key="e")
    start = timezone.now() + timedelta(seconds=0.2)
    handle = expiring.runs.using(run_at=start, expires=start + timedelta(seconds=0.2)).enqueue("e")
    assert Job.objects.get(id=handle.id).expires_at == start + timedelta(seconds=0.2)
    time.sleep(0.5)  # due, and past its expiry, with no worker running
    assert run_pending_jobs().total == 0
    assert_expired(handle.id)
    assert counter("e") == 0


# -- groups, chains and unique keys ---------------------------------------------------------
def test_an_expired_group_member_releases_its_callback_in_the_same_maintenance_round():
    for key in ("a", "b", "done"):
        Counter.objects.create(key=key)
    handles = group(
        [expiring.runs.using(expires=30).prepare("a"), expiring.runs.prepare("b")],
        then=expiring.callback.prepare("done"),
    )
    stale, _fresh = handles.members
    expire_at_once(stale)
    assert run_pending_jobs().succeeded == 2  # b, then the callback: a expired
    assert_expired(stale.id)
    assert counter("b") == 1
    assert counter("a") == 0
    # ...and the callback ran in the same call (released once a had expired).
    assert Job.objects.get(id=handles.callback.id).status == JobStatus.SUCCESSFUL
    assert counter("done") == 1


def test_the_worker_maintenance_round_expires_and_releases_together():
    Counter.objects.create(key="done")
    handles = group(
        [expiring.runs.using(expires=30).prepare("x")], then=expiring.callback.prepare("done")
    )
    expire_at_once(handles.members[0])
    assert Job.objects.get(id=handles.callback.id).waiting_for == 1
    run_maintenance(backend(), lease_seconds=30.0, heartbeat_interval=10.0)
    assert_expired(handles.members[0].id)
    assert Job.objects.get(id=handles.callback.id).waiting_for == 0  # claimable now


def test_an_expired_job_starts_no_follow_up():
    Counter.objects.create(key="first")
    Counter.objects.create(key="then")
    handle = expiring.runs.using(expires=30, then=expiring.runs.prepare("then")).enqueue("first")
    expire_at_once(handle)
    run_pending_jobs()
    assert_expired(handle.id)
    assert (counter("first"), counter("then")) == (0, 0)
    assert Job.objects.count() == 1


def test_a_chained_job_counts_its_relative_expiry_from_its_own_insert():
    Counter.objects.create(key="first")
    Counter.objects.create(key="then")
    follow = expiring.runs.using(expires=0.3).prepare("then")
    time.sleep(0.4)  # longer than the follow-up's expiry, before it is even written
    expiring.runs.using(then=follow).enqueue("first")
    assert run_pending_jobs().succeeded == 2
    assert counter("then") == 1


def test_an_expired_unique_job_frees_its_key():
    first = jobs.unique_by_args.using(expires=30).enqueue(7)
    assert jobs.unique_by_args.enqueue(7).id == first.id  # deduplicated while READY
    expire_at_once(first)
    expire_due_jobs(backend())
    assert Job.objects.get(id=first.id).unique_key is None
    again = jobs.unique_by_args.enqueue(7)
    assert again.id != first.id
    assert not again.deduplicated


# -- an operator's retry ----------------------------------------------------------------------
def test_an_operator_retry_clears_the_expiry_and_the_job_runs():
    Counter.objects.create(key="e")
    handle = expiring.runs.using(expires=30).enqueue("e")
    expire_at_once(handle)
    expire_due_jobs(backend())
    result = retry([handle.id], actor="alice")
    assert result.done == 1
    row = Job.objects.get(id=handle.id)
    assert (row.status, row.expires_at) == (JobStatus.READY, None)
    assert run_pending_jobs().succeeded == 1
    row = Job.objects.get(id=handle.id)
    assert (row.status, counter("e")) == (JobStatus.SUCCESSFUL, 1)
    assert row.errors[0]["outcome"] == "expired"  # the history keeps the expiry


# -- bounded batches ------------------------------------------------------------------------
def test_the_maintenance_service_works_in_bounded_batches_oldest_expiry_first():
    from django_durable_jobs import enqueue_many

    handles = enqueue_many(expiring.runs.using(expires=30).prepare(str(i)) for i in range(7))
    keep = expiring.runs.using(expires=30).enqueue("not yet")
    untouched = expiring.runs.enqueue("no expiry")
    for offset, handle in enumerate(handles):  # the last one expired first
        Job.objects.filter(id=handle.id).update(expires_at=Now() - timedelta(seconds=10 + offset))
    assert expire_due_jobs(backend(), batch_size=3, max_batches=2) == 6
    left = [h.id for h in handles if Job.objects.get(id=h.id).status == JobStatus.READY]
    assert left == [handles[0].id]  # the most recent expiry waits for the next round
    assert expire_due_jobs(backend(), batch_size=3, max_batches=2) == 1
    for handle in handles:
        assert_expired(handle.id)
    assert Job.objects.get(id=keep.id).status == JobStatus.READY
    assert Job.objects.get(id=untouched.id).status == JobStatus.READY


# -- bad options: refused where they are given, nothing written ---------------------------------
@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan, "30", True, 10**12])
def test_bad_relative_expiry_is_refused(value):
    with pytest.raises(InvalidJobOptions, match=r"expires="):
        expiring.runs.using(expires=value)
    with pytest.raises(InvalidJobOptions, match=r"expires="):
        job(expires=value)


def test_a_naive_datetime_is_refused():
    with pytest.raises(InvalidJobOptions, match="naive datetime"):
        expiring.runs.using(expires=datetime.now() + timedelta(hours=1))


def test_an_expiry_in_the_past_is_refused_at_enqueue():
    stale = expiring.runs.using(expires=timezone.now() + timedelta(seconds=0.1))
    time.sleep(0.2)
    with pytest.raises(InvalidJobOptions, match="in the past"):
        stale.enqueue("e")
    assert not Job.objects.exists()


# Instants as offsets from the test's own start (not from collection time, which
# can be minutes earlier in a long run).
_IN_A_MINUTE, _IN_HALF_AN_HOUR, _IN_AN_HOUR = "+1m", "+30m", "+1h"
_OFFSETS = {
    _IN_A_MINUTE: timedelta(minutes=1),
    _IN_HALF_AN_HOUR: timedelta(minutes=30),
    _IN_AN_HOUR: timedelta(hours=1),
}


@pytest.mark.parametrize(
    "options",
    [
        {"delay": 60, "expires": 30},
        {"delay": 60, "expires": 60},
        {"delay": timedelta(minutes=5), "expires": _IN_A_MINUTE},
        {"run_at": _IN_AN_HOUR, "expires": 60},
        {"run_at": _IN_AN_HOUR, "expires": _IN_HALF_AN_HOUR},
    ],
)
def test_an_expiry_not_after_the_start_is_refused_at_enqueue(options):
    now = timezone.now()
    options = {
        name: now + _OFFSETS[value] if isinstance(value, str) else value
        for name, value in options.items()
    }
    with pytest.raises(InvalidJobOptions, match="could never run"):
        expiring.runs.using(**options).enqueue("e")
    assert not Job.objects.exists()


def test_job_takes_seconds_only_a_datetime_goes_to_using():
    with pytest.raises(InvalidJobOptions, match=r"using\(expires=\.\.\.\)"):
        job(expires=timezone.now() + timedelta(hours=1))
    assert job(expires=timedelta(minutes=2))(_plain_function).expires == 120.0


def _plain_function() -> None:  # a module-level function for the decorator test above
    pass


def test_decorating_with_expires_checks_the_function_too():
    with pytest.raises(InvalidJobDefinition):
        job(expires=5)(lambda: None)


# -- what operators see ------------------------------------------------------------------------
def test_the_admin_page_and_jobs_show_name_the_expiry_and_the_reason():
    handle = expiring.runs.using(expires=30).enqueue("e")
    expire_at_once(handle)
    expire_due_jobs(backend())
    admin = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)
    page = client.get(reverse("admin:django_durable_jobs_job_change", args=[handle.id]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Expires at" in html
    assert "Expired before it started" in html
    assert "not started before it expired at" in html
    code, out, _ = jobs_command("show", str(handle.id))
    assert code == 0
    assert "expires:" in out
    assert "expired" in out
    assert "not started before it expired at" in out
