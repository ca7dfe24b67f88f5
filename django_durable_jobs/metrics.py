"""Prometheus metrics read from the job tables (``pip install "django-durable-jobs[prometheus]"``).

Workers serve no HTTP, so the figures come from the database, at scrape time,
with queries that use the partial indexes and a recent time window rather
than the whole job history:

* ``durable_jobs_ready{queue}``: READY jobs (waiting, due or not), and
  ``durable_jobs_due{queue}``: those whose ``run_at`` has passed;
* ``durable_jobs_running{queue}``: RUNNING jobs;
* ``durable_jobs_oldest_due_age_seconds{queue}``: how long the oldest due job has waited;
* ``durable_jobs_finished{queue,status}``: jobs that ended in the last ``window``
  seconds (throughput and failures; ``rate`` is this over the window);
* ``durable_jobs_run_seconds{queue}``: a histogram of the last attempt's run time of
  the SUCCESSFUL jobs of the window;
* ``durable_jobs_workers``: workers whose heartbeat is recent.

Mount the view (``path("metrics/", metrics_view)``) behind whatever protects
your other internal endpoints, or register ``DurableJobsCollector`` in your own
``prometheus_client`` registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from .conf import app_settings
from .constants import JobStatus
from .models import READY, Job, Worker

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "django_durable_jobs.metrics needs prometheus-client: "
        "pip install 'django-durable-jobs[prometheus]'."
    ) from exc

#: Upper bounds (seconds) of the run-time histogram's buckets.
BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class DurableJobsCollector:
    """A ``prometheus_client`` collector; each ``collect()`` runs four indexed queries."""

    def __init__(self, window: float = 300.0, database: str | None = None) -> None:
        self.window = window
        self.database = database

    def collect(self) -> Iterator[Any]:
        alias = self.database or app_settings.DATABASE
        jobs = Job.objects.using(alias)
        now = timezone.now()
        ready = GaugeMetricFamily("durable_jobs_ready", "READY jobs", labels=["queue"])
        due = GaugeMetricFamily(
            "durable_jobs_due", "READY jobs whose run_at has passed", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "durable_jobs_oldest_due_age_seconds",
            "Seconds the oldest due READY job has waited",
            labels=["queue"],
        )
        # The partial index ddj_job_ready_by_queue holds exactly these rows.
        backlog = (
            jobs.filter(READY)
            .values("queue")
            .annotate(
                total=Count("id"),
                due=Count("id", filter=Q(run_at__lte=now)),
                oldest=Min("run_at", filter=Q(run_at__lte=now)),
            )
            .order_by()
        )
        for row in backlog:
            ready.add_metric([row["queue"]], row["total"])
            due.add_metric([row["queue"]], row["due"])
            age = (now - row["oldest"]).total_seconds() if row["oldest"] else 0.0
            oldest.add_metric([row["queue"]], max(age, 0.0))
        yield from (ready, due, oldest)

        running = GaugeMetricFamily("durable_jobs_running", "RUNNING jobs", labels=["queue"])
        for busy in (
            jobs.filter(status=JobStatus.RUNNING).values("queue").annotate(n=Count("id")).order_by()
        ):
            running.add_metric([busy["queue"]], busy["n"])
        yield running

        yield from self._recent(jobs, now)

        workers = GaugeMetricFamily("durable_jobs_workers", "Workers with a recent heartbeat")
        stale = now - timedelta(seconds=float(app_settings.LEASE_SECONDS))
        workers.add_metric([], Worker.objects.using(alias).filter(heartbeat_at__gte=stale).count())
        yield workers

    def _recent(self, jobs: Any, now: Any) -> Iterator[Any]:
        since = now - timedelta(seconds=self.window)
        finished = GaugeMetricFamily(
            "durable_jobs_finished",
            f"Jobs that ended in the last {self.window:g} seconds",
            labels=["queue", "status"],
        )
        duration = ExpressionWrapper(
            F("finished_at") - F("started_at"), output_field=DurationField()
        )
        buckets = {
            f"le_{index}": Count("id", filter=Q(run_time__lte=timedelta(seconds=bound)))
            for index, bound in enumerate(BUCKETS)
        }
        # Range scans of the (status, finished_at) index, one per final status.
        rows = (
            jobs.filter(status__in=JobStatus.finished(), finished_at__gte=since)
            .annotate(run_time=duration)
            .values("queue", "status")
            .annotate(n=Count("id"), seconds=Sum("run_time"), **buckets)
            .order_by()
        )
        run_seconds = HistogramMetricFamily(
            "durable_jobs_run_seconds",
            f"Run time of the last attempt of jobs that succeeded in the last {self.window:g} s",
            labels=["queue"],
        )
        for row in rows:
            finished.add_metric([row["queue"], row["status"]], row["n"])
            if row["status"] != JobStatus.SUCCESSFUL:
                continue
            cumulative = [(str(bound), row[f"le_{i}"]) for i, bound in enumerate(BUCKETS)]
            cumulative.append(("+Inf", row["n"]))
            total = row["seconds"].total_seconds() if row["seconds"] is not None else 0.0
            run_seconds.add_metric([row["queue"]], cumulative, sum_value=total)
        yield finished
        yield run_seconds


@require_GET
def metrics_view(request: HttpRequest, window: float = 300.0) -> HttpResponse:
    """The Prometheus text exposition of ``DurableJobsCollector`` (GET only)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DurableJobsCollector(window=window))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
