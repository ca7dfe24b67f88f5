"""The schedules page: every periodic entry, when it fires, how its last run went.

Settings entries (read-only, "from settings") and database entries (edited
through ``ScheduleEntryAdmin``) side by side. For a settings entry, enable /
disable are stored in ``ScheduleState`` and override its ``enabled`` setting
for every scheduler; "follow settings" drops the override. For a database
entry they change the entry itself and need ``change_scheduleentry`` too (and
go to the admin log). "Run now" enqueues one run through the tick ledger, as
``manage.py jobs schedule run`` does. Each POST needs ``manage_schedule``.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from ..conf import app_settings
from ..exceptions import DurableJobsError
from ..models import ScheduleEntry
from ..periodic import PeriodicConfigError
from ..schedule_entries import settings_names
from ..schedule_ops import (
    ScheduleInfo,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)
from .pages import AdminPage
from .rendering import dotted, relative, status_badge

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

#: POST action -> what it sets (``enabled`` override) or None for "run now".
SCHEDULE_ACTIONS = ("enable", "disable", "follow-settings", "run-now")


class SchedulesPage(AdminPage):
    slug = "schedules"
    title = _("Schedules")
    template = "admin/django_durable_jobs/schedules.html"

    def urls(self, model_admin: ModelAdmin) -> list[URLPattern]:
        @require_POST
        def act(request: HttpRequest) -> HttpResponse:
            return self.act(request, model_admin)

        name = self.url_name(model_admin)
        return [
            *super().urls(model_admin),
            path("schedules/act/", model_admin.admin_site.admin_view(act), name=f"{name}_act"),
        ]

    def act(self, request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
        if not request.user.has_perm("django_durable_jobs.manage_schedule"):
            raise PermissionDenied
        name = request.POST.get("name", "")
        action = request.POST.get("action", "")
        row = (
            None
            if name in settings_names()
            else ScheduleEntry.objects.using(app_settings.DATABASE).filter(name=name).first()
        )
        if (
            row is not None
            and action in ("enable", "disable")
            and not request.user.has_perm("django_durable_jobs.change_scheduleentry")
        ):
            raise PermissionDenied
        try:
            if action == "run-now":
                job_id = run_schedule_now(name)
                messages.success(
                    request,
                    _("Schedule “%(name)s”: enqueued job #%(id)s.") % {"name": name, "id": job_id},
                )
            elif action in ("enable", "disable", "follow-settings"):
                enabled = {"enable": True, "disable": False, "follow-settings": None}[action]
                set_schedule_enabled(name, enabled)
                if row is not None and enabled is not None:
                    _log_enabled(request, model_admin, row, enabled)
                done = {
                    "enable": _("Schedule “%(name)s” is enabled."),
                    "disable": _("Schedule “%(name)s” is disabled."),
                    "follow-settings": _("Schedule “%(name)s” follows its setting again."),
                }[action]
                messages.success(request, done % {"name": name})
            else:
                messages.error(request, _("Unknown action %(action)r.") % {"action": action})
        except (DurableJobsError, PeriodicConfigError) as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(
            reverse(f"{model_admin.admin_site.name}:{self.url_name(model_admin)}")
        )

    def view(self, request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
        site = model_admin.admin_site.name
        selection = EntrySelection.from_request(request)
        infos = selection.describe()
        if selection.error:
            messages.error(request, selection.error)
        ids = dict(
            ScheduleEntry.objects.using(app_settings.DATABASE)
            .filter(name__in=[i.name for i in infos if i.source == "database"])
            .values_list("name", "id")
        )
        can_edit = request.user.has_perm("django_durable_jobs.change_scheduleentry")
        rows = [_row(info, site, ids.get(info.name), can_edit) for info in infos]
        can_add = request.user.has_perm("django_durable_jobs.add_scheduleentry")
        return self.render(
            request,
            model_admin,
            {
                "schedules": rows,
                "can_manage": request.user.has_perm("django_durable_jobs.manage_schedule"),
                "can_edit": can_edit,
                "add_url": reverse(f"{site}:django_durable_jobs_scheduleentry_add")
                if can_add
                else None,
                "act_url": reverse(f"{site}:{self.url_name(model_admin)}_act"),
                "selection": selection,
            },
        )


#: Database entries per page: each shown entry is parsed and validated (~1 ms).
ENTRIES_PER_PAGE = 100
_ENABLED_CHOICES = {"": None, "yes": True, "no": False}


class EntrySelection:
    """The page's filters (``q``, ``tag``, ``enabled``, ``page``) and the entries they pick.

    Settings entries (few, from code) are filtered in Python; database entries
    (any number) by the database, one page at a time, so that 10,000 entries
    cost one page's validation. A malformed filter is refused with a message and
    an empty list, never read as "no filter".
    """

    def __init__(
        self, search: str = "", tag: str = "", enabled: bool | None = None, page: int = 1
    ) -> None:
        self.search, self.tag, self.enabled, self.page = search, tag, enabled, page
        self.error: str | None = None
        self.total = 0
        self.pages = 1

    @classmethod
    def from_request(cls, request: HttpRequest) -> EntrySelection:
        params = request.GET
        search = params.get("q", "").strip()[:200]
        tag = params.get("tag", "").strip()[:100]
        enabled_text = params.get("enabled", "")
        page_text = params.get("page", "1")
        selection = cls(search, tag)
        if enabled_text not in _ENABLED_CHOICES:
            selection.error = str(
                _("Unknown value %(value)r for enabled: use yes or no.") % {"value": enabled_text}
            )
            return selection
        selection.enabled = _ENABLED_CHOICES[enabled_text]
        if not page_text.isdigit() or int(page_text) < 1:
            selection.error = str(
                _("Unknown page %(value)r: pages are numbered from 1.") % {"value": page_text}
            )
            return selection
        selection.page = int(page_text)
        return selection

    def describe(self) -> list[ScheduleInfo]:
        if self.error:
            return []
        rows = ScheduleEntry.objects.using(app_settings.DATABASE).order_by("name")
        if self.search:
            rows = rows.filter(
                Q(name__icontains=self.search)
                | Q(job__icontains=self.search)
                | Q(description__icontains=self.search)
            )
        if self.enabled is not None:
            rows = rows.filter(enabled=self.enabled)
        ids: list[int]
        if self.tag:  # a JSON list: matched here, portably (SQLite has no JSON containment)
            ids = [pk for pk, tags in rows.values_list("id", "tags") if self.tag in (tags or ())]
        else:
            ids = list(rows.values_list("id", flat=True))
        self.total = len(ids)
        self.pages = max(1, -(-self.total // ENTRIES_PER_PAGE))
        if self.page > self.pages:
            self.error = str(
                _("There is no page %(page)s: the last is %(last)s.")
                % {"page": self.page, "last": self.pages}
            )
            return []
        start = (self.page - 1) * ENTRIES_PER_PAGE
        page = ScheduleEntry.objects.using(app_settings.DATABASE).filter(
            id__in=ids[start : start + ENTRIES_PER_PAGE]
        )
        infos = describe_schedules(database_rows=page)
        return [info for info in infos if info.source == "database" or self._keeps(info)]

    def _keeps(self, info: ScheduleInfo) -> bool:
        """Whether a settings entry matches the filters (they are listed on every page)."""
        search = self.search.lower()
        if search and search not in f"{info.name} {info.job}".lower():
            return False
        if self.tag and self.tag not in info.tags:
            return False
        return self.enabled is None or info.enabled == self.enabled

    def query(self, **changes: Any) -> str:
        """This selection's query string with ``changes`` (for the pager's links)."""
        from django.utils.http import urlencode

        values = {
            "q": self.search,
            "tag": self.tag,
            "enabled": {None: "", True: "yes", False: "no"}[self.enabled],
            "page": self.page,
            **changes,
        }
        return "?" + urlencode({key: value for key, value in values.items() if value})

    @property
    def previous_query(self) -> str | None:
        return self.query(page=self.page - 1) if self.page > 1 else None

    @property
    def next_query(self) -> str | None:
        return self.query(page=self.page + 1) if self.page < self.pages else None


def _log_enabled(
    request: HttpRequest, model_admin: ModelAdmin, row: ScheduleEntry, enabled: bool
) -> None:
    """Into Django's admin log, as the entry's own admin would write it."""
    entries_admin = model_admin.admin_site._registry.get(ScheduleEntry)
    if entries_admin is not None:
        entries_admin.log_change(request, row, [{"changed": {"fields": ["enabled"]}}])


def _moment(moment: datetime, zone_name: str) -> dict[str, str]:
    """A fire time in the entry's own zone, with UTC beside it and how far it is."""
    try:
        zone: tzinfo = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    local = moment.astimezone(zone)
    utc = moment.astimezone(UTC)
    same_day = local.date() == utc.date()
    return {
        "local": f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or zone_name}",
        "utc": f"{utc:%H:%M:%S} UTC" if same_day else f"{utc:%m-%d %H:%M:%S} UTC",
        "relative": relative((timezone.now() - moment).total_seconds()),
    }


def _row(
    info: ScheduleInfo, site: str, entry_id: int | None = None, can_edit: bool = False
) -> dict[str, Any]:
    job_url = None
    edit_url = None
    if info.source == "database" and entry_id is not None and can_edit:
        edit_url = reverse(f"{site}:django_durable_jobs_scheduleentry_change", args=[entry_id])
    if info.last_job_id is not None:
        job_url = reverse(f"{site}:django_durable_jobs_job_change", args=[info.last_job_id])
    upcoming = [_moment(moment, info.timezone) for moment in info.next_fire_times]
    return {
        "info": info,
        "job": dotted(info.job),
        "next": upcoming[0] if upcoming else None,
        # The ones after it, for the tooltip: the row stays one line high.
        "later": "; ".join(f"{m['local']} ({m['utc']})" for m in upcoming[1:]),
        "last": _moment(info.last_fire_time, info.timezone) if info.last_fire_time else None,
        "last_status": status_badge(info.last_status) if info.last_status else None,
        "job_url": job_url,
        "edit_url": edit_url,
        "from_database": info.source == "database",
    }
