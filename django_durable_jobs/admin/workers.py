"""Workers (read-only, with their liveness), and the entries of the console's pages.

Queues have no list of their own: the dashboard shows them, with pause and
resume. The admin index and sidebar list Dashboard, Jobs, Schedules, Workers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..models import ConsoleDashboard, ConsoleSchedules, Job, Worker
from .pages import nav_tabs
from .rendering import when


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("hostname", "pid", "queues_display", "concurrency", "started", "heartbeat")
    readonly_fields = [field.name for field in Worker._meta.fields]
    ordering = ("hostname", "pid")
    change_list_template = "admin/django_durable_jobs/worker/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).using(app_settings.DATABASE)

    @admin.display(description=_("queues"))
    def queues_display(self, obj: Worker) -> str:
        return ", ".join(obj.queue_labels) or str(_("all"))

    @admin.display(description=_("started at"), ordering="started_at")
    def started(self, obj: Worker) -> str:
        """In the console's format (``2026-01-31 12:00:05 UTC (3 min ago)``), as on its pages."""
        return when(obj.started_at) or "-"

    @admin.display(description=_("last heartbeat"), ordering="heartbeat_at")
    def heartbeat(self, obj: Worker) -> str:
        age = (timezone.now() - obj.heartbeat_at).total_seconds()
        alive = age <= timedelta(seconds=float(app_settings.LEASE_SECONDS)).total_seconds()
        return format_html(
            '<span class="ddj-badge ddj-{}">{}</span> {} s ago',
            "successful" if alive else "failed",
            _("alive") if alive else _("stale"),
            f"{max(age, 0):.0f}",
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        job_admin = self.admin_site._registry.get(Job)
        tabs = nav_tabs(request, job_admin, "workers") if job_admin else []
        return super().changelist_view(request, {"ddj_tabs": tabs, **(extra_context or {})})


class ConsolePageEntry(admin.ModelAdmin):
    """An entry of the admin index and sidebar that opens one of the console's pages.

    The console's pages are not model lists, and Django lists only models: a
    table-less proxy model stands for each page, and its list URL opens it.
    """

    page = ""  # the JobAdmin URL name of the page

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_durable_jobs.view_job")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("django_durable_jobs.view_job")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:{self.page}"))


@admin.register(ConsoleDashboard)
class DashboardEntry(ConsolePageEntry):
    page = "django_durable_jobs_job_dashboard"


@admin.register(ConsoleSchedules)
class SchedulesEntry(ConsolePageEntry):
    page = "django_durable_jobs_job_schedules"
