"""Schedules without a database: the grammar, words, fire times, and the DST rules."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from django_durable_jobs.schedule_grammar import describe_cron, to_cron
from django_durable_jobs.schedules import (
    InvalidSchedule,
    UnknownTimeZone,
    cron,
    every,
    every_minute,
    hourly,
    parse_schedule,
)
from tests.conftest import ROOT

NEW_YORK = "America/New_York"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fire_times(text: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    return parse_schedule(text, zone).between(start, end)


# -- grammar ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("every_minute", "* * * * *"),
        ("hourly", "0 * * * *"),
        ("daily", "0 0 * * *"),
        ("weekly", "0 0 * * 0"),
        ("monthly", "0 0 1 * *"),
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("30 2 * * *", "30 2 * * *"),
        ("  30  2 * *   1-5 ", "30 2 * * 1-5"),
        ("*/10 * * * * *", "*/10 * * * * *"),
        ("every second", "* * * * * *"),
        ("every 15 seconds", "*/15 * * * * *"),
        ("Every 1 Second", "* * * * * *"),
        ("every minute", "* * * * *"),
        ("every 5 minutes", "*/5 * * * *"),
        ("every hour", "0 * * * *"),
        ("every 6 hours", "0 */6 * * *"),
        ("every hour at minute 15", "15 * * * *"),
        ("every day", "0 0 * * *"),
        ("every day at 04:30", "30 4 * * *"),
        ("daily at 4:05", "5 4 * * *"),
        ("every day at 04:30:15", "15 30 4 * * *"),
        ("every monday at 09:00", "0 9 * * 1"),
        ("every sunday", "0 0 * * 0"),
        ("every weekday at 08:00", "0 8 * * 1-5"),
        ("every weekend day at 10:00", "0 10 * * 0,6"),
        ("every month", "0 0 1 * *"),
        ("every month on day 15 at 06:00", "0 6 15 * *"),
    ],
)
def test_grammar(text, expression):
    assert to_cron(text) == expression
    parse_schedule(text, "UTC")  # croniter accepts it too


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "use a keyword"),
        ("sometimes", "is not a schedule"),
        ("every blue moon", "not in the English grammar"),
        ("every 7 minutes", "7 does not divide an hour"),
        ("every 45 seconds", "45 does not divide a minute"),
        ("every 5 hours", "5 does not divide a day"),
        ("every 0 minutes", "0 does not divide"),
        ("every day at 25:00", "00:00 to 23:59:59"),
        ("every month on day 32", "1 to 31"),
        ("61 * * * *", "not a valid cron expression"),
        ("* * * *", "is not a schedule"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_invalid_schedules_say_why(text, words):
    with pytest.raises(InvalidSchedule, match=words):
        parse_schedule(text, "UTC")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", None])
def test_unknown_zone(zone):
    with pytest.raises(UnknownTimeZone, match="not a known IANA time zone"):
        parse_schedule("hourly", zone)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("every_minute", "every minute"),
        ("every 15 seconds", "every 15 seconds"),
        ("every second", "every second"),
        ("every 5 minutes", "every 5 minutes"),
        ("hourly", "every hour"),
        ("every hour at minute 15", "every hour at minute 15"),
        ("every 6 hours", "every 6 hours"),
        ("30 2 * * *", "every day at 02:30"),
        ("0 9,17 * * *", "every day at 09:00 and 17:00"),
        ("every day at 04:30:15", "every day at 04:30:15"),
        ("0 8 * * 1-5", "every weekday at 08:00"),
        ("0 9 * * 1", "every Monday at 09:00"),
        ("0 9 * * 1,3", "every Monday and Wednesday at 09:00"),
        ("0 10 * * 0,6", "every Saturday and Sunday at 10:00"),
        ("monthly", "on day 1 of every month at 00:00"),
        ("@yearly", "every year on day 1 of January at 00:00"),
        ("0 9-17/2 * * *", "cron 0 9-17/2 * * *"),
    ],
)
def test_described_in_words(text, words):
    assert parse_schedule(text, "UTC").describe() == words
    assert describe_cron(to_cron(text)) == words


def test_seconds_field_comes_first():
    schedule = parse_schedule("30 0 * * * *", "UTC")  # second 30 of minute 0 of every hour
    assert schedule.upcoming(utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 1, 0, 30),
    ]


def test_fire_times_are_utc_instants_of_the_zone_wall_clock():
    schedule = parse_schedule("30 2 * * *", "Europe/Paris")
    assert schedule.upcoming(utc(2026, 1, 10), 2) == [
        utc(2026, 1, 10, 1, 30),
        utc(2026, 1, 11, 1, 30),
    ]
    assert schedule.upcoming(utc(2026, 7, 10), 1) == [utc(2026, 7, 10, 0, 30)]
    assert schedule.previous(utc(2026, 7, 10, 0, 30)) == utc(2026, 7, 10, 0, 30)
    assert schedule.previous(utc(2026, 7, 10, 0, 29, 59, 999999)) == utc(2026, 7, 9, 0, 30)
    assert schedule.next_after(utc(2026, 7, 10, 0, 30)) == utc(2026, 7, 11, 0, 30)


# -- DST: the proof ------------------------------------------------------------
def test_new_york_0130_and_0230_across_the_spring_change():
    """March 8 2026, 02:00 EST -> 03:00 EDT: 02:30 does not exist and fires at 03:00 EDT."""
    start, end = utc(2026, 3, 6, 12), utc(2026, 3, 10, 12)
    assert fire_times("30 1 * * *", NEW_YORK, start, end) == [
        utc(2026, 3, 7, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 6, 30),  # 01:30 EST, half an hour before the change
        utc(2026, 3, 9, 5, 30),  # 01:30 EDT
        utc(2026, 3, 10, 5, 30),
    ]
    assert fire_times("30 2 * * *", NEW_YORK, start, end) == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # 02:30 does not exist: once, when the clock jumps (03:00 EDT)
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]


def test_new_york_0130_and_0230_across_the_autumn_change():
    """November 1 2026, 02:00 EDT -> 01:00 EST: 01:30 happens twice and fires once, the first."""
    start, end = utc(2026, 10, 30, 12), utc(2026, 11, 3, 12)
    assert fire_times("30 1 * * *", NEW_YORK, start, end) == [
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first of the two; not 06:30 UTC
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
        utc(2026, 11, 3, 6, 30),
    ]
    assert fire_times("30 2 * * *", NEW_YORK, start, end) == [
        utc(2026, 10, 31, 6, 30),  # 02:30 EDT
        utc(2026, 11, 1, 7, 30),  # 02:30 EST: exists once, 25 hours after the day before's
        utc(2026, 11, 2, 7, 30),
        utc(2026, 11, 3, 7, 30),
    ]


def test_every_hour_schedules_follow_real_time_through_both_changes():
    day = ZoneInfo(NEW_YORK)
    spring = fire_times(
        "hourly",
        NEW_YORK,
        datetime(2026, 3, 8, tzinfo=day) - timedelta(seconds=1),
        datetime(2026, 3, 9, tzinfo=day) - timedelta(seconds=1),
    )
    autumn = fire_times(
        "hourly",
        NEW_YORK,
        datetime(2026, 11, 1, tzinfo=day) - timedelta(seconds=1),
        datetime(2026, 11, 2, tzinfo=day) - timedelta(seconds=1),
    )
    assert len(spring) == 23
    assert len(autumn) == 25
    for times in (spring, autumn):
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(times))
    assert utc(2026, 11, 1, 5) in autumn
    assert utc(2026, 11, 1, 6) in autumn
    minutes = fire_times("every_minute", NEW_YORK, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))
    assert len(minutes) == 240 == len(set(minutes))


# -- DST: against a brute-force reading of the rules ---------------------------------
ZONES = [
    "America/New_York",
    "Europe/Paris",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute changes
    "America/Santiago",  # changes at midnight
    "America/Havana",
    "Pacific/Chatham",
    "Asia/Kolkata",  # no DST
]
EXPRESSIONS = [
    "30 1 * * *",
    "30 2 * * *",
    "0 * * * *",
    "*/20 * * * *",
    "15,45 0-3 * * *",
    "0 0 * * *",
    "30 23 * * *",
    "* 2 * * *",
    "10 * * * 0",
    "0,30 1,2 * * *",
]


def reference(expression: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """The documented rules applied to every matching wall time (croniter, naive) in the window."""
    zone = ZoneInfo(zone_name)
    every_hour = parse_schedule(expression, zone_name).every_hour
    found: set[datetime] = set()
    wall = (start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=4)).replace(
        second=0, microsecond=0
    )
    last = end.astimezone(zone).replace(tzinfo=None) + timedelta(hours=4)
    matches = croniter(expression, wall - timedelta(minutes=1))
    while (wall := matches.get_next(datetime)) <= last:
        fold0 = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        fold1 = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if fold0 == fold1:
            found.add(fold0)
        elif fold0.astimezone(zone).replace(tzinfo=None) == wall:  # happens twice
            found.add(min(fold0, fold1))
            if every_hour:
                found.add(max(fold0, fold1))
        elif not every_hour:  # does not exist: fires when the clock jumps
            instant = min(fold0, fold1)
            while instant.astimezone(zone).replace(tzinfo=None) < wall:
                instant += timedelta(minutes=1)
            found.add(instant)
    return sorted(t for t in found if start < t <= end)


def changes(zone_name: str, year: int) -> list[datetime]:
    zone = ZoneInfo(zone_name)
    instants, moment = [], datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        moment += timedelta(hours=1)
        if moment.astimezone(zone).utcoffset() != offset:
            offset = moment.astimezone(zone).utcoffset()
            instants.append(moment)
    return instants or [datetime(year, 6, 1, tzinfo=UTC)]


@pytest.mark.parametrize("zone_name", ZONES)
def test_fire_times_match_the_rules_around_every_change(zone_name):
    rng = random.Random(zone_name)
    for change in changes(zone_name, 2026):
        start, end = change - timedelta(hours=26), change + timedelta(hours=26)
        for expression in EXPRESSIONS:
            schedule = parse_schedule(expression, zone_name)
            expected = reference(expression, zone_name, start, end)
            assert schedule.between(start, end) == expected, (zone_name, expression, change)
            for _ in range(25):
                probe = start + timedelta(seconds=rng.randrange(int((end - start).total_seconds())))
                later = [t for t in expected if t > probe]
                earlier = [t for t in expected if t <= probe]
                if later:
                    assert schedule.next_after(probe) == later[0], (expression, probe)
                if earlier:
                    assert schedule.previous(probe) == earlier[-1], (expression, probe)


# -- helpers for settings.py -----------------------------------------------------------
def test_helpers_return_plain_entries():
    assert every_minute("shop.jobs.x") == {"job": "shop.jobs.x", "schedule": "every_minute"}
    assert hourly("shop.jobs.report", kwargs={"kind": "short"}, tags=("reports",)) == {
        "job": "shop.jobs.report",
        "schedule": "hourly",
        "kwargs": {"kind": "short"},
        "tags": ["reports"],
    }
    assert cron("0 3 * * *", "shop.jobs.y", timezone="Europe/Paris", missed="skip") == {
        "job": "shop.jobs.y",
        "schedule": "0 3 * * *",
        "timezone": "Europe/Paris",
        "missed": "skip",
    }
    assert every("every 5 minutes", "shop.jobs.z", name="z", overlap=False)["overlap"] is False
    with pytest.raises(TypeError):
        hourly("shop.jobs.x", kwarg={})  # a typo fails at once


def test_helpers_import_in_settings_without_django_set_up():
    """settings.py imports the helpers before Django has settings or apps: nothing may need them."""
    code = (
        "import sys\n"
        "from django_durable_jobs.schedules import cron, every_minute, hourly\n"
        "entries = {'a': every_minute('shop.jobs.x'), 'b': cron('0 3 * * *', 'shop.jobs.y',"
        " timezone='Europe/Paris'), 'c': hourly('shop.jobs.z')}\n"
        "from django.conf import settings\n"
        "assert not settings.configured, 'settings were read'\n"
        "assert 'django_durable_jobs.models' not in sys.modules, 'models were imported'\n"
        "print(sorted(entries))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a', 'b', 'c']"
