"""The scheduler inside real ``runworker`` processes.

These run on the real database clock with per-second schedules for a few
seconds (no fake clock can reach into another process without a test-only
hook in the product): ticks a second apart, every process trying each one.
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.db import get_backend
from django_durable_jobs.models import Job, ScheduleTick, Worker
from django_durable_jobs.periodic import PeriodicConfigError, get_entries
from django_durable_jobs.worker import Worker as WorkerLoop
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PROBE = "tests.testapp.jobs.periodic_probe"
CATCH_UP = {"missed": "catch_up", "max_delay": 60}
PER_SECOND = {
    "every-second": {"job": PROBE, "schedule": "every second", **CATCH_UP},
    "every-2-seconds": {"job": PROBE, "schedule": "every 2 seconds", **CATCH_UP},
    "six-field": {"job": PROBE, "schedule": "*/3 * * * * *", **CATCH_UP},
}


def db_now() -> datetime:
    return get_backend("default").db_now()


@pytest.mark.slow
@pytest.mark.parametrize(
    "count", [2, pytest.param(3, marks=pytest.mark.concurrent_writers)], ids=["two", "three"]
)
def test_runworker_processes_enqueue_each_tick_once(start_worker, count):
    workers = [
        start_worker("--concurrency", "2", settings={"PERIODIC": PER_SECOND}) for _ in range(count)
    ]
    wait_for(lambda: Worker.objects.count() == count, timeout=60)
    all_running = db_now()
    horizon = all_running + timedelta(seconds=8)
    wait_for(
        lambda: all(
            ScheduleTick.objects.filter(schedule=name, fire_time__gte=horizon).exists()
            for name in PER_SECOND
        ),
        timeout=90,
    )
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()

    for entry in get_entries(PER_SECOND):
        rows = list(ScheduleTick.objects.filter(schedule=entry.name).order_by("fire_time"))
        fire_times = [row.fire_time for row in rows]
        # No gap and no duplicate from the first tick to the last.
        assert fire_times == entry.schedule.between(
            fire_times[0] - timedelta(microseconds=1), fire_times[-1]
        )
        assert fire_times[-1] >= horizon
        jobs = {job.id: job for job in Job.objects.filter(meta__schedule=entry.name)}
        assert sorted(jobs) == sorted(row.job_id for row in rows)
        for row in rows:
            job = jobs[row.job_id]
            assert datetime.fromisoformat(job.meta["fire_time"]) == row.fire_time
            assert job.status in (JobStatus.SUCCESSFUL, JobStatus.READY)
            if job.status == JobStatus.SUCCESSFUL:  # the job learned its tick, not "now"
                assert job.result["fire_time"] == job.meta["fire_time"]
                assert job.result["schedule"] == entry.name
    assert Job.objects.filter(status=JobStatus.SUCCESSFUL).count() > 10
    for worker in workers:
        output = worker.output()
        assert "scheduler starting with 3 entries" in output
        assert "Traceback" not in output
        assert " ERROR " not in output


def test_no_scheduler_opts_out(start_worker):
    settings = {"PERIODIC": {"every-second": PER_SECOND["every-second"]}}
    quiet = start_worker("--no-scheduler", settings=settings)
    scheduling = start_worker(settings=settings)
    wait_for(lambda: Worker.objects.count() == 2, timeout=60)
    wait_for(lambda: ScheduleTick.objects.count() >= 3, timeout=60)
    for worker in (quiet, scheduling):
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.output()
    assert "scheduler starting" in scheduling.output()
    assert "scheduler starting" not in quiet.output()


BROKEN = {"PERIODIC": {"nightly": {"job": PROBE, "schedule": "every blue moon"}}}


def test_runworker_refuses_to_start_with_a_broken_entry(start_worker):
    worker = start_worker(settings=BROKEN)
    assert worker.wait(timeout=60) != 0
    output = worker.output()
    assert "DURABLE_JOBS['PERIODIC']['nightly']: (django_durable_jobs.E104)" in output
    assert Worker.objects.count() == 0


def test_runworker_refuses_the_scheduler_even_with_checks_skipped(start_worker):
    worker = start_worker("--skip-checks", settings=BROKEN)
    assert worker.wait(timeout=60) != 0
    output = worker.output()
    assert "has 1 problem(s); the scheduler does not start" in output
    assert "'nightly'" in output
    assert "--no-scheduler" in output
    assert Worker.objects.count() == 0


def test_the_worker_class_checks_its_entries(settings):
    settings.DURABLE_JOBS = BROKEN
    with pytest.raises(PeriodicConfigError, match="'nightly'"):
        WorkerLoop(install_signal_handlers=False)
    assert WorkerLoop(install_signal_handlers=False, scheduler=False).scheduler is None
    settings.DURABLE_JOBS = {"PERIODIC": {"ok": PER_SECOND["every-second"]}}
    assert [e.name for e in WorkerLoop(install_signal_handlers=False).scheduler.entries] == ["ok"]
    settings.DURABLE_JOBS = {}
    # No PERIODIC entries: still a scheduler, for the database entries that may appear.
    idle = WorkerLoop(install_signal_handlers=False).scheduler
    assert idle.entries == []
    assert idle.database_entries is not None


def test_a_periodic_job_learns_its_fire_time_not_now(start_worker):
    settings = {"PERIODIC": {"probe": {"job": PROBE, "schedule": "every 2 seconds"}}}
    worker = start_worker(settings=settings)
    wait_for(lambda: Job.objects.filter(status=JobStatus.SUCCESSFUL).exists(), timeout=60)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.output()
    job = Job.objects.filter(status=JobStatus.SUCCESSFUL).first()
    fire_time = datetime.fromisoformat(job.result["fire_time"])
    assert fire_time.second % 2 == 0
    assert fire_time.microsecond == 0
    assert fire_time <= job.started_at
    assert timezone.is_aware(fire_time)


# -- database entries, live, with three scheduler processes ------------------------------
def _ticks(name: str) -> list[datetime]:
    return list(
        ScheduleTick.objects.filter(schedule=name)
        .order_by("fire_time")
        .values_list("fire_time", flat=True)
    )


def _wait_db_time(instant: datetime) -> None:
    wait_for(lambda: db_now() >= instant, timeout=90, interval=0.2)


@pytest.mark.slow
def test_database_entries_go_live_in_three_scheduler_processes(start_worker):
    """Created, edited, disabled and deleted while three schedulers run: exactly once."""
    from django_durable_jobs.schedule_entries import (
        RELOAD_INTERVAL,
        add_entry,
        edit_entry,
        remove_entry,
        set_entry_enabled,
    )

    delay = timedelta(seconds=RELOAD_INTERVAL + 1.5)  # the documented delay, plus a pass
    workers = [start_worker("--concurrency", "2", settings={}) for _ in range(3)]
    wait_for(lambda: Worker.objects.count() == 3, timeout=90)
    wait_for(lambda: all("scheduler starting" in w.output() for w in workers), timeout=60)

    probe = add_entry("probe", {"job": PROBE, "schedule": "every 2 seconds", **CATCH_UP})
    doomed = add_entry("doomed", {"job": PROBE, "schedule": "every second", **CATCH_UP})
    created = {"probe": probe.updated_at, "doomed": doomed.updated_at}
    _wait_db_time(probe.updated_at + timedelta(seconds=6))

    edited = edit_entry("probe", {"schedule": "every second", "kwargs": {"label": "v2"}})
    remove_entry("doomed")
    deleted_at = db_now()
    _wait_db_time(edited.updated_at + delay + timedelta(seconds=4))

    disabled = set_entry_enabled("probe", False)
    _wait_db_time(disabled.updated_at + delay + timedelta(seconds=3))

    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=60) == 0, worker.output()

    old, new = (
        get_entries({"x": {"job": PROBE, "schedule": text}})[0].schedule
        for text in ("every 2 seconds", "every second")
    )
    ticks = _ticks("probe")
    # Created while they ran: from its very next tick on, each tick once.
    assert ticks[0] == old.next_after(created["probe"])
    # No tick lost: every tick of the old schedule (the new one shares them all)...
    assert set(old.between(ticks[0] - timedelta(microseconds=1), ticks[-1])) <= set(ticks)
    # ...and every tick of the new one from the documented delay until disabled.
    effective = edited.updated_at + delay
    assert set(new.between(effective, disabled.updated_at)) <= set(ticks)
    # None of the new schedule before the edit; none at all once disabled (after the delay).
    assert all(t.second % 2 == 0 for t in ticks if t <= edited.updated_at)
    assert not [t for t in ticks if t > disabled.updated_at + delay]
    # Exactly once: one job per ledger row, each with its own fire time.
    jobs = list(Job.objects.filter(meta__schedule="probe"))
    assert sorted(datetime.fromisoformat(job.meta["fire_time"]) for job in jobs) == ticks
    late = [job for job in jobs if datetime.fromisoformat(job.meta["fire_time"]) > effective]
    assert late
    assert all(job.kwargs == {"label": "v2"} for job in late)
    # Deleted: its ticks stop after the delay, its history (ledger rows, jobs) stays.
    gone = _ticks("doomed")
    assert gone[0] == new.next_after(created["doomed"])
    assert gone == new.between(gone[0] - timedelta(microseconds=1), gone[-1])
    assert gone[-1] <= deleted_at + delay
    assert Job.objects.filter(meta__schedule="doomed").count() == len(gone)
    for worker in workers:
        output = worker.output()
        assert "added or enabled in the database" in output
        assert "Traceback" not in output
        assert " ERROR " not in output
