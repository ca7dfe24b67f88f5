"""The dashboard: queues (counts, backlog age, pause/resume), throughput, workers, running jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from .. import operations
from ..cli.common import format_age
from ..conf import app_settings
from ..constants import JobStatus
from ..db import get_backend
from ..models import Job
from .charts import throughput_svg
from .pages import AdminPage
from .rendering import progress_bar, when

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    from .jobs import JobAdmin

REFRESH_CHOICES = (0, 5, 15, 60)
#: Running jobs listed on the dashboard (oldest first); the jobs list has them all.
RUNNING_SHOWN = 20


def jobs_database(model_admin: ModelAdmin) -> str:
    """The alias the console works on (pages are only ever mounted on ``JobAdmin``)."""
    return cast("JobAdmin", model_admin).database


class DashboardPage(AdminPage):
    slug = "dashboard"
    title = _("Dashboard")
    template = "admin/django_durable_jobs/dashboard.html"

    def urls(self, model_admin: ModelAdmin) -> list[URLPattern]:
        site = model_admin.admin_site

        def queue_view(paused: bool) -> Any:
            @require_POST
            def view(request: HttpRequest) -> HttpResponse:
                return self.set_paused(request, model_admin, paused)

            return site.admin_view(view)

        name = self.url_name(model_admin)
        return [
            *super().urls(model_admin),
            path("dashboard/pause/", queue_view(True), name=f"{name}_pause"),
            path("dashboard/resume/", queue_view(False), name=f"{name}_resume"),
        ]

    def set_paused(
        self, request: HttpRequest, model_admin: ModelAdmin, paused: bool
    ) -> HttpResponse:
        if not request.user.has_perm("django_durable_jobs.pause_queue"):
            raise PermissionDenied
        queue = request.POST.get("queue", "")
        operation = operations.pause if paused else operations.resume
        try:
            change = operation([queue], database=jobs_database(model_admin))
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, change.summary())
        return HttpResponseRedirect(
            reverse(f"{model_admin.admin_site.name}:{self.url_name(model_admin)}")
        )

    def view(self, request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
        alias = jobs_database(model_admin)
        now = get_backend(alias).db_now()
        queues = operations.queue_stats(alias, now=now)
        workers = operations.worker_stats(alias, now=now)
        series = operations.throughput(alias, now=now)
        limit = app_settings.HEALTH_MAX_READY_AGE
        changelist = reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist")

        def link(**params: str) -> str:
            return f"{changelist}?{urlencode(params)}"

        statuses = list(JobStatus.values)
        rows = []
        totals = {status: operations.Count(0) for status in statuses}
        for queue in queues:
            for status in statuses:
                totals[status] = totals[status] + queue.counts[status]
            rows.append(
                {
                    "stats": queue,
                    "due": f"{queue.due:,}",
                    "oldest": format_age(queue.oldest_due_age),
                    "late": (
                        not queue.paused
                        and limit is not None
                        and queue.oldest_due_age is not None
                        and queue.oldest_due_age > limit
                    ),
                    "cells": [
                        {
                            "count": queue.counts[status],
                            "url": link(queue=queue.name, status=status),
                        }
                        for status in statuses
                    ],
                }
            )
        succeeded, failed = series.totals
        refresh = _refresh(request)
        return self.render(
            request,
            model_admin,
            {
                "statuses": [(status, dict(JobStatus.choices)[status]) for status in statuses],
                "rows": rows,
                "totals": [totals[status] for status in statuses],
                "workers": workers,
                "alive_workers": sum(1 for worker in workers if worker.alive),
                "chart": throughput_svg(series),
                "succeeded": f"{succeeded:,}",
                "failed": f"{failed:,}" if failed else "",
                "failed_count": failed,
                "last_minute": (f"{series.succeeded[-1]:,}", f"{series.failed[-1]:,}"),
                "due": f"{sum(queue.due for queue in queues):,}",
                "running": f"{sum(queue.running for queue in queues):,}",
                "failed_url": link(status=JobStatus.FAILED, period="finished_1h"),
                "max_ready_age": limit,
                "lease_seconds": app_settings.LEASE_SECONDS,
                "can_pause": request.user.has_perm("django_durable_jobs.pause_queue"),
                "pause_url": reverse(
                    f"{model_admin.admin_site.name}:{self.url_name(model_admin)}_pause"
                ),
                "resume_url": reverse(
                    f"{model_admin.admin_site.name}:{self.url_name(model_admin)}_resume"
                ),
                "refresh": refresh,
                "refresh_choices": REFRESH_CHOICES,
                "now": now,
                "running_jobs": _running_jobs(model_admin, request, alias),
                "running_url": link(status=JobStatus.RUNNING),
            },
        )


def _running_jobs(
    model_admin: ModelAdmin, request: HttpRequest, alias: str
) -> list[dict[str, Any]]:
    """The first ``RUNNING_SHOWN`` running jobs, with their progress bars (a small,
    indexed read: RUNNING rows are one per busy worker thread)."""
    with_message = request.user.has_perm("django_durable_jobs.view_job_payload")
    jobs = (
        Job.objects.using(alias)
        .filter(status=JobStatus.RUNNING)
        .only("id", "name", "queue", "started_at", "attempts", "max_attempts", "progress")
        .order_by("id")[:RUNNING_SHOWN]
    )
    return [
        {
            "job": job,
            "url": reverse(
                f"{model_admin.admin_site.name}:django_durable_jobs_job_change", args=[job.id]
            ),
            "started": when(job.started_at),
            "progress": progress_bar(job.progress, with_message=with_message),
        }
        for job in jobs
    ]


def _refresh(request: HttpRequest) -> int:
    try:
        value = int(request.GET.get("refresh", "0"))
    except ValueError:
        return 0
    return value if value in REFRESH_CHOICES else 0
