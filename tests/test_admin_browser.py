"""The console in a real browser: Playwright driving Debian's Chromium against live_server.

Screenshots go to ``test-artifacts/`` (one set per database and Django version). Without
Chromium or the ``playwright`` package the tests skip with the reason; under
``CI=true`` they fail instead, so CI cannot pass without really running them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import django
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job, QueueState, ScheduleState, Worker
from tests.conftest import ROOT
from tests.factories import error_entry, make_job, make_jobs

CHROMIUM = os.environ.get("DDJ_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.django_db(transaction=True)


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the 'playwright' package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium is not at {CHROMIUM} (apt-get install chromium, or set DDJ_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _unavailable()
    if reason:
        message = f"BROWSER TESTS NOT RUN: {reason}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the tests'
    # own ORM calls are ordinary synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server):
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, base_url=live_server.url
    )
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.goto("/admin/login/")
    tab.fill("#id_username", "admin")
    tab.fill("#id_password", "pw")
    tab.click("input[type=submit]")
    tab.wait_for_url("**/admin/")
    yield tab
    context.close()


def shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    version = "django{}{}".format(*django.VERSION[:2])
    tab.screenshot(
        path=str(ARTIFACTS / f"{connection.vendor}-{version}-{name}.png"), full_page=True
    )


def activity() -> Job:
    """A believable hour: finished jobs per minute, a backlog, failures, workers."""
    now = timezone.now()
    for minutes_ago in range(0, 60, 3):
        finished = now - timedelta(minutes=minutes_ago)
        make_jobs(5 + (minutes_ago * 7) % 23, JobStatus.SUCCESSFUL, finished_at=finished)
        if minutes_ago % 9 == 0:
            make_jobs(1 + minutes_ago % 4, JobStatus.FAILED, queue="emails", finished_at=finished)
    make_jobs(40, JobStatus.READY, queue="emails", run_at=now - timedelta(minutes=12))
    make_jobs(6, JobStatus.READY, queue="reports", run_at=now + timedelta(hours=1))
    make_jobs(3, JobStatus.RUNNING, queue="default")
    for host in ("web-1", "web-2"):
        Worker.objects.create(id=uuid.uuid4(), hostname=host, pid=4100, concurrency=8)
    return make_job(
        JobStatus.FAILED,
        name="tests.testapp.jobs.always_fails",
        queue="emails",
        args=["customer-42", {"items": [1, 2, 3], "note": "<b>not bold</b>"}],
        kwargs={"retry_reason": "smtp timeout"},
        errors=[
            error_entry(n, f"SMTP server timed out after {10 * n}s", worker=str(uuid.uuid4()))
            for n in (1, 2, 3)
        ],
    )


def test_dashboard_and_pausing_a_queue(page):
    activity()
    page.goto("/admin/django_durable_jobs/job/dashboard/")
    page.wait_for_selector("svg.ddj-chart")
    assert page.locator("tr[data-queue=emails]").is_visible()
    assert page.locator("#workers tbody tr").count() == 2
    shot(page, "dashboard")

    page.locator("tr[data-queue=emails] button", has_text="Pause").click()
    page.wait_for_selector("text=Paused: emails.")
    row = page.locator("tr[data-queue=emails]")
    assert "paused" in row.inner_text()
    assert QueueState.objects.get(name="emails").paused
    shot(page, "dashboard-paused")

    row.locator("button", has_text="Resume").click()
    page.wait_for_selector("text=Resumed: emails.")
    assert not QueueState.objects.get(name="emails").paused


def test_retry_a_failed_job_from_its_page(page):
    failed = activity()
    page.goto(f"/admin/django_durable_jobs/job/{failed.id}/change/")
    page.wait_for_selector("text=Attempt history")
    assert "<b>not bold</b>" in page.locator("pre.ddj-json").first.inner_text()
    shot(page, "job-failed")

    page.click("button[data-action=retry]")
    page.wait_for_selector("text=1 job retried")
    job = Job.objects.get(id=failed.id)
    assert (job.status, job.attempts) == (JobStatus.READY, 0)
    assert job.meta["retried"][0]["by"] == "admin"
    assert "Retried by an operator" in page.content()
    shot(page, "job-retried")


def test_jobs_list_and_a_bulk_retry_of_everything_matching(page):
    activity()
    make_jobs(55, JobStatus.FAILED, queue="emails", errors=[error_entry(1, "connection reset")])
    failed = Job.objects.filter(status=JobStatus.FAILED, queue="emails").count()
    page.goto("/admin/django_durable_jobs/job/?status=FAILED&queue=emails")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 50  # one page
    # Every column fits 1280 px beside the app sidebar and the filters: nothing to scroll.
    overflow = page.evaluate(
        "() => { const r = document.querySelector('#changelist .results');"
        " return r.scrollWidth - r.clientWidth; }"
    )
    widths = page.evaluate(
        "() => [...document.querySelectorAll('#result_list thead th')]"
        ".map(th => th.className + ':' + th.getBoundingClientRect().width)"
    )
    assert overflow <= 0, f"the job list is {overflow}px too wide at 1280 px: {widths}"
    assert page.locator("#result_list th.column-last_error").is_visible()
    shot(page, "jobs-list")

    page.check("#action-toggle")
    page.click(f"text=Select all {failed} jobs matching this filter")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("text=Yes, go ahead")
    assert f"{failed} jobs would be retried" in page.content()
    shot(page, "bulk-confirm")
    page.click("text=Yes, go ahead")
    page.wait_for_selector(f"text={failed} jobs retried")
    assert not Job.objects.filter(status=JobStatus.FAILED, queue="emails").exists()
    shot(page, "bulk-done")


def test_dark_theme(page):
    activity()
    page.emulate_media(color_scheme="dark")
    page.goto("/admin/django_durable_jobs/job/dashboard/")
    page.wait_for_selector("svg.ddj-chart")
    shot(page, "dashboard-dark")
    failed = Job.objects.filter(status=JobStatus.FAILED).first()
    page.goto(f"/admin/django_durable_jobs/job/{failed.id}/change/")
    shot(page, "job-dark")


def test_disabling_a_schedule(page, settings):
    settings.DURABLE_JOBS = {
        **settings.DURABLE_JOBS,
        "PERIODIC": {
            "nightly-report": {
                "job": "tests.testapp.jobs.report",
                "schedule": "30 2 * * *",
                "timezone": "Europe/Paris",
                "kwargs": {"kind": "full"},
            },
            "heartbeat": {"job": "tests.testapp.jobs.periodic_probe", "schedule": "every_minute"},
        },
    }
    page.goto("/admin/django_durable_jobs/job/schedules/")
    row = page.locator("tr[data-schedule=nightly-report]")
    assert "Europe/Paris" in row.inner_text()
    assert " UTC" in row.inner_text()  # the entry's zone, and UTC beside it
    too_wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert too_wide <= 0, f"the schedules page is {too_wide}px too wide at 1280 px"
    shot(page, "schedules")

    row.locator("button", has_text="Disable").click()
    page.wait_for_selector("text=Schedule “nightly-report” is disabled.")
    assert ScheduleState.objects.get(name="nightly-report").enabled is False
    assert "set by an operator" in page.locator("tr[data-schedule=nightly-report]").inner_text()
    shot(page, "schedule-disabled")
