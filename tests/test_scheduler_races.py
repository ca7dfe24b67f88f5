"""Several schedulers on one database: exactly one job per (entry, tick).

Threads on a shared fake clock: every move of time wakes all schedulers at once,
so each tick is contended; the clock moves on only when all have reacted.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from django_durable_jobs.models import Job, ScheduleTick
from django_durable_jobs.periodic import get_entries
from django_durable_jobs.scheduler import Scheduler
from tests.fake_clock import FakeClock

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROBE = "tests.testapp.jobs.periodic_probe"
CATCH_UP = {"missed": "catch_up", "max_delay": 3600}


def check_exactly_once(periodic: dict, start: datetime, end: datetime) -> int:
    """Each entry's ticks in (start, end]: one ledger row each, each with its own job."""
    total = 0
    for entry in get_entries(periodic):
        expected = entry.schedule.between(start, end)
        rows = list(ScheduleTick.objects.filter(schedule=entry.name).order_by("fire_time"))
        assert [row.fire_time for row in rows] == expected, entry.name
        jobs = {job.id: job for job in Job.objects.filter(meta__schedule=entry.name)}
        assert sorted(jobs) == sorted(row.job_id for row in rows), entry.name
        for row in rows:
            assert datetime.fromisoformat(jobs[row.job_id].meta["fire_time"]) == row.fire_time
        total += len(rows)
    return total


@pytest.mark.parametrize(
    "count", [2, pytest.param(3, marks=pytest.mark.concurrent_writers)], ids=["two", "three"]
)
def test_scheduler_threads_enqueue_each_tick_once(count, caplog):
    periodic = {
        "fast": {"job": PROBE, "schedule": "every 15 seconds", **CATCH_UP},
        "minutely": {"job": PROBE, "schedule": "every_minute", **CATCH_UP},
        "five": {"job": PROBE, "schedule": "*/5 * * * *", **CATCH_UP},
        "paris": {"job": PROBE, "schedule": "*/10 * * * *", "timezone": "Europe/Paris"},
    }
    start = datetime(2026, 5, 4, 9, 59, 50, tzinfo=UTC)
    clock = FakeClock(start)
    stop = threading.Event()
    schedulers = [Scheduler(get_entries(periodic), clock=clock) for _ in range(count)]
    threads = [threading.Thread(target=s.run, args=(stop,)) for s in schedulers]
    rng = random.Random(count)
    with caplog.at_level(logging.WARNING, "django_durable_jobs"):
        for thread in threads:
            thread.start()
        try:
            clock.wait_idle(count)
            for _ in range(150):
                clock.advance(timedelta(seconds=rng.choice([1, 5, 15, 15, 15, 30, 60])))
                clock.wait_idle(count)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert [r.getMessage() for r in caplog.records] == []  # losers are quiet, nothing failed
    total = check_exactly_once(periodic, start, clock.now())
    assert total > 250
    assert Job.objects.count() == total


def test_a_scheduler_that_falls_behind_and_catches_up_adds_no_duplicate(caplog):
    """One scheduler runs on time, another only wakes every few minutes and catches up."""
    periodic = {"minutely": {"job": PROBE, "schedule": "every_minute", **CATCH_UP}}
    start = datetime(2026, 5, 4, 9, 59, 30, tzinfo=UTC)
    punctual_clock, late_clock = FakeClock(start), FakeClock(start)
    punctual = Scheduler(get_entries(periodic), clock=punctual_clock)
    late = Scheduler(get_entries(periodic), clock=late_clock)
    late.run_pending()
    punctual.run_pending()
    for minute in range(1, 31):
        punctual_clock.set(start + timedelta(minutes=minute))
        punctual.run_pending()
        if minute % 7 == 0:
            late_clock.set(start + timedelta(minutes=minute, seconds=20))
            late.run_pending()
    late_clock.set(start + timedelta(minutes=31))
    late.run_pending()  # takes the last tick alone
    assert check_exactly_once(periodic, start, start + timedelta(minutes=31)) == 31
