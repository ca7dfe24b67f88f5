"""``manage.py jobs schedule`` and the functions the admin shares with it."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job, ScheduleState, ScheduleTick
from django_durable_jobs.periodic import PeriodicConfigError
from django_durable_jobs.scheduler import (
    UnknownSchedule,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)

pytestmark = pytest.mark.django_db

PROBE = "tests.testapp.jobs.periodic_probe"
PERIODIC = {
    "nightly": {
        "job": "tests.testapp.jobs.report",
        "schedule": "30 2 * * *",
        "timezone": "Europe/Paris",
        "kwargs": {"kind": "full"},
        "tags": ["reports", "ops"],
    },
    "minutely": {"job": PROBE, "schedule": "every_minute", "tags": ["ops"]},
    "off": {"job": PROBE, "schedule": "every 15 seconds", "enabled": False},
}


@pytest.fixture
def periodic(settings):
    settings.DURABLE_JOBS = {"PERIODIC": PERIODIC}


def jobs(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("jobs", *args, stdout=out, stderr=err, no_color=True)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.usefixtures("periodic")
def test_describe_schedules():
    now = datetime(2026, 3, 28, 12, tzinfo=UTC)  # the night before Paris moves to summer time
    job = Job.objects.create(name="tests.testapp.jobs.report", status=JobStatus.FAILED)
    ScheduleTick.objects.create(
        schedule="nightly", fire_time=datetime(2026, 3, 28, 1, 30, tzinfo=UTC), job_id=job.id
    )
    ScheduleTick.objects.create(  # a tick skipped later does not hide the last run
        schedule="nightly", fire_time=datetime(2026, 3, 28, 1, 31, tzinfo=UTC), job_id=None
    )
    set_schedule_enabled("off", True)
    infos = {info.name: info for info in describe_schedules(now)}
    assert list(infos) == ["minutely", "nightly", "off"]
    nightly = infos["nightly"]
    assert nightly.description == "every day at 02:30"
    assert nightly.timezone == "Europe/Paris"
    assert nightly.next_fire_times == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:30 does not exist that night: 03:00 CEST
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 31, 0, 30, tzinfo=UTC),
    ]
    assert (nightly.last_fire_time, nightly.last_job_id, nightly.last_status) == (
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
        job.id,
        JobStatus.FAILED,
    )
    assert nightly.tags == ("reports", "ops")
    assert (nightly.enabled, nightly.enabled_source) == (True, "settings")
    assert infos["minutely"].last_fire_time is None
    off = infos["off"]
    assert (off.enabled, off.enabled_in_settings, off.enabled_source) == (True, False, "override")
    assert [info.name for info in describe_schedules(now, tag="ops")] == ["minutely", "nightly"]


def test_broken_entries_are_listed_with_their_problems(settings):
    settings.DURABLE_JOBS = {
        "PERIODIC": {**PERIODIC, "broken": {"job": PROBE, "schedule": "every blue moon"}}
    }
    infos = {info.name: info for info in describe_schedules()}
    assert infos["broken"].problems
    assert "not in the English grammar" in infos["broken"].problems[0]
    assert not infos["broken"].enabled
    code, out, _ = jobs("schedule", "list")
    assert code == 1
    assert "broken  BROKEN" in out
    assert "nightly  every day at 02:30 (Europe/Paris)  enabled" in out


@pytest.mark.usefixtures("periodic")
def test_schedule_list_prints_each_entry():
    run_schedule_now("minutely")
    code, out, _ = jobs("schedule", "list")
    assert code == 0
    assert "minutely  every minute (UTC)  enabled" in out
    assert "nightly  every day at 02:30 (Europe/Paris)  enabled" in out
    assert "off  every 15 seconds (UTC)  DISABLED" in out
    assert "  tags: reports, ops" in out
    assert " CET" in out or " CEST" in out  # next times in the entry's zone
    assert "  last: never ran" in out
    job = Job.objects.get()
    assert f"job #{job.id} READY" in out
    code, out, _ = jobs("schedule", "list", "--tag", "reports")
    assert "nightly" in out
    assert "minutely" not in out


@pytest.mark.usefixtures("periodic")
def test_schedule_list_json():
    code, out, _ = jobs("schedule", "list", "--json", "--count", "2")
    data = {item["name"]: item for item in json.loads(out)}
    assert code == 0
    assert data["nightly"]["description"] == "every day at 02:30"
    assert len(data["nightly"]["next_fire_times"]) == 2
    assert data["off"]["enabled"] is False


@pytest.mark.usefixtures("periodic")
def test_schedule_run_enqueues_now_and_records_it():
    code, out, _ = jobs("schedule", "run", "nightly")
    job = Job.objects.get()
    assert code == 0
    assert f"Enqueued job #{job.id}" in out
    assert job.kwargs == {"kind": "full"}
    assert job.meta["schedule"] == "nightly"
    assert job.meta["manual"] is True
    (tick,) = ScheduleTick.objects.all()
    assert tick.job_id == job.id
    assert tick.fire_time.isoformat() == job.meta["fire_time"]
    assert run_schedule_now("off") != job.id  # disabled entries can still be run by hand


@pytest.mark.usefixtures("periodic")
def test_schedule_run_unknown_name():
    code, _, err = jobs("schedule", "run", "nightlyy")
    assert code == 1
    assert "no PERIODIC entry is named 'nightlyy'" in err
    assert "nightly" in err
    with pytest.raises(UnknownSchedule):
        run_schedule_now("nope")


def test_schedule_run_a_broken_entry(settings):
    settings.DURABLE_JOBS = {"PERIODIC": {"bad": {"job": PROBE, "schedule": "nope"}}}
    with pytest.raises(PeriodicConfigError, match="'bad'"):
        run_schedule_now("bad")


@pytest.mark.usefixtures("periodic")
def test_enable_disable_reset():
    assert jobs("schedule", "disable", "nightly")[0] == 0
    assert ScheduleState.objects.get(name="nightly").enabled is False
    code, out, _ = jobs("schedule", "list")
    assert "nightly  every day at 02:30 (Europe/Paris)  DISABLED (override" in out
    assert jobs("schedule", "enable", "nightly")[0] == 0
    assert ScheduleState.objects.get(name="nightly").enabled is True
    code, out, _ = jobs("schedule", "reset", "nightly")
    assert "follows the settings again" in out
    assert ScheduleState.objects.get(name="nightly").enabled is None
    code, _, err = jobs("schedule", "disable", "ghost")
    assert code == 1
    assert "'ghost'" in err


def test_schedule_without_action_shows_help():
    code, out, _ = jobs("schedule")
    assert code == 2
    assert "list" in out
    assert "run" in out
