"""Every PERIODIC system check fires on its bad input and names the entry."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_durable_jobs.periodic import PeriodicConfigError, get_entries
from django_durable_jobs.schedules import every_minute

# Django 6 asks SQLite whether it supports JSONField during the model checks
# that run_checks() includes: the checks need database access.
pytestmark = pytest.mark.django_db(databases="__all__")

GOOD = {"job": "tests.testapp.jobs.noop", "schedule": "every_minute"}


def periodic_errors(settings, periodic) -> list[tuple[str, str, str]]:
    settings.DURABLE_JOBS = {"PERIODIC": periodic}
    return [
        (message.id, message.obj, message.msg)
        for message in run_checks()
        if message.id and message.id.startswith("django_durable_jobs")
    ]


def test_good_entries_pass(settings):
    periodic = {
        "clear-sessions": GOOD,
        "hourly-report": {
            "job": "tests.testapp.jobs.report",
            "schedule": "hourly",
            "kwargs": {"kind": "short"},
            "queue": "reports",
            "priority": 10,
            "timezone": "Europe/Paris",
            "enabled": False,
            "tags": ["reports"],
            "run_on_start": True,
            "missed": "catch_up",
            "max_delay": 3600,
            "overlap": False,
        },
        "by-name": {"job": "stable.name", "schedule": "30 2 * * *"},
        "with-context": {"job": "tests.testapp.jobs.periodic_probe", "schedule": "@daily"},
    }
    assert periodic_errors(settings, periodic) == []
    assert [entry.name for entry in get_entries(periodic)] == list(periodic)


def test_the_list_form_and_the_helpers(settings):
    periodic = [every_minute("tests.testapp.jobs.noop", name="a"), {**GOOD, "name": "b"}]
    assert periodic_errors(settings, periodic) == []
    assert [entry.name for entry in get_entries(periodic)] == ["a", "b"]


@pytest.mark.parametrize(
    ("periodic", "code", "entry", "words"),
    [
        ({"": GOOD}, "E101", "", "non-empty name"),
        ({"   ": GOOD}, "E101", "   ", "non-empty name"),
        ({" padded": GOOD}, "E101", " padded", "leading or trailing spaces"),
        ({"x" * 201: GOOD}, "E101", "x" * 201, "longer than 200"),
        ({"a": {**GOOD, "name": "b"}}, "E101", "a", "the key is the name"),
        ([GOOD], "E101", "#1", "non-empty name"),
        ({"night\x00ly": GOOD}, "E101", "night\x00ly", "control character"),
        ({"night\x1b[2Jly": GOOD}, "E101", "night\x1b[2Jly", "control character"),
        ([{**GOOD, "name": "dup"}, {**GOOD, "name": "dup"}], "E102", "dup", "more than once"),
        ({"nightly": "0 3 * * *"}, "E103", "nightly", "must be a dict"),
        ({"nightly": {"schedule": "hourly"}}, "E103", "nightly", "has no 'job'"),
        ({"nightly": {"job": "tests.testapp.jobs.noop"}}, "E103", "nightly", "no 'schedule'"),
        ({"nightly": {**GOOD, "kwarg": {}}}, "E103", "nightly", "unknown option 'kwarg'"),
        ({"nightly": {**GOOD, "schedule": "every 7 minutes"}}, "E104", "nightly", "divide"),
        ({"nightly": {**GOOD, "schedule": "61 * * * *"}}, "E104", "nightly", "not a valid cron"),
        ({"nightly": {**GOOD, "schedule": "0 0 31 2 *"}}, "E104", "nightly", "never fires"),
        ({"nightly": {**GOOD, "schedule": "5-1 * * * *"}}, "E104", "nightly", "starts after"),
        ({"nightly": {**GOOD, "schedule": "0 22-2 * * *"}}, "E104", "nightly", "22-23,0-2"),
        ({"nightly": {**GOOD, "timezone": "Europe/Pariss"}}, "E105", "nightly", "IANA"),
        ({"nightly": {**GOOD, "job": "shop.jobs.nope"}}, "E106", "nightly", "does not import"),
        (
            {"nightly": {**GOOD, "job": "tests.testapp.jobs.not_a_job"}},
            "E106",
            "nightly",
            "is not a @job",
        ),
        (
            {"nightly": {**GOOD, "job": "tests.testapp.jobs.missing"}},
            "E106",
            "nightly",
            "has no 'missing'",
        ),
        ({"nightly": {**GOOD, "job": "nodots"}}, "E106", "nightly", "dotted path"),
        ({"nightly": {**GOOD, "args": "abc"}}, "E107", "nightly", "args must be a list"),
        ({"nightly": {**GOOD, "kwargs": {1: 2}}}, "E107", "nightly", "string keys"),
        ({"nightly": {**GOOD, "args": [1]}}, "E107", "nightly", "do not fit"),
        (
            {"nightly": {"job": "tests.testapp.jobs.report", "schedule": "hourly"}},
            "E107",
            "nightly",
            "missing a required argument: 'kind'",
        ),
        (
            {"nightly": {"job": "tests.testapp.jobs.echo", "schedule": "hourly", "args": [{1}]}},
            "E107",
            "nightly",
            "args[0]",
        ),
        ({"nightly": {**GOOD, "priority": 500}}, "E108", "nightly", "priority=500"),
        ({"nightly": {**GOOD, "queue": "bad queue"}}, "E108", "nightly", "queue='bad queue'"),
        ({"nightly": {**GOOD, "enabled": "yes"}}, "E108", "nightly", "enabled='yes'"),
        ({"nightly": {**GOOD, "overlap": 0}}, "E108", "nightly", "overlap=0"),
        ({"nightly": {**GOOD, "run_on_start": None}}, "E108", "nightly", "run_on_start"),
        ({"nightly": {**GOOD, "tags": "ops"}}, "E108", "nightly", "tags='ops'"),
        ({"nightly": {**GOOD, "missed": "all"}}, "E108", "nightly", "missed='all'"),
        ({"nightly": {**GOOD, "max_delay": -5}}, "E108", "nightly", "max_delay=-5"),
        ({"nightly": {**GOOD, "missed": "catch_up"}}, "E108", "nightly", "needs max_delay"),
    ],
)
def test_each_check_fires_and_names_the_entry(settings, periodic, code, entry, words):
    errors = periodic_errors(settings, periodic)
    matching = [e for e in errors if e[0] == f"django_durable_jobs.{code}"]
    assert matching, errors
    _, obj, message = matching[0]
    assert obj == f"DURABLE_JOBS['PERIODIC'][{entry!r}]"
    assert words in message
    if code not in ("E101",):
        assert repr(entry) in message  # the message itself names the entry


def test_an_unknown_queue_is_refused_when_queues_are_declared(settings):
    settings.DURABLE_JOBS = {
        "QUEUES": ["default"],
        "PERIODIC": {"nightly": {**GOOD, "queue": "reports"}},
    }
    ids = {m.id: m.msg for m in run_checks() if m.id and m.id.startswith("django_durable")}
    assert "unknown queue 'reports'" in ids["django_durable_jobs.E108"]


def test_every_problem_of_an_entry_is_reported_at_once(settings):
    errors = periodic_errors(
        settings,
        {
            "nightly": {
                "job": "tests.testapp.jobs.not_a_job",
                "schedule": "every 7 minutes",
                "timezone": "Mars/Base",
                "tag": ["x"],
            },
            "fine": GOOD,
        },
    )
    assert sorted(e[0][-4:] for e in errors) == ["E103", "E104", "E105", "E106"]
    assert all(e[1] == "DURABLE_JOBS['PERIODIC']['nightly']" for e in errors)


def test_manage_py_check_names_each_broken_entry(settings):
    settings.DURABLE_JOBS = {
        "PERIODIC": {
            "nightly": {**GOOD, "schedule": "every blue moon"},
            "reports": {**GOOD, "job": "shop.jobs.gone"},
        }
    }
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    text = str(raised.value)
    assert "DURABLE_JOBS['PERIODIC']['nightly']: (django_durable_jobs.E104)" in text
    assert "DURABLE_JOBS['PERIODIC']['reports']: (django_durable_jobs.E106)" in text


def test_get_entries_refuses_a_broken_setting_listing_every_problem():
    with pytest.raises(PeriodicConfigError) as raised:
        get_entries({"a": {**GOOD, "schedule": "nope"}, "b": {**GOOD, "priority": 1000}})
    message = str(raised.value)
    assert "2 problem(s)" in message
    assert "'a'" in message
    assert "'b'" in message
    assert [p.code for p in raised.value.problems] == ["E104", "E108"]


def test_every_periodic_check_id_is_documented():
    import re

    from django_durable_jobs import periodic
    from tests.conftest import ROOT

    codes = {value for key, value in vars(periodic).items() if re.fullmatch(r"E1\d\d", str(value))}
    documented = set(
        re.findall(
            r"django_durable_jobs\.(E1\d\d)", (ROOT / "docs/reference/checks.md").read_text()
        )
    )
    assert codes == documented == {f"E10{i}" for i in range(1, 9)}
