"""The scheduler, one pass at a time on a fake clock: ticks, policies, DST, overlap, overrides."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError

from django_durable_jobs import JobStatus
from django_durable_jobs.ledger import TICK_RETENTION, prune_ticks
from django_durable_jobs.models import Job, ScheduleTick
from django_durable_jobs.periodic import get_entries
from django_durable_jobs.scheduler import (
    ScheduleBusy,
    Scheduler,
    run_schedule_now,
    set_schedule_enabled,
)
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.django_db

PROBE = "tests.testapp.jobs.periodic_probe"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def scheduler(periodic: dict, clock: FakeClock) -> Scheduler:
    return Scheduler(get_entries(periodic), clock=clock)


def ledger(name: str) -> list[tuple[datetime, int | None]]:
    rows = ScheduleTick.objects.filter(schedule=name).order_by("fire_time")
    return [(row.fire_time, row.job_id) for row in rows]


def enqueued(name: str) -> list[datetime]:
    """Fire times of the jobs enqueued for ``name``, from the jobs' own meta."""
    jobs = Job.objects.filter(meta__schedule=name).order_by("id")
    return [datetime.fromisoformat(job.meta["fire_time"]) for job in jobs]


def run_until(sched: Scheduler, clock: FakeClock, end: datetime) -> None:
    """Drive a scheduler as its loop would: a pass, then sleep as long as it asks."""
    while clock.now() < end:
        seconds = sched.run_pending()
        clock.set(min(clock.now() + timedelta(seconds=max(seconds, 0.001)), end))
    sched.run_pending()


def test_each_tick_is_enqueued_once_with_its_fire_time():
    clock = FakeClock(utc(2026, 5, 4, 10, 0, 30))
    sched = scheduler({"probe": {"job": PROBE, "schedule": "every_minute"}}, clock)
    assert sched.run_pending() == pytest.approx(30.0)  # a new entry starts with the next tick
    assert enqueued("probe") == []
    clock.set(utc(2026, 5, 4, 10, 1))
    assert sched.run_pending() == pytest.approx(60.0)
    sched.run_pending()  # again at the same instant: nothing more
    clock.set(utc(2026, 5, 4, 10, 1, 59))
    sched.run_pending()
    clock.set(utc(2026, 5, 4, 10, 2, 0, 300))
    sched.run_pending()
    assert enqueued("probe") == [utc(2026, 5, 4, 10, 1), utc(2026, 5, 4, 10, 2)]
    jobs = list(Job.objects.order_by("id"))
    assert [job.meta for job in jobs] == [
        {"schedule": "probe", "fire_time": "2026-05-04T10:01:00+00:00"},
        {"schedule": "probe", "fire_time": "2026-05-04T10:02:00+00:00"},
    ]
    assert ledger("probe") == [
        (utc(2026, 5, 4, 10, 1), jobs[0].id),
        (utc(2026, 5, 4, 10, 2), jobs[1].id),
    ]
    assert jobs[0].name == PROBE
    assert jobs[0].status == JobStatus.READY


def test_entry_options_reach_the_job():
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 59))
    sched = scheduler(
        {
            "report": {
                "job": "tests.testapp.jobs.report",
                "schedule": "hourly",
                "args": ["short"],
                "kwargs": {"limit": 3},
                "queue": "reports",
                "priority": 7,
            }
        },
        clock,
    )
    sched.run_pending()
    clock.set(utc(2026, 5, 4, 10))
    sched.run_pending()
    (job,) = Job.objects.all()
    assert (job.queue, job.priority, job.args, job.kwargs) == (
        "reports",
        7,
        ["short"],
        {"limit": 3},
    )


# -- missed ticks after two hours down ----------------------------------------------------
def two_hours_down(policy: dict) -> tuple[Scheduler, FakeClock]:
    """An every-minute entry ran at 08:00; every scheduler was down until 10:00:30."""
    periodic = {"minutely": {"job": PROBE, "schedule": "every_minute", **policy}}
    clock = FakeClock(utc(2026, 5, 4, 7, 59, 30))
    first = scheduler(periodic, clock)
    first.run_pending()
    clock.set(utc(2026, 5, 4, 8))
    first.run_pending()
    assert enqueued("minutely") == [utc(2026, 5, 4, 8)]
    clock.set(utc(2026, 5, 4, 10, 0, 30))
    return scheduler(periodic, clock), clock


