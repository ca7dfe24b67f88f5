"""The schedules page with many database entries: a page at a time; bad filters refused."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse
from django.utils import timezone

from django_durable_jobs.models import ScheduleEntry
from tests.test_admin import client_for, user

pytestmark = pytest.mark.django_db

SCHEDULES = "admin:django_durable_jobs_job_schedules"


def make_entries(count: int, **fields) -> None:
    now = timezone.now()
    ScheduleEntry.objects.bulk_create(
        [
            ScheduleEntry(
                name=f"entry-{i:05d}",
                job="tests.testapp.jobs.report",
                schedule="every_minute" if i % 2 else "*/5 * * * *",
                kwargs={"kind": f"k{i}"},
                tags=["even" if i % 2 == 0 else "odd"],
                enabled=i % 3 != 0,
                description=f"report number {i}",
                created_at=now,
                updated_at=now,
                version=i + 1,
                **fields,
            )
            for i in range(count)
        ],
        batch_size=1000,
    )


def rows(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('data-schedule="')[1:]]


def get(query: str = "") -> str:
    response = client_for(user("view_job")).get(reverse(SCHEDULES) + query)
    assert response.status_code == 200
    return response.content.decode()


def test_entries_come_a_page_at_a_time_in_name_order():
    make_entries(250)
    first = get()
    assert rows(first) == [f"entry-{i:05d}" for i in range(100)]
    assert "250 database entries match" in first
    assert "page 1 of 3" in first
    third = get("?page=3")
    assert rows(third) == [f"entry-{i:05d}" for i in range(200, 250)]
    assert 'rel="next"' not in third
    assert 'href="?page=2" rel="prev"' in third


def test_search_tag_and_state_filter_in_the_database():
    make_entries(30)
    assert rows(get("?q=number+17")) == ["entry-00017"]
    odd_disabled = rows(get("?tag=odd&enabled=no"))
    assert odd_disabled == [f"entry-{i:05d}" for i in range(30) if i % 2 and i % 3 == 0]
    page = get("?tag=odd&enabled=no&page=1")
    assert 'value="odd"' in page  # the filters stay filled in


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?enabled=maybe", "Unknown value &#x27;maybe&#x27; for enabled"),
        ("?page=0", "Unknown page &#x27;0&#x27;"),
        ("?page=abc", "Unknown page &#x27;abc&#x27;"),
        ("?page=9", "There is no page 9: the last is 1."),
    ],
)
def test_a_malformed_filter_is_refused_not_widened(query, message):
    make_entries(5)
    page = get(query)
    assert message in page
    assert rows(page) == []  # nothing listed, rather than everything


def test_ten_thousand_entries_cost_one_page(django_assert_max_num_queries):
    make_entries(10_000)
    client = client_for(user("view_job"))
    client.get(reverse(SCHEDULES))  # warm: templates, the settings entries
    began = time.perf_counter()
    with django_assert_max_num_queries(30):
        page = client.get(reverse(SCHEDULES) + "?tag=even").content.decode()
    elapsed = time.perf_counter() - began
    assert len(rows(page)) == 100
    assert "5000 database entries match" in page
    # Not a timing target (bench/admin_large.py measures); a guard against validating
    # all 10,000 entries again, which took seconds.
    assert elapsed < 5.0
