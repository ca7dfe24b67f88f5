"""Periodic entries stored in the database: validation, versions, the live scheduler, the CLI.

The scheduler runs one pass at a time on a fake clock that starts at the real
time (an entry's ``updated_at`` comes from the database clock).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from django_durable_jobs.checks import check_database_entries
from django_durable_jobs.models import Job, ScheduleEntry, ScheduleTick
from django_durable_jobs.periodic import load_entries
from django_durable_jobs.schedule_entries import (
    RELOAD_INTERVAL,
    InvalidScheduleEntry,
    UnknownEntry,
    add_entry,
    change_marker,
    edit_entry,
    export_entries,
    import_entries,
    remove_entry,
    set_entry_enabled,
)
from django_durable_jobs.scheduler import (
    Scheduler,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)
from tests.fake_clock import FakeClock

pytestmark = pytest.mark.django_db

PROBE = "tests.testapp.jobs.periodic_probe"
CATCH_UP = {"missed": "catch_up", "max_delay": 60}
REPORT = "tests.testapp.jobs.report"


def checks_problems(name: str, spec: dict) -> list:
    """What the system checks say about the same entry in settings."""
    _, problems = load_entries({name: spec})
    return problems


def fire_times(name: str) -> list[datetime]:
    return list(
        ScheduleTick.objects.filter(schedule=name)
        .order_by("fire_time")
        .values_list("fire_time", flat=True)
    )


def enqueued(name: str) -> list[datetime]:
    jobs = Job.objects.filter(meta__schedule=name).order_by("meta__fire_time")
    return [datetime.fromisoformat(job.meta["fire_time"]) for job in jobs]


# -- validation: the system checks' messages --------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"job": PROBE, "schedule": "every blue moon"},
        {"job": PROBE, "schedule": "0 0 30 2 *"},
        {"job": PROBE, "schedule": "hourly", "timezone": "Mars/Olympus"},
        {"job": "tests.testapp.jobs.nope", "schedule": "hourly"},
        {"job": REPORT, "schedule": "hourly", "kwargs": {"size": 3}},
        {"job": REPORT, "schedule": "hourly", "args": ["a", 1, 2]},
        {"job": PROBE, "schedule": "hourly", "priority": 1000},
        {"job": PROBE, "schedule": "hourly", "queue": "bad queue!"},
        {"job": PROBE, "schedule": "hourly", "missed": "catch_up"},
        {"job": PROBE, "schedule": "hourly", "missed": "never"},
        {"job": PROBE, "schedule": "hourly", "max_delay": -1},
        {"job": PROBE, "schedule": "hourly", "tags": ["", "x"]},
    ],
)
def test_a_broken_entry_is_refused_with_the_checks_messages(spec):
    expected = checks_problems("nightly", spec)
    assert expected
    with pytest.raises(InvalidScheduleEntry) as caught:
        add_entry("nightly", spec)
    assert caught.value.problems == expected
    assert ScheduleEntry.objects.count() == 0
    # The ORM refuses it too, and the admin form's clean() gives the same problems (the
    # model fields may have converted a value first: max_delay=-1 reads -1.0).
    row = ScheduleEntry(name="nightly", **spec)
    with pytest.raises(ValidationError) as form_errors:
        row.full_clean()
    codes = [e.code for errors in form_errors.value.error_dict.values() for e in errors]
    # (missed="never" is also refused by the field's choices: the form's select has no such item)
    assert [code for code in codes if code != "invalid_choice"] == [p.code for p in expected]
    with pytest.raises(InvalidScheduleEntry):
        row.save()
    assert ScheduleEntry.objects.count() == 0


def test_each_problem_lands_on_its_field():
    row = ScheduleEntry(
        name="x", job=REPORT, schedule="every 7 minutes", timezone="Nowhere/City", priority=999
    )
    with pytest.raises(ValidationError) as caught:
        row.full_clean()
    fields = caught.value.message_dict
    assert "every 7 minutes" in fields["schedule"][0]
    assert "Nowhere/City" in fields["timezone"][0]
    assert "priority=999" in fields["priority"][0]


def test_every_vocabulary_word_is_stored_and_read_back():
    row = add_entry(
        "report",
        {
            "job": REPORT,
            "schedule": "*/10 * * * * *",
            "kwargs": {"kind": "short", "limit": 3},
            "queue": "reports",
            "priority": 5,
            "timezone": "Europe/Paris",
            "tags": ["reports", "daily"],
            "missed": "catch_up",
            "max_delay": timedelta(minutes=5),
            "overlap": False,
            "enabled": False,
            "run_on_start": True,
        },
        description="The <b>short</b> report",
    )
    row.refresh_from_db()
    assert (row.queue, row.priority, row.max_delay, row.overlap) == ("reports", 5, 300.0, False)
    assert row.created_at == row.updated_at
    assert export_entries() == [
        {
            "name": "report",
            "job": REPORT,
            "schedule": "*/10 * * * * *",
            "kwargs": {"kind": "short", "limit": 3},
            "queue": "reports",
            "priority": 5,
            "timezone": "Europe/Paris",
            "enabled": False,
            "tags": ["reports", "daily"],
            "run_on_start": True,
            "missed": "catch_up",
            "max_delay": 300.0,
            "overlap": False,
            "description": "The <b>short</b> report",
        }
    ]


def test_a_name_declared_in_settings_cannot_be_saved(settings):
    settings.DURABLE_JOBS = {"PERIODIC": {"nightly": {"job": PROBE, "schedule": "daily"}}}
    with pytest.raises(InvalidScheduleEntry, match="declared in DURABLE_JOBS") as caught:
        add_entry("nightly", {"job": PROBE, "schedule": "hourly"})
    assert caught.value.problems[0].code == "E030"
    with pytest.raises(UnknownEntry, match="read-only here"):
        edit_entry("nightly", {"schedule": "hourly"})
    with pytest.raises(UnknownEntry, match="read-only here"):
        remove_entry("nightly")


def test_the_check_warns_when_a_name_is_in_both(settings):
    add_entry("nightly", {"job": PROBE, "schedule": "daily"})
    add_entry("fine", {"job": PROBE, "schedule": "daily"})
    assert check_database_entries(databases=["default"]) == []
    settings.DURABLE_JOBS = {"PERIODIC": {"nightly": {"job": PROBE, "schedule": "hourly"}}}
    (warning,) = check_database_entries(databases=["default"])
    assert warning.id == "django_durable_jobs.W030"
    assert "'nightly'" in warning.msg
    assert check_database_entries(databases=None) == []  # only with database checks


def test_the_check_reports_an_entry_broken_by_a_code_change():
    add_entry("report", {"job": REPORT, "schedule": "daily", "kwargs": {"kind": "x"}})
    ScheduleEntry.objects.filter(name="report").update(kwargs={"colour": "red"})
    (warning,) = check_database_entries(databases=["default"])
    assert warning.id == "django_durable_jobs.W031"
    assert "colour" in warning.msg


# -- versions and the change marker -----------------------------------------------------
def test_every_change_moves_the_marker_and_versions_never_repeat():
    markers = [change_marker("default")]
    first = add_entry("a", {"job": PROBE, "schedule": "hourly"})
    markers.append(change_marker("default"))
    second = add_entry("b", {"job": PROBE, "schedule": "hourly"})
    assert second.version > first.version
    markers.append(change_marker("default"))
    edited = edit_entry("a", {"schedule": "daily"})
    assert edited.version > second.version
    markers.append(change_marker("default"))
    remove_entry("a")  # the newest version is gone...
    markers.append(change_marker("default"))
    third = add_entry("c", {"job": PROBE, "schedule": "hourly"})
    assert third.version > edited.version  # ...and still never handed out again
    markers.append(change_marker("default"))
    assert len(set(markers)) == len(markers)
    set_entry_enabled("b", True)  # no change, no new version
    assert change_marker("default") == markers[-1]


def test_edit_keeps_the_options_not_given_and_resets_emptied_ones():
    add_entry("r", {"job": REPORT, "schedule": "hourly", "kwargs": {"kind": "k"}, "queue": "q"})
    row = edit_entry("r", {"schedule": "daily", "queue": None}, description="now daily")
    assert (row.schedule, row.kwargs, row.queue, row.description) == (
        "daily",
        {"kind": "k"},
        "",
        "now daily",
    )
    with pytest.raises(InvalidScheduleEntry, match="do not fit"):
        edit_entry("r", {"kwargs": {}})
    assert ScheduleEntry.objects.get(name="r").kwargs == {"kind": "k"}


# -- the live scheduler, on a fake clock ------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    return FakeClock(start)


def advance(sched: Scheduler, clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    end = clock.now() + timedelta(seconds=seconds)
    while clock.now() < end:
        sched.run_pending()
        clock.set(min(clock.now() + timedelta(seconds=step), end))
    sched.run_pending()


def test_a_created_entry_is_scheduled_without_a_restart(clock):
    sched = Scheduler(clock=clock)
    sched.run_pending()
    assert sched.entries == []
    row = add_entry("probe", {"job": PROBE, "schedule": "every second", **CATCH_UP})
    advance(sched, clock, RELOAD_INTERVAL + 3)
    ticks = fire_times("probe")
    assert len(ticks) >= 3
    # From the first fire time after it was saved, though the scheduler polled later.
    (entry,) = sched.entries
    assert ticks[0] == entry.schedule.next_after(row.updated_at)
    assert ticks == sorted(set(ticks))
    assert enqueued("probe") == ticks


def test_an_edit_continues_on_the_new_schedule_without_a_duplicate(clock):
    add_entry("probe", {"job": PROBE, "schedule": "every 2 seconds"})
    sched = Scheduler(clock=clock)
    advance(sched, clock, 4)
    before = fire_times("probe")
    assert before
    assert all(t.second % 2 == 0 for t in before)
    edit_entry("probe", {"schedule": "every second", "kwargs": {"label": "new"}})
    edited_at = clock.now()
    advance(sched, clock, RELOAD_INTERVAL + 3)
    after = [t for t in fire_times("probe") if t > before[-1]]
    effective = edited_at + timedelta(seconds=RELOAD_INTERVAL)
    assert [t for t in after if t > effective] == [
        effective.replace(microsecond=0) + timedelta(seconds=i)
        for i in range(1, len([t for t in after if t > effective]) + 1)
    ]
    labels = {
        datetime.fromisoformat(job.meta["fire_time"]): job.kwargs.get("label")
        for job in Job.objects.filter(meta__schedule="probe")
    }
    assert all(labels[t] == "new" for t in after if t > effective)
    assert len(Job.objects.filter(meta__schedule="probe")) == len(fire_times("probe"))


def test_disable_stops_it_and_enable_follows_the_missed_policy(clock):
    add_entry("probe", {"job": PROBE, "schedule": "every second"})
    sched = Scheduler(clock=clock)
    advance(sched, clock, 2)
    set_entry_enabled("probe", False)
    advance(sched, clock, RELOAD_INTERVAL + 1)
    stopped = len(fire_times("probe"))
    advance(sched, clock, 5)
    assert len(fire_times("probe")) == stopped  # disabled: no row, no job
    last = fire_times("probe")[-1]
    set_entry_enabled("probe", True)
    advance(sched, clock, RELOAD_INTERVAL + 0.5, step=RELOAD_INTERVAL + 0.5)
    # missed="latest": one job for the most recent tick, not one per missed second.
    resumed = [t for t in fire_times("probe") if t > last]
    assert len(resumed) == 1


def test_delete_removes_it_and_keeps_its_history(clock):
    add_entry("probe", {"job": PROBE, "schedule": "every second"})
    sched = Scheduler(clock=clock)
    advance(sched, clock, 3)
    history = fire_times("probe")
    remove_entry("probe")
    advance(sched, clock, RELOAD_INTERVAL)
    kept = fire_times("probe")
    advance(sched, clock, 4)
    assert fire_times("probe") == kept
    assert kept[: len(history)] == history
    assert sched.entries == []


def test_nothing_changed_costs_one_query(clock, django_assert_num_queries):
    for index in range(20):
        add_entry(f"e{index}", {"job": PROBE, "schedule": "daily"})
    sched = Scheduler(clock=clock)
    sched.run_pending()
    clock.set(clock.now() + timedelta(seconds=RELOAD_INTERVAL))
    with django_assert_num_queries(1):
        sched.run_pending()


def test_settings_win_over_a_database_entry_of_the_same_name(settings, clock, caplog):
    add_entry("probe", {"job": PROBE, "schedule": "every second"})
    settings.DURABLE_JOBS = {"PERIODIC": {"probe": {"job": PROBE, "schedule": "every 5 seconds"}}}
    sched = Scheduler(clock=clock)
    with caplog.at_level(logging.WARNING, logger="django_durable_jobs.scheduler"):
        advance(sched, clock, 6)
    assert [entry.schedule.text for entry in sched.entries] == ["every 5 seconds"]
    assert all(t.second % 5 == 0 for t in fire_times("probe"))
    assert "both in settings and in the database" in caplog.text


def test_a_broken_database_entry_is_logged_and_left_out(clock, caplog):
    add_entry("ok", {"job": PROBE, "schedule": "every second"})
    add_entry("report", {"job": REPORT, "schedule": "every second", "kwargs": {"kind": "x"}})
    ScheduleEntry.objects.filter(name="report").update(kwargs={"colour": "red"}, version=10**18)
    sched = Scheduler(clock=clock)
    with caplog.at_level(logging.ERROR, logger="django_durable_jobs.scheduler"):
        advance(sched, clock, 2)
    assert [entry.name for entry in sched.entries] == ["ok"]
    assert "database schedule 'report' (version" in caplog.text
    assert fire_times("report") == []


# -- operations shared with settings entries --------------------------------------------
def test_run_now_list_and_disable_work_for_database_entries():
    add_entry("probe", {"job": PROBE, "schedule": "daily", "tags": ["t"]}, description="d")
    job_id = run_schedule_now("probe")
    assert Job.objects.get(id=job_id).meta["manual"] is True
    (info,) = describe_schedules(tag="t")
    assert (info.name, info.source, info.enabled, info.last_job_id) == (
        "probe",
        "database",
        True,
        job_id,
    )
    set_schedule_enabled("probe", False)
    assert ScheduleEntry.objects.get(name="probe").enabled is False
    with pytest.raises(UnknownEntry, match="follow"):
        set_schedule_enabled("probe", None)


# -- import / export --------------------------------------------------------------------
def test_export_then_import_round_trips_and_reports_what_changed():
    add_entry("a", {"job": PROBE, "schedule": "hourly", "tags": ["x"]})
    add_entry("b", {"job": REPORT, "schedule": "daily", "kwargs": {"kind": "k"}})
    exported = export_entries()
    ScheduleEntry.objects.all().delete()
    result = import_entries(exported)
    assert (sorted(result.created), result.updated) == (["a", "b"], [])
    assert export_entries() == exported
    changed = [dict(exported[0], schedule="daily"), exported[1]]
    result = import_entries(changed)
    assert (result.created, result.updated, result.unchanged) == ([], ["a"], ["b"])
    assert ScheduleEntry.objects.get(name="a").tags == ["x"]


def test_import_is_all_or_nothing_and_dry_run_writes_nothing():
    good = {"name": "a", "job": PROBE, "schedule": "hourly"}
    bad = {"name": "b", "job": PROBE, "schedule": "every blue moon"}
    with pytest.raises(InvalidScheduleEntry, match="every blue moon"):
        import_entries([good, bad])
    assert ScheduleEntry.objects.count() == 0
    result = import_entries({"a": {"job": PROBE, "schedule": "hourly"}}, dry_run=True)
    assert result.created == ["a"]
    assert ScheduleEntry.objects.count() == 0


# -- the CLI ----------------------------------------------------------------------------
def jobs(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("jobs", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def test_cli_add_edit_disable_enable_remove():
    code, out, err = jobs(
        "schedule", "add", "probe", "--job", PROBE, "--schedule", "every 5 minutes",
        "--kwargs", '{"label": "x"}', "--tag", "a", "--tag", "b", "--no-overlap",
        "--description", "probe it",
    )  # fmt: skip
    assert code == 0, err
    row = ScheduleEntry.objects.get(name="probe")
    assert (row.kwargs, row.tags, row.overlap, row.description) == (
        {"label": "x"},
        ["a", "b"],
        False,
        "probe it",
    )
    assert jobs("schedule", "edit", "probe", "--schedule", "hourly")[0] == 0
    assert ScheduleEntry.objects.get(name="probe").schedule == "hourly"
    assert jobs("schedule", "disable", "probe")[0] == 0
    assert ScheduleEntry.objects.get(name="probe").enabled is False
    assert jobs("schedule", "enable", "probe")[0] == 0
    assert ScheduleEntry.objects.get(name="probe").enabled is True
    code, out, _ = jobs("schedule", "list")
    assert "probe" in out
    assert "[database]" in out
    assert jobs("schedule", "remove", "probe")[0] == 0
    assert not ScheduleEntry.objects.exists()


def test_cli_refuses_a_broken_entry_with_the_checks_message():
    code, _, err = jobs("schedule", "add", "x", "--job", PROBE, "--schedule", "every 7 minutes")
    assert code == 1
    assert "E104" in err
    assert "every 7 minutes" in err
    code, _, err = jobs(
        "schedule", "add", "x", "--job", PROBE, "--schedule", "hourly", "--kwargs", "{"
    )
    assert code == 2
    assert "--kwargs" in err
    assert not ScheduleEntry.objects.exists()


def test_cli_export_import_json_and_yaml(tmp_path):
    add_entry("a", {"job": PROBE, "schedule": "hourly"})
    code, out, _ = jobs("schedule", "export")
    assert code == 0
    assert json.loads(out) == export_entries()
    path = tmp_path / "entries.json"
    path.write_text(out)
    ScheduleEntry.objects.all().delete()
    code, out, err = jobs("schedule", "import", str(path), "--dry-run")
    assert code == 0, err
    assert "would create 1" in out
    assert not ScheduleEntry.objects.exists()
    assert jobs("schedule", "import", str(path))[0] == 0
    assert ScheduleEntry.objects.filter(name="a").exists()
    yaml = pytest.importorskip("yaml")
    code, out, _ = jobs("schedule", "export", "--format", "yaml")
    assert yaml.safe_load(out) == export_entries()
    yaml_path = tmp_path / "entries.yaml"
    yaml_path.write_text(out.replace("hourly", "daily"))
    assert jobs("schedule", "import", str(yaml_path))[0] == 0
    assert ScheduleEntry.objects.get(name="a").schedule == "daily"


def test_cli_settings_entries_are_read_only(settings):
    settings.DURABLE_JOBS = {"PERIODIC": {"nightly": {"job": PROBE, "schedule": "daily"}}}
    code, _, err = jobs("schedule", "remove", "nightly")
    assert code == 1
    assert "read-only" in err
    code, _, err = jobs("schedule", "add", "nightly", "--job", PROBE, "--schedule", "hourly")
    assert code == 1
    assert "E030" in err


# -- the admin --------------------------------------------------------------------------
XSS = "<script>alert('x')</script>"
ADD = "admin:django_durable_jobs_scheduleentry_add"
CHANGELIST = "admin:django_durable_jobs_scheduleentry_changelist"
SCHEDULES = "admin:django_durable_jobs_job_schedules"
SCHEDULES_ACT = "admin:django_durable_jobs_job_schedules_act"


def staff(*codenames: str):
    account = User.objects.create_user(f"u{uuid.uuid4().hex[:8]}", is_staff=True)
    for codename in codenames:
        account.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_durable_jobs", codename=codename)
        )
    client = Client()
    client.force_login(account)
    return client


def form(**changes: str) -> dict[str, str]:
    data = {
        "name": "nightly",
        "job": REPORT,
        "schedule": "30 2 * * *",
        "timezone": "Europe/Paris",
        "args": "[]",
        "kwargs": '{"kind": "full"}',
        "queue": "",
        "priority": "",
        "missed": "latest",
        "max_delay": "",
        "overlap": "on",
        "enabled": "on",
        "tags": "[]",
        "description": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def change_url(row: ScheduleEntry) -> str:
    return reverse("admin:django_durable_jobs_scheduleentry_change", args=[row.id])


def test_admin_add_validates_with_the_checks_messages_and_logs_it():
    assert staff("view_scheduleentry").post(reverse(ADD), form()).status_code == 403
    client = staff("add_scheduleentry", "change_scheduleentry", "view_scheduleentry")
    response = client.post(reverse(ADD), form(schedule="every 7 minutes", kwargs="{}"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;Every N&quot;" in page or "every 7 minutes" in page
    assert "do not fit" in page  # the kwargs problem, on its field
    assert not ScheduleEntry.objects.exists()
    response = client.post(reverse(ADD), form())
    assert response.status_code == 302
    row = ScheduleEntry.objects.get(name="nightly")
    assert row.kwargs == {"kind": "full"}
    assert LogEntry.objects.get(object_id=str(row.id)).action_flag == ADDITION


def test_admin_change_page_previews_five_fire_times_in_the_zone_and_utc():
    spec = {"job": REPORT, "schedule": "30 2 * * *", "kwargs": {"kind": "f"}, "tags": [XSS]}
    row = add_entry("nightly", {**spec, "timezone": "Europe/Paris"}, description=XSS)
    page = staff("view_scheduleentry").get(change_url(row)).content.decode()
    preview = page.split("Next fire times", 1)[1].split("</ol>", 1)[0]
    assert preview.count("02:30:00 CE") == 5
    assert preview.count(" UTC)") == 5
    listing = staff("view_scheduleentry").get(reverse(CHANGELIST))
    assert XSS not in listing.content.decode()
    assert XSS not in page


def test_admin_list_filters_by_tag_and_enabled_and_searches():
    add_entry("a", {"job": PROBE, "schedule": "hourly", "tags": ["reports", "x"]})
    add_entry("b", {"job": PROBE, "schedule": "hourly", "tags": ["reportsx"], "enabled": False})
    add_entry("c", {"job": REPORT, "schedule": "daily", "kwargs": {"kind": "k"}})
    client = staff("view_scheduleentry")

    def names(**query: str) -> list[str]:
        response = client.get(reverse(CHANGELIST), query)
        return [row.name for row in response.context["cl"].result_list]

    assert names(tag="reports") == ["a"]
    assert names(enabled__exact="0") == ["b"]
    assert names(q="report") == ["c"]  # the job's path
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "?tag=reportsx" in page


def test_admin_edit_duplicate_and_delete_each_need_their_permission():
    row = add_entry("nightly", {"job": REPORT, "schedule": "daily", "kwargs": {"kind": "f"}})
    viewer = staff("view_scheduleentry")
    assert viewer.post(change_url(row), form(schedule="hourly")).status_code == 403
    editor = staff("view_scheduleentry", "change_scheduleentry")
    assert editor.post(change_url(row), form(schedule="hourly")).status_code == 302
    row.refresh_from_db()
    assert row.schedule == "hourly"
    # "Save as new" duplicates, and needs the add permission.
    copy = form(name="nightly-copy", schedule="hourly", _saveasnew="Save as new")
    assert editor.post(change_url(row), copy).status_code == 403
    both = staff("view_scheduleentry", "change_scheduleentry", "add_scheduleentry")
    assert both.post(change_url(row), copy).status_code == 302
    assert ScheduleEntry.objects.filter(name="nightly-copy").exists()
    delete = reverse("admin:django_durable_jobs_scheduleentry_delete", args=[row.id])
    assert editor.post(delete, {"post": "yes"}).status_code == 403
    assert (
        staff("delete_scheduleentry", "view_scheduleentry")
        .post(delete, {"post": "yes"})
        .status_code
        == 302
    )
    assert not ScheduleEntry.objects.filter(name="nightly").exists()


def test_admin_actions_enable_disable_and_run_now_have_their_own_permissions():
    row = add_entry("nightly", {"job": REPORT, "schedule": "daily", "kwargs": {"kind": "f"}})
    data = {"action": "disable_entries", "_selected_action": [row.id]}
    staff("view_scheduleentry").post(reverse(CHANGELIST), data)
    assert ScheduleEntry.objects.get(id=row.id).enabled is True
    staff("view_scheduleentry", "change_scheduleentry").post(reverse(CHANGELIST), data)
    assert ScheduleEntry.objects.get(id=row.id).enabled is False
    assert LogEntry.objects.filter(object_id=str(row.id)).count() == 1
    run = {"action": "run_entries_now", "_selected_action": [row.id]}
    staff("view_scheduleentry", "change_scheduleentry").post(reverse(CHANGELIST), run)
    assert not Job.objects.exists()
    staff("view_scheduleentry", "manage_schedule").post(reverse(CHANGELIST), run)
    assert Job.objects.get().meta == {
        "schedule": "nightly",
        "fire_time": Job.objects.get().meta["fire_time"],
        "manual": True,
    }


def test_schedules_page_lists_both_kinds_and_guards_database_changes(settings):
    settings.DURABLE_JOBS = {"PERIODIC": {"from-settings": {"job": PROBE, "schedule": "daily"}}}
    add_entry("from-db", {"job": PROBE, "schedule": "hourly", "tags": [XSS]})
    page = staff("view_job").get(reverse(SCHEDULES)).content.decode()
    settings_row = page.split('data-schedule="from-settings"', 1)[1].split("</tr>", 1)[0]
    database_row = page.split('data-schedule="from-db"', 1)[1].split("</tr>", 1)[0]
    assert "from settings" in settings_row
    assert "database entry" in database_row
    assert XSS not in page
    # manage_schedule alone does not change a database entry; with change it does.
    act = {"name": "from-db", "action": "disable"}
    assert staff("view_job", "manage_schedule").post(reverse(SCHEDULES_ACT), act).status_code == 403
    both = staff("view_job", "manage_schedule", "change_scheduleentry")
    assert both.post(reverse(SCHEDULES_ACT), act).status_code == 302
    assert ScheduleEntry.objects.get(name="from-db").enabled is False
    page = both.get(reverse(SCHEDULES)).content.decode()
    assert "/scheduleentry/" in page.split('data-schedule="from-db"', 1)[1].split("</tr>", 1)[0]


def test_fire_due_schedules_includes_enabled_database_entries():
    from django_durable_jobs.testing import fire_due_schedules

    add_entry("on", {"job": PROBE, "schedule": "every_minute"})
    add_entry("off", {"job": PROBE, "schedule": "every_minute", "enabled": False})
    at = datetime(2026, 7, 1, 0, 45, 30, tzinfo=UTC)
    (handle,) = fire_due_schedules(at=at)
    assert Job.objects.get(id=handle.id).meta["schedule"] == "on"
    assert fire_times("on") == [at.replace(second=0)]
    assert fire_due_schedules(at=at, names=["on"]) == []  # the ledger has it already


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_hide_a_change_from_a_poller():
    """Versions are handed out in commit order: a poller whose marker is current is complete."""
    import random
    import threading
    import time

    from django.db import connections, transaction

    from django_durable_jobs.schedule_entries import DatabaseEntries

    names = [f"e{index}" for index in range(4)]
    for name in names:
        add_entry(name, {"job": PROBE, "schedule": "hourly"})
    view = DatabaseEntries("default", [])
    stop, errors, refreshes = threading.Event(), [], []

    def write(name: str) -> None:
        try:
            for minute in range(15):
                # Like the admin, which writes its log entry after save() in the same
                # transaction: the commit comes a while after the version was handed out.
                with transaction.atomic():
                    edit_entry(name, {"schedule": f"{minute} * * * *"})
                    time.sleep(random.uniform(0, 0.02))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def poll() -> None:
        try:
            while not stop.is_set():
                refreshes.append(view.refresh())
                if view.marker == change_marker("default"):
                    # Nothing newer committed: what it loaded is what the table holds.
                    held = dict(ScheduleEntry.objects.values_list("id", "version"))
                    loaded = {row_id: row.version for row_id, row in view.rows.items()}
                    if view.marker == change_marker("default") and loaded != held:
                        errors.append(AssertionError(f"stale view: {loaded} != {held}"))
        finally:
            connections.close_all()

    poller = threading.Thread(target=poll)
    writers = [threading.Thread(target=write, args=(name,)) for name in names]
    poller.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    poller.join()
    assert errors == []
    assert sum(refreshes) > 1
    versions = list(ScheduleEntry.objects.values_list("version", flat=True))
    assert len(set(versions)) == len(versions)
