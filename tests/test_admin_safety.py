"""The admin refuses what would leak hidden data or widen an operator's filter to everything."""

from __future__ import annotations

import string

import pytest
from django.urls import reverse

from django_durable_jobs import JobStatus
from django_durable_jobs.models import Job
from tests.factories import make_job, make_jobs
from tests.test_admin import CHANGELIST, client_for, user

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "hunter2"


def _listed(client, query: str) -> tuple[int, bool]:
    """The response's status, and whether the secret job is among the results."""
    response = client.get(reverse(CHANGELIST) + "?" + query)
    if response.status_code != 200:
        return response.status_code, False
    names = [job.name for job in response.context["cl"].result_list]
    return response.status_code, "tests.secret-job" in names


@pytest.mark.parametrize(
    "lookup",
    [
        "kwargs__password__startswith",
        "args__0__startswith",
        "result__startswith",
        "errors__contains",
        "meta__token__startswith",
        "lease_token__gte",
        "unique_key__startswith",
    ],
)
def test_hidden_fields_cannot_be_probed_through_the_query_string(lookup):
    make_job(JobStatus.FAILED, name="tests.secret-job", kwargs={"password": SECRET})
    viewer = client_for(user("view_job"))  # may list jobs, may not see their payloads
    for value in ("hunter", "zzz", "[", "1"):
        status, listed = _listed(viewer, f"{lookup}={value}")
        assert status == 400, (lookup, value, status)  # refused, never a 500
        assert not listed


def test_walking_the_oracle_learns_nothing():
    """An attacker trying each next character gets the same answer for every guess."""
    make_job(JobStatus.FAILED, name="tests.secret-job", kwargs={"password": SECRET})
    viewer = client_for(user("view_job"))
    answers = {
        char: _listed(viewer, f"kwargs__password__startswith=hunter{char}")
        for char in string.ascii_lowercase + string.digits
    }
    assert set(answers.values()) == {(400, False)}


def test_the_declared_filters_still_work():
    make_job(JobStatus.FAILED, name="tests.secret-job")
    viewer = client_for(user("view_job"))
    assert _listed(viewer, "status=FAILED") == (200, True)
    assert _listed(viewer, "status=READY") == (200, False)
    assert _listed(viewer, "q=tests.secret-job") == (200, True)


@pytest.mark.parametrize("query", ["status=FAILEDX", "period=last_century", "status=failed"])
def test_an_unknown_filter_value_is_an_error_not_every_job(query):
    make_jobs(3, JobStatus.FAILED)
    admin = client_for(user(superuser=True))
    response = admin.get(reverse(CHANGELIST) + "?" + query)
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")  # Django's "invalid lookup" page
    # ...and "delete every job matching" with that filter deletes nothing.
    response = admin.post(
        reverse(CHANGELIST) + "?" + query,
        {
            "action": "delete_jobs",
            "select_across": "1",
            "index": "0",
            "_selected_action": [str(job.id) for job in Job.objects.all()],
            "ddj_confirm": "yes",
        },
    )
    assert response.status_code == 302
    assert Job.objects.count() == 3


def test_cancel_asks_for_confirmation_first():
    job = make_job(JobStatus.READY)
    admin = client_for(user(superuser=True))
    response = admin.post(
        reverse(CHANGELIST),
        {"action": "cancel_jobs", "index": "0", "_selected_action": [str(job.id)]},
    )
    assert response.status_code == 200
    assert b"Yes, go ahead" in response.content
    assert Job.objects.get(id=job.id).status == JobStatus.READY