def test_missed_latest_enqueues_only_the_most_recent_tick(caplog):
    sched, clock = two_hours_down({})  # "latest" is the default
    with caplog.at_level(logging.WARNING, "django_durable_jobs.scheduler"):
        sched.run_pending()
    assert enqueued("minutely") == [utc(2026, 5, 4, 8), utc(2026, 5, 4, 10)]
    assert "119 tick(s) from 2026-05-04T08:01:00+00:00 to 2026-05-04T09:59:00+00:00" in caplog.text
    assert "missed='latest'" in caplog.text
    clock.set(utc(2026, 5, 4, 10, 1))
    sched.run_pending()
    assert enqueued("minutely")[-1] == utc(2026, 5, 4, 10, 1)


def test_missed_skip_resumes_with_the_next_tick(caplog):
    sched, clock = two_hours_down({"missed": "skip"})
    sched.run_pending()
    assert enqueued("minutely") == [utc(2026, 5, 4, 8)]
    clock.set(utc(2026, 5, 4, 10, 1))
    sched.run_pending()
    assert enqueued("minutely") == [utc(2026, 5, 4, 8), utc(2026, 5, 4, 10, 1)]


def test_missed_catch_up_enqueues_only_ticks_within_max_delay(caplog):
    sched, _ = two_hours_down({"missed": "catch_up", "max_delay": 1800})
    with caplog.at_level(logging.WARNING, "django_durable_jobs.scheduler"):
        sched.run_pending()
    times = enqueued("minutely")
    assert times[0] == utc(2026, 5, 4, 8)
    assert times[1:] == [utc(2026, 5, 4, 9, 31) + timedelta(minutes=i) for i in range(30)]
    assert "90 tick(s) from 2026-05-04T08:01:00+00:00 to 2026-05-04T09:30:00+00:00" in caplog.text
    assert "older than max_delay=1800s" in caplog.text


def test_latest_with_max_delay_drops_a_tick_that_is_too_late():
    sched, _ = two_hours_down({"schedule": "0 8 * * *", "max_delay": 600})
    sched.run_pending()
    assert enqueued("minutely") == [utc(2026, 5, 4, 8)]  # 08:00 today was 2 h ago: too late


def test_a_tick_enqueued_by_another_scheduler_is_not_reported_missed(caplog):
    periodic = {"minutely": {"job": PROBE, "schedule": "every_minute"}}
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    lagging, punctual = scheduler(periodic, clock), scheduler(periodic, clock)
    lagging.run_pending()
    punctual.run_pending()
    for minute in (0, 1, 2):
        clock.set(utc(2026, 5, 4, 10, minute))
        punctual.run_pending()
    with caplog.at_level(logging.WARNING, "django_durable_jobs.scheduler"):
        lagging.run_pending()  # wakes three ticks late; the others were enqueued
    assert "missed" not in caplog.text
    assert enqueued("minutely") == [utc(2026, 5, 4, 10, minute) for minute in (0, 1, 2)]


# -- run_on_start ---------------------------------------------------------------------------
def test_run_on_start_enqueues_the_most_recent_tick_once():
    periodic = {"warm": {"job": PROBE, "schedule": "hourly", "run_on_start": True}}
    clock = FakeClock(utc(2026, 5, 4, 10, 25))
    scheduler(periodic, clock).run_pending()
    assert enqueued("warm") == [utc(2026, 5, 4, 10)]
    clock.set(utc(2026, 5, 4, 10, 40))
    scheduler(periodic, clock).run_pending()  # another worker starts: already done
    assert enqueued("warm") == [utc(2026, 5, 4, 10)]
    clock.set(utc(2026, 5, 4, 13, 5))
    periodic["warm"]["missed"] = "skip"  # a restart after a gap: skip would wait for 14:00
    scheduler(periodic, clock).run_pending()
    assert enqueued("warm") == [utc(2026, 5, 4, 10), utc(2026, 5, 4, 13)]


