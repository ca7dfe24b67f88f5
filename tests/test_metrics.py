"""The Prometheus view: figures computed from the job tables."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from django_durable_jobs import JobStatus
from django_durable_jobs.metrics import metrics_view
from django_durable_jobs.models import Job
from django_durable_jobs.testing import run_pending_jobs
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


def scrape(**kwargs) -> dict[tuple[str, tuple], float]:
    response = metrics_view(RequestFactory().get("/metrics"), **kwargs)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_backlog_running_finished_and_run_time():
    jobs.add.enqueue(1, 1)
    jobs.add.enqueue(2, 2)
    jobs.always_fails.using(max_attempts=1).enqueue("x")
    run_pending_jobs()
    old = jobs.add.using(queue="slow").enqueue(1, 2)
    Job.objects.filter(id=old.id).update(run_at=timezone.now() - timedelta(minutes=10))
    jobs.add.using(queue="slow", delay=3600).enqueue(1, 2)
    running = jobs.noop.using(queue="busy").enqueue()
    Job.objects.filter(id=running.id).update(status=JobStatus.RUNNING)

    samples = scrape()
    slow = (("queue", "slow"),)
    assert samples[("durable_jobs_ready", slow)] == 2
    assert samples[("durable_jobs_due", slow)] == 1
    assert 590 < samples[("durable_jobs_oldest_due_age_seconds", slow)] < 3600
    assert samples[("durable_jobs_running", (("queue", "busy"),))] == 1
    default_ok = (("queue", "default"), ("status", "SUCCESSFUL"))
    assert samples[("durable_jobs_finished", default_ok)] == 2
    assert samples[("durable_jobs_finished", (("queue", "default"), ("status", "FAILED")))] == 1
    default = (("queue", "default"),)
    assert samples[("durable_jobs_run_seconds_count", default)] == 2
    assert samples[("durable_jobs_run_seconds_bucket", (("le", "+Inf"), *default))] == 2
    assert samples[("durable_jobs_run_seconds_bucket", (("le", "60.0"), *default))] == 2
    assert samples[("durable_jobs_run_seconds_sum", default)] >= 0
    assert samples[("durable_jobs_workers", ())] == 0


def test_the_window_excludes_older_finished_jobs():
    handle = jobs.add.enqueue(1, 1)
    run_pending_jobs()
    Job.objects.filter(id=handle.id).update(
        finished_at=timezone.now() - timedelta(hours=1),
        started_at=timezone.now() - timedelta(hours=1, seconds=2),
    )
    samples = scrape(window=60)
    assert not any(name == "durable_jobs_finished" for name, _ in samples)


def test_only_get_is_allowed():
    assert metrics_view(RequestFactory().post("/metrics")).status_code == 405
