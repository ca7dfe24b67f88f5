"""Every system check fires on its bad input, with its stable id."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

# Django 6 asks the database whether it supports JSONField (SQLite) during the
# model checks that run_checks() includes.
pytestmark = pytest.mark.django_db(databases="__all__")


def check_ids(settings, **durable_jobs) -> dict[str, str]:
    settings.DURABLE_JOBS = durable_jobs
    return {
        message.id: message.msg
        for message in run_checks()
        if message.id and message.id.startswith("django_durable_jobs")
    }


def test_default_settings_pass(settings):
    assert check_ids(settings) == {}


def test_not_a_dict(settings):
    settings.DURABLE_JOBS = ["oops"]
    ids = [m.id for m in run_checks() if m.id and m.id.startswith("django_durable_jobs")]
    assert ids == ["django_durable_jobs.E001"]


def test_unknown_key_suggests_the_close_one(settings):
    settings.DURABLE_JOBS = {"CONCURENCY": 4}
    (message,) = [m for m in run_checks() if m.id == "django_durable_jobs.E002"]
    assert "CONCURENCY" in message.msg
    assert message.hint == "Did you mean 'CONCURRENCY'?"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CONCURRENCY", 0),
        ("CONCURRENCY", 2.5),
        ("POLL_INTERVAL", 0),
        ("SHUTDOWN_TIMEOUT", -1),
        ("MAX_PAYLOAD_BYTES", "big"),
        ("DEFAULT_MAX_ATTEMPTS", True),
        ("DEFAULT_TIMEOUT", 0),
        ("LISTEN_NOTIFY", "yes"),
        ("PERIODIC", "every minute"),
    ],
)
def test_bad_values(settings, key, value):
    ids = check_ids(settings, **{key: value})
    assert "django_durable_jobs.E003" in ids
    assert key in ids["django_durable_jobs.E003"]


def test_lease_must_outlast_two_heartbeats(settings):
    ids = check_ids(settings, LEASE_SECONDS=10, HEARTBEAT_INTERVAL=6)
    assert "django_durable_jobs.E004" in ids


@pytest.mark.parametrize(
    "options",
    [
        {"QUEUES": []},
        {"QUEUES": ["ok", "not ok"]},
        {"DEFAULT_QUEUE": "bad queue"},
        {"QUEUES": ["emails"], "DEFAULT_QUEUE": "default"},
    ],
)
def test_queue_settings(settings, options):
    assert "django_durable_jobs.E005" in check_ids(settings, **options)


def test_job_on_an_undeclared_queue(settings):
    import dataclasses

    from django_durable_jobs import registry
    from tests.testapp.jobs import add

    # "emails" is a queue of the TASKS backend in the test settings; the flow
    # control tests' jobs use "rated" and "gated", bench/rate_limits.py the bench ones.
    declared = ["default", "emails", "rated", "gated", "bench_rated", "bench_queue"]
    assert check_ids(settings, QUEUES=declared) == {}
    registry.register(dataclasses.replace(add, queue="reports"))
    try:
        ids = check_ids(settings, QUEUES=declared)
        assert "'reports'" in ids["django_durable_jobs.E006"]
    finally:
        registry.register(add)


def test_unknown_database_alias(settings):
    ids = check_ids(settings, DATABASE="jobs")
    assert "'jobs'" in ids["django_durable_jobs.E007"]


def test_manage_py_check_fails_on_errors(settings):
    settings.DURABLE_JOBS = {"CONCURRENCY": -1}
    with pytest.raises(SystemCheckError, match=r"django_durable_jobs\.E003"):
        call_command("check")


def test_runworker_refuses_to_start_on_errors(settings):
    # runworker runs only the model and settings checks (not the URL, template and
    # admin ones): a bad setting must still stop it before it claims anything.
    settings.DURABLE_JOBS = {"CONCURRENCY": -1}
    with pytest.raises(SystemCheckError, match=r"django_durable_jobs\.E003"):
        call_command("runworker", "--burst", skip_checks=False)


# -- strict settings (issue: a bad setting is a check error, with the fix) -------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"RETRY_JITTER": 1.5}, "RETRY_JITTER"),
        ({"RETRY_BASE_DELAY": 60, "RETRY_MAX_DELAY": 10}, "RETRY_MAX_DELAY"),
    ],
)
def test_inconsistent_backoff_settings_are_errors(settings, overrides, fragment):
    from django_durable_jobs.checks import check_settings

    settings.DURABLE_JOBS = {**settings.DURABLE_JOBS, **overrides}
    messages = [m for m in check_settings() if m.id == "django_durable_jobs.E010"]
    assert len(messages) == 1
    assert fragment in messages[0].msg
    assert messages[0].hint


def test_opentelemetry_must_be_a_bool_and_installed(settings, monkeypatch):
    assert "django_durable_jobs.E003" in check_ids(settings, OPENTELEMETRY="yes")
    assert check_ids(settings, OPENTELEMETRY=True) == {}  # installed with the dev extra
    from django_durable_jobs import checks

    real = checks.importlib.util.find_spec
    monkeypatch.setattr(
        checks.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "opentelemetry" else real(name, *a),
    )
    ids = check_ids(settings, OPENTELEMETRY=True)
    assert "opentelemetry-api is not installed" in ids["django_durable_jobs.E011"]