# -- overlap=False --------------------------------------------------------------------------
def test_overlap_false_skips_while_the_previous_run_is_pending_and_resumes_after(settings):
    periodic = {"sync": {"job": PROBE, "schedule": "every_minute", "overlap": False}}
    settings.DURABLE_JOBS = {"PERIODIC": periodic}
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    sched = scheduler(periodic, clock)
    sched.run_pending()

    def tick(minute: int) -> None:
        clock.set(utc(2026, 5, 4, 10, minute))
        sched.run_pending()

    tick(0)
    (first,) = Job.objects.all()
    tick(1)  # still READY
    Job.objects.filter(id=first.id).update(status=JobStatus.RUNNING)
    tick(2)  # RUNNING
    with pytest.raises(ScheduleBusy, match=f"job #{first.id}"):
        run_schedule_now("sync")
    Job.objects.filter(id=first.id).update(status=JobStatus.SUCCESSFUL)
    tick(3)
    assert enqueued("sync") == [utc(2026, 5, 4, 10), utc(2026, 5, 4, 10, 3)]
    rows = ledger("sync")
    assert [when.minute for when, _ in rows] == [0, 1, 2, 3]
    assert [job_id is not None for _, job_id in rows] == [True, False, False, True]


def test_overlap_true_does_not_wait():
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    sched = scheduler({"sync": {"job": PROBE, "schedule": "every_minute"}}, clock)
    sched.run_pending()
    for minute in (0, 1):
        clock.set(utc(2026, 5, 4, 10, minute))
        sched.run_pending()
    assert len(enqueued("sync")) == 2


# -- enable / disable -----------------------------------------------------------------------
def test_disabling_records_ticks_without_jobs_and_a_later_start_does_not_run_them(settings):
    periodic = {"nightly": {"job": PROBE, "schedule": "every_minute"}}
    settings.DURABLE_JOBS = {"PERIODIC": periodic}
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    sched = scheduler(periodic, clock)
    sched.run_pending()
    set_schedule_enabled("nightly", False)
    for minute in (0, 1, 2):
        clock.set(utc(2026, 5, 4, 10, minute))
        sched.run_pending()
    assert enqueued("nightly") == []
    assert [job for _, job in ledger("nightly")] == [None, None, None]
    set_schedule_enabled("nightly", None)
    clock.set(utc(2026, 5, 4, 10, 2, 30))
    scheduler(periodic, clock).run_pending()  # a new worker: 10:02 was not missed, it was off
    assert enqueued("nightly") == []
    clock.set(utc(2026, 5, 4, 10, 3))
    sched.run_pending()
    assert enqueued("nightly") == [utc(2026, 5, 4, 10, 3)]


def test_an_override_enables_an_entry_disabled_in_settings(settings):
    periodic = {"off": {"job": PROBE, "schedule": "every_minute", "enabled": False}}
    settings.DURABLE_JOBS = {"PERIODIC": periodic}
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    sched = scheduler(periodic, clock)
    sched.run_pending()
    clock.set(utc(2026, 5, 4, 10))
    sched.run_pending()
    set_schedule_enabled("off", True)
    clock.set(utc(2026, 5, 4, 10, 1))
    sched.run_pending()
    assert enqueued("off") == [utc(2026, 5, 4, 10, 1)]


