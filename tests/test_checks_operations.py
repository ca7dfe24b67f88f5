"""System checks of the retention and health settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.checks import run_checks

# Django 6 asks SQLite whether it supports JSONField during the model checks
# that run_checks() includes: the checks need database access.
pytestmark = pytest.mark.django_db(databases="__all__")


def ids(settings, **durable_jobs) -> list[str]:
    settings.DURABLE_JOBS = durable_jobs
    return [m.id for m in run_checks() if m.id and m.id.startswith("django_durable_jobs")]


@pytest.mark.parametrize(
    "retention",
    [
        {"SUCCESSFUL": 3600},
        {"FAILED": None, "CANCELLED": timedelta(days=2)},
        {},
    ],
)
def test_good_retention(settings, retention):
    assert ids(settings, RETENTION=retention) == []


@pytest.mark.parametrize(
    "retention",
    [
        [("SUCCESSFUL", 10)],
        {"READY": 3600},
        {"SUCCESSFUL": 0},
        {"FAILED": -5},
        {"FAILED": "7d"},
        {"CANCELLED": timedelta(0)},
    ],
)
def test_bad_retention(settings, retention):
    assert ids(settings, RETENTION=retention) == ["django_durable_jobs.E009"]


@pytest.mark.parametrize(
    ("value", "expected"), [(None, []), (60, []), (0, ["E003"]), ("5", ["E003"])]
)
def test_health_max_ready_age(settings, value, expected):
    found = ids(settings, HEALTH_MAX_READY_AGE=value)
    assert found == [f"django_durable_jobs.{code}" for code in expected]
