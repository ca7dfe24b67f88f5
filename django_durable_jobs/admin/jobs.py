"""The jobs list, made for millions of rows, and the wiring of the console's pages.

* Counts are estimated past a cap and pages stop at ``JobPaginator.max_pages``.
* Payload columns are never loaded for the list; the last error's message is
  cut in SQL (and shown only with the ``view_job_payload`` permission).
* Every filter maps to an index; sorting is by id only (newest first).
* Search takes a job id (``123`` or ``#123``), a run id, or part of a job
  name, matched against the registered names (then an indexed ``IN``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from .. import registry
from ..conf import app_settings
from ..constants import JobStatus
from ..db.expressions import LastHistoryMessage
from ..models import Job
from .actions import ACTIONS
from .detail import detail_urls, detail_view
from .filters import NameFilter, PeriodFilter, QueueFilter, StatusFilter
from .pages import nav_tabs, pages
from .paging import JobPaginator
from .rendering import dotted, progress_bar, status_badge, when

PAYLOAD_FIELDS = ("args", "kwargs", "result", "errors", "meta")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    # Attempts sit under the status and the duration under the time, so that the
    # list fits 1280 px beside the admin's sidebar and the filters.
    list_display = ("id", "name_display", "queue", "status_badge", "run_at_display", "last_error")
    list_display_links = ("id", "name_display")
    list_filter = (StatusFilter, QueueFilter, NameFilter, PeriodFilter)
    search_fields = ("name",)
    search_help_text = _("A job id (123 or #123), a run id, or part of a job name.")
    ordering = ("-id",)
    sortable_by = ("id",)
    list_per_page = 50
    list_max_show_all = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice: too slow at scale
    paginator = JobPaginator
    actions = ACTIONS
    change_list_template = "admin/django_durable_jobs/job/change_list.html"
    #: Most jobs one "all matching" action changes per request (the CLI has no cap).
    bulk_limit = 100_000

    @property
    def database(self) -> str:
        return app_settings.DATABASE

    # -- permissions -------------------------------------------------------
    def _perm(self, request: HttpRequest, codename: str) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # jobs change through the actions, each with its own permission

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "cancel_job")

    def has_run_now_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "run_job_now")

    def has_payload_permission(self, request: HttpRequest) -> bool:
        return self._perm(request, "view_job_payload")

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        """No lookup from the query string beyond the declared filters and the search.

        Django allows lookups on related and list-filtered fields by default; here
        ``?kwargs__password__startswith=a`` would tell a user without
        ``view_job_payload`` whether some job's hidden argument starts with "a",
        one character at a time. Refused lookups are a 400, never a 500.
        """
        return lookup in {list_filter.parameter_name for list_filter in self.list_filter}

    # -- list ----------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        queryset = super().get_queryset(request).using(self.database).defer(*PAYLOAD_FIELDS)
        if self.has_payload_permission(request):
            queryset = queryset.annotate(last_message=LastHistoryMessage(160))
        return queryset

    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_payload_permission(request):
            return self.list_display
        return tuple(column for column in self.list_display if column != "last_error")

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 passes where the actions are shown (and warns about overrides that do
        # not take it); earlier versions call get_actions(request).
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[call-arg,unused-ignore]
        actions.pop("delete_selected", None)  # it loads every row; delete_jobs does not
        return actions

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        number = term.removeprefix("#")
        if number.isascii() and number.isdigit():
            return queryset.filter(id=int(number)), False
        try:
            return queryset.filter(run_id=uuid.UUID(term)), False
        except ValueError:
            pass
        needle = term.casefold()
        names = [name for name in registry.all_definitions() if needle in name.casefold()]
        return queryset.filter(Q(name__in=names) | Q(name=term)), False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        context = {
            "ddj_tabs": nav_tabs(request, self, "jobs"),
            "title": _("Jobs"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    @admin.display(description=_("job name"))
    def name_display(self, obj: Job) -> str:
        """The dotted name, free to wrap after each dot (a narrow column)."""
        return dotted(obj.name)

    @admin.display(description=_("status"), ordering=None)
    def status_badge(self, obj: Job) -> str:
        """The status, its attempts and, when the job reported any, its progress bar (in
        this column, not one of its own: the list must fit 1280 px)."""
        shown = self._status(obj)
        if obj.progress is None:
            return shown
        return format_html("{}{}", shown, progress_bar(obj.progress, compact=True))

    def _status(self, obj: Job) -> str:
        attempts = f"{obj.attempts}/{obj.max_attempts}"
        if obj.status == JobStatus.READY and obj.attempts:
            # READY after failed attempts: say so, and when it runs again.
            next_try = timezone.localtime(obj.run_at).strftime("%H:%M:%S")
            return format_html(
                '{} <span class="ddj-sub">{}</span>',
                status_badge(obj.status, label=_("Retrying")),
                _("attempt %(attempts)s failed; next try %(at)s")
                % {"attempts": attempts, "at": next_try},
            )
        return format_html(
            '{} <span class="ddj-sub" title="{}">{}</span>',
            status_badge(obj.status),
            _("attempts"),
            attempts,
        )

    @admin.display(description=_("run at · duration"))
    def run_at_display(self, obj: Job) -> str:
        seconds = obj.duration
        if seconds is None:
            duration = ""
        elif seconds < 60:
            duration = f"{seconds:.3f} s"
        else:
            duration = f"{seconds / 60:.1f} min"
        return format_html(
            '<span title="{}">{}</span><span class="ddj-sub">{}</span>',
            when(obj.run_at),
            timezone.localtime(obj.run_at).strftime("%m-%d %H:%M:%S"),
            duration,
        )

    @admin.display(description=_("last error"))
    def last_error(self, obj: Job) -> str:
        message = getattr(obj, "last_message", None)
        if not message or obj.status == "SUCCESSFUL":
            return ""
        text = " ".join(message.split())
        short = text if len(text) <= 90 else text[:89] + "…"
        return format_html('<span class="ddj-error" title="{}">{}</span>', text, short)

    # -- pages ---------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        own: list[URLPattern] = []
        for page in pages():
            own += page.urls(self)
        return own + detail_urls(self) + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return detail_view(self, request, object_id)