# -- DST through the scheduler -----------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "expected_0130", "expected_0230"),
    [
        (
            utc(2026, 3, 7, 4),
            utc(2026, 3, 10, 4),
            [utc(2026, 3, 7, 6, 30), utc(2026, 3, 8, 6, 30), utc(2026, 3, 9, 5, 30)],
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        ),
        (
            utc(2026, 10, 31, 4),
            utc(2026, 11, 3, 4),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
            [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
    ],
    ids=["spring", "autumn"],
)
def test_new_york_entries_across_the_2026_changes(start, end, expected_0130, expected_0230):
    zone = {"timezone": "America/New_York"}
    periodic = {
        "at-0130": {"job": PROBE, "schedule": "30 1 * * *", **zone},
        "at-0230": {"job": PROBE, "schedule": "every day at 02:30", **zone},
    }
    clock = FakeClock(start)
    run_until(scheduler(periodic, clock), clock, end)
    assert enqueued("at-0130") == expected_0130
    assert enqueued("at-0230") == expected_0230
    assert [when for when, _ in ledger("at-0130")] == expected_0130


# -- different entry sets (rolling deploy) ------------------------------------------------
def test_schedulers_with_different_entries_never_stop_each_others():
    old = {
        "a": {"job": PROBE, "schedule": "every_minute"},
        "b": {"job": PROBE, "schedule": "*/2 * * * *"},
    }
    new = {
        "a": {"job": PROBE, "schedule": "every_minute"},
        "c": {"job": PROBE, "schedule": "*/3 * * * *"},
    }
    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    schedulers = [scheduler(old, clock), scheduler(new, clock)]
    for step in range(15):
        clock.set(utc(2026, 5, 4, 9, 59, 30) + timedelta(seconds=30 * step))
        for sched in schedulers if step % 2 else reversed(schedulers):
            sched.run_pending()
    minutes = [utc(2026, 5, 4, 10, m) for m in range(7)]
    assert enqueued("a") == minutes
    assert enqueued("b") == minutes[::2]
    assert enqueued("c") == minutes[::3]


# -- the ledger is pruned, its newest rows kept ------------------------------------------
def test_pruning_keeps_each_entrys_newest_row_and_newest_run():
    now = utc(2026, 5, 4, 12)
    old = now - TICK_RETENTION - timedelta(days=1)
    for name, rows in {
        "busy": [(old, 1), (old + timedelta(minutes=1), 2), (now, 3)],
        "paused": [
            (old, 4),
            (old + timedelta(minutes=1), None),
            (old + timedelta(minutes=2), None),
        ],
        "idle": [(old, 5)],
    }.items():
        for fire_time, job_id in rows:
            ScheduleTick.objects.create(schedule=name, fire_time=fire_time, job_id=job_id)
    assert prune_ticks("default", now) == 3
    assert [job for _, job in ledger("busy")] == [3]
    assert [job for _, job in ledger("paused")] == [4, None]
    assert [job for _, job in ledger("idle")] == [5]


def test_the_job_row_is_written_in_the_ledger_transaction():
    """A job insert that fails leaves no ledger row behind: the tick is retried, not lost."""
    from django_durable_jobs import ledger as ledger_module

    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    sched = scheduler({"probe": {"job": PROBE, "schedule": "every_minute"}}, clock)
    sched.run_pending()
    clock.set(utc(2026, 5, 4, 10))
    original = ledger_module.insert_now

    def broken(prepared, alias):
        raise OperationalError("connection lost during the insert")

    ledger_module.insert_now = broken
    try:
        with pytest.raises(OperationalError):
            sched.run_pending()
    finally:
        ledger_module.insert_now = original
    assert ledger("probe") == []
    sched.run_pending()
    assert enqueued("probe") == [utc(2026, 5, 4, 10)]
    assert (
        json.loads(json.dumps(Job.objects.get().meta))["fire_time"] == "2026-05-04T10:00:00+00:00"
    )


def test_one_failing_entry_does_not_stop_the_others(caplog):
    from django_durable_jobs.periodic import PeriodicEntry

    clock = FakeClock(utc(2026, 5, 4, 9, 59, 30))
    good, bad = get_entries(
        {
            "good": {"job": PROBE, "schedule": "every_minute"},
            "bad": {"job": PROBE, "schedule": "every_minute"},
        }
    )

    class Broken(PeriodicEntry):
        def prepare(self):
            raise ValueError("cannot prepare")

    broken = Broken(**{f: getattr(bad, f) for f in bad.__dataclass_fields__})
    sched = Scheduler([broken, good], clock=clock)
    sched.run_pending()
    clock.set(utc(2026, 5, 4, 10))
    with caplog.at_level(logging.ERROR, "django_durable_jobs.scheduler"):
        sched.run_pending()
    assert enqueued("good") == [utc(2026, 5, 4, 10)]
    assert (
        "schedule 'bad': its due ticks up to 2026-05-04T10:00:00+00:00 could not be" in caplog.text
    )
    assert "cannot prepare" in caplog.text
