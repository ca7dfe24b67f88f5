"""The admin console with Django's test client: pages, actions, permissions, escaping."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.admin.paging import JobPaginator
from django_durable_jobs.models import Job, QueueState, ScheduleState, ScheduleTick, Worker
from tests.factories import error_entry, make_job, make_jobs

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:django_durable_jobs_job_changelist"
DASHBOARD = "admin:django_durable_jobs_job_dashboard"

XSS = "<script>alert('x')</script>"


def user(*codenames: str, staff: bool = True, superuser: bool = False) -> User:
    account = User.objects.create_user(
        f"u{uuid.uuid4().hex[:8]}", password="pw", is_staff=staff, is_superuser=superuser
    )
    for codename in codenames:
        account.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_durable_jobs", codename=codename)
        )
    return account


def client_for(account: User | None) -> Client:
    client = Client()
    if account is not None:
        client.force_login(account)
    return client


def detail_url(job: Job, action: str = "change") -> str:
    return reverse(f"admin:django_durable_jobs_job_{action}", args=[job.id])


# -- who may see what ----------------------------------------------------------------


@pytest.mark.parametrize("url_name", [CHANGELIST, DASHBOARD])
def test_anonymous_and_non_staff_are_sent_to_login(url_name):
    url = reverse(url_name)
    response = client_for(None).get(url)
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    response = client_for(user("view_job", staff=False)).get(url)
    assert response.status_code == 302


def test_staff_without_view_permission_is_refused():
    client = client_for(user())
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse(DASHBOARD)).status_code == 403
    job = make_job(JobStatus.FAILED)
    assert client.get(detail_url(job)).status_code == 403


def test_view_only_staff_sees_lists_but_no_payload_and_no_actions():
    job = make_job(JobStatus.FAILED, args=["secret-argument"])
    client = client_for(user("view_job"))
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert f">{job.id}<" in page
    assert "retry_jobs" not in page
    assert "boom" not in page  # the last error is payload
    page = client.get(detail_url(job)).content.decode()
    assert "secret-argument" not in page
    assert "Hidden: seeing a job" in page
    assert "builtins.ValueError" in page  # what failed is not secret; the message is
    assert "Traceback" not in page
    assert 'data-action="retry"' not in page
    raw = reverse("admin:django_durable_jobs_job_raw", args=[job.id, "args"])
    assert client.get(raw).status_code == 403


def test_payload_permission_shows_arguments_errors_and_raw_json():
    job = make_job(JobStatus.FAILED, args=["visible-argument"], kwargs={"n": 1})
    client = client_for(user("view_job", "view_job_payload"))
    page = client.get(detail_url(job)).content.decode()
    assert "visible-argument" in page
    assert "ValueError: boom" in page
    raw = client.get(reverse("admin:django_durable_jobs_job_raw", args=[job.id, "args"]))
    assert raw["Content-Type"].startswith("text/plain")
    assert raw["X-Content-Type-Options"] == "nosniff"
    assert '"visible-argument"' in raw.content.decode()
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert "boom" in listing


def test_html_and_script_in_payloads_and_errors_are_escaped():
    job = make_job(
        JobStatus.FAILED,
        name=f"evil{XSS}",
        queue="default",
        args=[XSS],
        kwargs={XSS: XSS},
        errors=[error_entry(1, XSS, exception_class=f"mod.{XSS}", worker=XSS, by=XSS)],
    )
    client = client_for(user(superuser=True))
    for url in (detail_url(job), reverse(CHANGELIST), reverse(DASHBOARD)):
        page = client.get(url).content.decode()
        assert XSS not in page, url
    page = client.get(detail_url(job)).content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


# -- the jobs list ---------------------------------------------------------------------


def test_list_filters_and_search():
    failed = make_job(JobStatus.FAILED, queue="emails", name="tests.testapp.jobs.always_fails")
    ready = make_job(JobStatus.READY, queue="reports")
    client = client_for(user(superuser=True))

    def ids(**params) -> set[int]:
        response = client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {job.id for job in response.context["cl"].result_list}

    assert ids() == {failed.id, ready.id}
    assert ids(status="FAILED") == {failed.id}
    assert ids(queue="reports") == {ready.id}
    assert ids(name="tests.testapp.jobs.always_fails") == {failed.id}
    assert ids(period="finished_1h") == {failed.id}
    assert ids(q=f"#{ready.id}") == {ready.id}
    assert ids(q="ALWAYS_fai") == {failed.id}  # part of a registered name, any case
    assert ids(q="nothing-like-it") == set()


def test_list_filter_choices_come_from_the_registry_and_queues():
    make_job(queue="emails")
    page = client_for(user(superuser=True)).get(reverse(CHANGELIST)).content.decode()
    assert "?name=tests.testapp.jobs.flaky" in page  # registered, no row needed
    assert "?queue=emails" in page


def test_large_lists_get_a_capped_count_and_bounded_pages(monkeypatch):
    monkeypatch.setattr(JobPaginator, "max_pages", 2)
    make_jobs(130, JobStatus.SUCCESSFUL)
    client = client_for(user(superuser=True))
    response = client.get(reverse(CHANGELIST))
    info = response.context["cl"].paginator.count_info
    assert info.kind in ("at_least", "estimate")
    page = response.content.decode()
    assert "the first 2 pages are shown" in page
    assert client.get(reverse(CHANGELIST), {"p": "5"}).status_code == 302  # past the last page


# -- actions from the list ----------------------------------------------------------


def post_action(client: Client, action: str, ids: list[int], **extra) -> object:
    data = {"action": action, "index": "0", "_selected_action": [str(i) for i in ids], **extra}
    return client.post(reverse(CHANGELIST) + extra.pop("query", ""), data)


@pytest.mark.parametrize(
    ("action", "codename", "status", "expected"),
    [
        ("retry_jobs", "retry_job", JobStatus.FAILED, JobStatus.READY),
        ("cancel_jobs", "cancel_job", JobStatus.READY, JobStatus.CANCELLED),
    ],
)
def test_each_action_needs_its_permission(action, codename, status, expected):
    job = make_job(status)
    refused = client_for(user("view_job"))
    response = post_action(refused, action, [job.id])
    assert response.status_code == 200  # Django: "No action selected."
    assert Job.objects.get(id=job.id).status == status
    allowed = client_for(user("view_job", codename))
    response = post_action(allowed, action, [job.id], ddj_confirm="yes")
    assert response.status_code == 302
    assert Job.objects.get(id=job.id).status == expected


def test_run_now_action():
    job = make_job(JobStatus.READY, run_at=timezone.now() + timedelta(hours=3))
    client = client_for(user("view_job", "run_job_now"))
    assert post_action(client, "run_jobs_now", [job.id]).status_code == 302
    assert Job.objects.get(id=job.id).run_at <= timezone.now()


def test_retry_action_reports_refusals():
    failed, running = make_job(JobStatus.FAILED), make_job(JobStatus.RUNNING)
    client = client_for(user("view_job", "retry_job"))
    response = post_action(client, "retry_jobs", [failed.id, running.id])
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("1 job retried" in m and "running (cancel it first)" in m for m in messages)
    assert Job.objects.get(id=running.id).status == JobStatus.RUNNING


def test_delete_action_confirms_first_and_needs_delete_permission():
    job = make_job(JobStatus.FAILED)
    client = client_for(user("view_job"))
    post_action(client, "delete_jobs", [job.id], ddj_confirm="yes")
    assert Job.objects.filter(id=job.id).exists()
    client = client_for(user("view_job", "delete_job"))
    response = post_action(client, "delete_jobs", [job.id])
    assert response.status_code == 200
    assert "1 job would be deleted" in response.content.decode()
    assert Job.objects.filter(id=job.id).exists()
    response = post_action(client, "delete_jobs", [job.id], ddj_confirm="yes")
    assert response.status_code == 302
    assert not Job.objects.filter(id=job.id).exists()


def test_action_on_everything_matching_the_filter():
    failed_emails = make_jobs(12, JobStatus.FAILED, queue="emails")
    failed_other = make_job(JobStatus.FAILED, queue="other")
    make_job(JobStatus.SUCCESSFUL, queue="emails")
    client = client_for(user("view_job", "retry_job"))
    url = reverse(CHANGELIST) + "?queue=emails"
    data = {
        "action": "retry_jobs",
        "index": "0",
        "select_across": "1",
        "_selected_action": [str(failed_emails[0])],
    }
    response = client.post(url, data)
    page = response.content.decode()
    assert response.status_code == 200
    assert "12 jobs would be retried" in page
    assert "queue = emails" in page
    assert "1 successful" in page
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 13
    response = client.post(url, {**data, "ddj_confirm": "yes"})
    assert response.status_code == 302
    assert Job.objects.filter(id__in=failed_emails, status=JobStatus.READY).count() == 12
    assert Job.objects.get(id=failed_other.id).status == JobStatus.FAILED


def test_bulk_actions_stop_at_the_bulk_limit(monkeypatch):
    from django_durable_jobs.admin.jobs import JobAdmin

    monkeypatch.setattr(JobAdmin, "bulk_limit", 5)
    make_jobs(8, JobStatus.FAILED)
    client = client_for(user("view_job", "retry_job"))
    data = {
        "action": "retry_jobs",
        "index": "0",
        "select_across": "1",
        "_selected_action": ["1"],
        "ddj_confirm": "yes",
    }
    response = client.post(reverse(CHANGELIST) + "?status=FAILED", data, follow=True)
    assert "More jobs match" in response.content.decode()
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 3


# -- the job page and its actions ----------------------------------------------------


@pytest.mark.parametrize(
    ("action", "codename", "status", "expected"),
    [
        ("retry", "retry_job", JobStatus.FAILED, JobStatus.READY),
        ("cancel", "cancel_job", JobStatus.RUNNING, JobStatus.CANCELLED),
        ("run_now", "run_job_now", JobStatus.READY, JobStatus.READY),
    ],
)
def test_job_page_actions_check_permissions_on_post(action, codename, status, expected):
    job = make_job(status, run_at=timezone.now() + timedelta(hours=1))
    url = detail_url(job, action)
    crafted = client_for(user("view_job"))
    assert crafted.post(url).status_code == 403
    assert Job.objects.get(id=job.id).status == status
    assert Job.objects.get(id=job.id).run_at > timezone.now()
    allowed = client_for(user("view_job", codename))
    assert allowed.get(url).status_code == 405  # POST only
    response = allowed.post(url)
    assert response.status_code == 302
    assert response["Location"] == detail_url(job)
    job = Job.objects.get(id=job.id)
    assert job.status == expected
    if action == "run_now":
        assert job.run_at <= timezone.now()


def test_job_page_actions_need_csrf():
    job = make_job(JobStatus.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user(superuser=True))
    assert client.post(detail_url(job, "retry")).status_code == 403
    assert Job.objects.get(id=job.id).status == JobStatus.FAILED


def test_job_page_shows_the_buttons_it_may_use():
    job = make_job(JobStatus.FAILED)
    page = client_for(user("view_job", "retry_job")).get(detail_url(job)).content.decode()
    assert 'data-action="retry"' in page
    assert 'data-action="cancel"' not in page
    assert "Delete…" not in page


def test_delete_from_the_job_page():
    job = make_job(JobStatus.FAILED)
    running = make_job(JobStatus.RUNNING)
    assert client_for(user("view_job")).post(detail_url(job, "delete")).status_code == 403
    client = client_for(user("view_job", "delete_job"))
    assert "Yes, delete it" in client.get(detail_url(job, "delete")).content.decode()
    assert client.post(detail_url(job, "delete")).status_code == 302
    assert not Job.objects.filter(id=job.id).exists()
    client.post(detail_url(running, "delete"))
    assert Job.objects.filter(id=running.id).exists()


def test_large_values_are_clipped_with_a_way_to_see_them_whole():
    big = "x" * 50_000
    job = make_job(JobStatus.FAILED, args=[big], errors=[error_entry(1, "y" * 5000)])
    client = client_for(user(superuser=True))
    page = client.get(detail_url(job)).content.decode()
    assert big not in page
    assert "?full=args#args" in page
    assert "Show all" in page
    page = client.get(detail_url(job), {"full": "args"}).content.decode()
    assert big in page
    page = client.get(detail_url(job), {"full": "history"}).content.decode()
    assert "y" * 5000 in page


def test_history_shows_operator_entries_and_tracebacks():
    job = make_job(JobStatus.FAILED)
    client = client_for(user(superuser=True))
    client.post(detail_url(job, "retry"))
    page = client.get(detail_url(job)).content.decode()
    assert "Retried by an operator" in page
    assert "Traceback (most recent call last)" in page
    assert page.index("Retried by an operator") < page.index("Attempt 3")


def test_missing_job_is_404():
    client = client_for(user(superuser=True))
    url = reverse("admin:django_durable_jobs_job_change", args=[98765])
    assert client.get(url).status_code == 404


# -- dashboard -----------------------------------------------------------------------


def test_dashboard_shows_queues_workers_and_the_chart():
    make_job(queue="emails", run_at=timezone.now() - timedelta(hours=2))
    make_jobs(3, JobStatus.FAILED, queue="emails")
    make_job(JobStatus.SUCCESSFUL, queue="reports")
    Worker.objects.create(id=uuid.uuid4(), hostname="worker-box", pid=42, concurrency=8)
    page = client_for(user("view_job")).get(reverse(DASHBOARD)).content.decode()
    assert 'data-queue="emails"' in page
    assert "ddj-late" in page  # 2 h > HEALTH_MAX_READY_AGE
    assert "worker-box" in page
    assert "<svg" in page
    assert "Pause" not in page  # no pause_queue permission


def test_pause_and_resume_need_their_permission():
    pause = reverse("admin:django_durable_jobs_job_dashboard_pause")
    resume = reverse("admin:django_durable_jobs_job_dashboard_resume")
    assert client_for(user("view_job")).post(pause, {"queue": "emails"}).status_code == 403
    assert not QueueState.objects.exists()
    client = client_for(user("view_job", "pause_queue"))
    assert "Pause" in client.get(reverse(DASHBOARD)).content.decode()
    assert client.get(pause).status_code == 405
    assert client.post(pause, {"queue": "emails"}).status_code == 302
    assert QueueState.objects.get(name="emails").paused
    assert client.post(resume, {"queue": "emails"}).status_code == 302
    assert not QueueState.objects.get(name="emails").paused
    response = client.post(pause, {"queue": "bad name"}, follow=True)
    assert "not a valid queue name" in response.content.decode()


def test_the_admin_index_and_sidebar_list_every_console_page():
    client = client_for(user("view_job", "view_worker"))
    entries = {
        "dashboard": reverse(DASHBOARD),
        "schedules": reverse("admin:django_durable_jobs_job_schedules"),
    }
    for model, page_url in entries.items():
        entry = reverse(f"admin:django_durable_jobs_console{model}_changelist")
        response = client.get(entry)
        assert response["Location"] == page_url
        for where in (reverse("admin:index"), reverse(CHANGELIST)):  # index, and sidebar
            assert f'href="{entry}"' in client.get(where).content.decode()
    index = client.get(reverse("admin:index")).content.decode()
    assert ">Dashboard<" in index
    assert ">Schedules<" in index
    assert "queuestate" not in index  # no entry named Queues that opens another page
    page = client.get(reverse(DASHBOARD)).content.decode()
    for name in (CHANGELIST, "admin:django_durable_jobs_worker_changelist"):
        assert f'href="{reverse(name)}"' in page


def test_console_entries_need_view_job():
    client = client_for(user("view_worker"))
    response = client.get(reverse("admin:django_durable_jobs_consoledashboard_changelist"))
    assert response.status_code == 403


def test_superuser_sees_everything():
    job = make_job(JobStatus.FAILED)
    client = client_for(user(superuser=True))
    page = client.get(detail_url(job)).content.decode()
    for action in ("retry", "Delete…"):
        assert action in page
    assert "Pause" in client.get(reverse(DASHBOARD)).content.decode()
    assert client.get(reverse("admin:django_durable_jobs_worker_changelist")).status_code == 200


def test_job_page_lists_the_steps_of_its_run_in_order():
    run_id = uuid.uuid4()
    first = make_job(
        JobStatus.SUCCESSFUL, name="shop.Order.reserve", run_id=run_id, meta={"step": 1, "steps": 3}
    )
    second = make_job(
        JobStatus.FAILED,
        name=f"shop.Order.{XSS}",
        run_id=run_id,
        meta={"step": 2, "steps": 3},
        parent_id=first.id,
    )
    make_job(JobStatus.SUCCESSFUL, name="other.run", run_id=uuid.uuid4())
    page = client_for(user("view_job")).get(detail_url(second)).content.decode()
    section = page.split('id="run"', 1)[1].split("</section>", 1)[0]
    assert "3 steps declared" in section
    assert section.index(f"#{first.id}") < section.index(f"#{second.id}")
    assert f'href="{detail_url(first)}"' in section  # the other step is a link
    assert 'aria-current="true"' in section
    assert "other.run" not in section
    assert XSS not in page
    assert "&lt;script&gt;" in section
    # a job outside any run has no such section
    alone = make_job(JobStatus.SUCCESSFUL)
    assert 'id="run"' not in client_for(user("view_job")).get(detail_url(alone)).content.decode()


# -- schedules page ---------------------------------------------------------------------

SCHEDULES = "admin:django_durable_jobs_job_schedules"
SCHEDULES_ACT = "admin:django_durable_jobs_job_schedules_act"


@pytest.fixture
def periodic(settings):
    settings.DURABLE_JOBS = {
        **settings.DURABLE_JOBS,
        "PERIODIC": {
            "nightly": {
                "job": "tests.testapp.jobs.report",
                "schedule": "30 2 * * *",
                "timezone": "Europe/Paris",
                "kwargs": {"kind": "full"},
                "tags": [XSS],
            },
            "broken": {"job": "tests.testapp.jobs.report", "schedule": "every blue moon"},
        },
    }


@pytest.mark.usefixtures("periodic")
def test_schedules_page_shows_each_entry_escaped_with_its_fire_times():
    ScheduleTick.objects.create(
        schedule="nightly",
        fire_time=timezone.now() - timedelta(hours=1),
        job_id=make_job(JobStatus.FAILED, name="tests.testapp.jobs.report").id,
    )
    page = client_for(user("view_job")).get(reverse(SCHEDULES)).content.decode()
    nightly = page.split('data-schedule="nightly"', 1)[1].split("</tr>", 1)[0]
    assert "Europe/Paris" in nightly
    # One compact row: the next fire time in the entry's zone with UTC beside it,
    # the two after it in the tooltip.
    assert re.search(r"\d{4}-\d\d-\d\d 02:30:00 CES?T<span", nightly)
    assert re.search(r"\d\d:30:00 UTC · in ", nightly)
    assert nightly.count("02:30:00 CE") == 3  # the next one shown, two more in its title
    assert "Failed" in nightly or "FAILED" in nightly
    assert XSS not in page
    assert "&lt;script&gt;" in page
    broken = page.split('data-schedule="broken"', 1)[1].split("</tr>", 1)[0]
    assert "broken" in broken
    assert "every blue moon" in broken
    assert 'value="disable"' not in page  # viewing is not managing


@pytest.mark.usefixtures("periodic")
@pytest.mark.parametrize(
    ("action", "expected"), [("disable", False), ("enable", True), ("follow-settings", None)]
)
def test_schedule_enable_disable_needs_the_permission(action, expected):
    assert (
        client_for(user("view_job"))
        .post(reverse(SCHEDULES_ACT), {"name": "nightly", "action": action})
        .status_code
        == 403
    )
    assert not ScheduleState.objects.exists()
    client = client_for(user("view_job", "manage_schedule"))
    response = client.post(reverse(SCHEDULES_ACT), {"name": "nightly", "action": action})
    assert response.status_code == 302
    assert ScheduleState.objects.get(name="nightly").enabled is expected


@pytest.mark.usefixtures("periodic")
def test_schedule_run_now_enqueues_through_the_ledger_and_reports_errors():
    client = client_for(user("view_job", "manage_schedule"))
    client.post(reverse(SCHEDULES_ACT), {"name": "nightly", "action": "run-now"})
    job = Job.objects.get(name="tests.testapp.jobs.report")
    assert ScheduleTick.objects.filter(schedule="nightly", job_id=job.id).exists()
    response = client.post(
        reverse(SCHEDULES_ACT), {"name": "nope", "action": "run-now"}, follow=True
    )
    assert "PERIODIC entry is named &#x27;nope&#x27;" in response.content.decode()
    assert Job.objects.count() == 1


# -- breadcrumbs, as each Django version draws them ------------------------------------


@pytest.mark.parametrize("page", ["dashboard", "schedules", "detail", "delete"])
def test_console_pages_have_the_breadcrumbs_of_this_django_version(page):
    import django

    job = make_job(JobStatus.FAILED)
    urls = {
        "dashboard": reverse(DASHBOARD),
        "schedules": reverse("admin:django_durable_jobs_job_schedules"),
        "detail": detail_url(job),
        "delete": detail_url(job, "delete"),
    }
    html = client_for(user(superuser=True)).get(urls[page]).content.decode()
    if django.VERSION >= (6, 0):
        assert '<ol class="breadcrumbs">' in html
        assert '<div class="breadcrumbs">' not in html
        assert '<li aria-current="page">' in html
    else:
        assert '<div class="breadcrumbs">' in html
    assert f'href="{reverse("admin:index")}"' in html
    assert f'href="{reverse("admin:app_list", args=["django_durable_jobs"])}"' in html
    if page in ("detail", "delete"):
        assert f'href="{reverse(CHANGELIST)}">Jobs</a>' in html


def test_the_name_filter_offers_every_name_in_the_table():
    make_job(JobStatus.FAILED, name="legacy.removed_job")  # no longer registered
    make_job(JobStatus.READY, name="other.service.job")  # enqueued by code not loaded here
    response = client_for(user(superuser=True)).get(reverse(CHANGELIST))
    (name_filter,) = [f for f in response.context["cl"].filter_specs if f.parameter_name == "name"]
    offered = {value for value, _label in name_filter.lookup_choices}
    assert {"legacy.removed_job", "other.service.job", "tests.testapp.jobs.add"} <= offered


def test_a_job_waiting_to_retry_says_it_failed_and_when_it_runs_again():
    retrying = make_job(
        JobStatus.READY,
        attempts=2,
        max_attempts=5,
        run_at=timezone.now() + timedelta(minutes=5),
        errors=[error_entry(1, "timeout"), error_entry(2, "still a timeout")],
    )
    html = client_for(user(superuser=True)).get(reverse(CHANGELIST)).content.decode()
    row = html[html.index(f">{retrying.id}<") :]
    assert "Retrying" in row[:2000]
    assert "attempt 2/5 failed; next try" in row[:2000]
    assert "still a timeout" in row[:3000]


def test_the_workers_page_uses_the_consoles_date_format():
    Worker.objects.create(id=uuid.uuid4(), hostname="web-1", pid=4100, concurrency=8)
    html = (
        client_for(user("view_job", "view_worker"))
        .get(reverse("admin:django_durable_jobs_worker_changelist"))
        .content.decode()
    )
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)", html)
    assert 'class="ddj-tabs' in html or "ddj-tab" in html  # the console's tabs, as elsewhere
