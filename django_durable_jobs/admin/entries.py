"""Database schedule entries in the admin: create, edit, duplicate, enable, disable, run now.

Each action has its own permission: Django's add / change / delete / view of
``ScheduleEntry`` (enable and disable need change; "Save as new" duplicates
and needs add), and ``manage_schedule`` for "run now". The form validates
with the model (the system checks' messages, each on its field); the change
page previews the next 5 fire times in the entry's zone and in UTC. Changes
go to Django's admin log. Settings entries are not here: the schedules page
shows them, read-only.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from django.contrib import admin, messages
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..exceptions import DurableJobsError
from ..models import ScheduleEntry
from ..schedule_entries import load_row
from ..schedule_ops import run_schedule_now

PREVIEW_COUNT = 5


class TagFilter(admin.SimpleListFilter):
    """Entries with a tag (PostgreSQL: exact; SQLite, which has no JSON contains: any case)."""

    title = _("tag")
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags: set[str] = set()
        for value in model_admin.get_queryset(request).values_list("tags", flat=True):
            if isinstance(value, list):
                tags.update(tag for tag in value if isinstance(tag, str))
        return [(tag, tag) for tag in sorted(tags)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        tag = self.value()
        if not tag:
            return queryset
        if connections[queryset.db].vendor == "postgresql":
            return queryset.filter(tags__contains=[tag])
        return queryset.filter(tags__icontains=json.dumps(tag))


@admin.register(ScheduleEntry)
class ScheduleEntryAdmin(admin.ModelAdmin):
    list_display = ("name", "schedule_display", "job", "enabled", "tags_display", "updated_at")
    list_filter = ("enabled", TagFilter, "missed")
    search_fields = ("name", "job", "description", "schedule")
    search_help_text = _("Part of a name, job, schedule or description.")
    ordering = ("name",)
    list_per_page = 100
    save_as = True  # "Save as new": duplicate an entry under another name
    readonly_fields = ("preview", "version", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "job", "schedule", "timezone", "preview", "enabled")}),
        (_("Arguments"), {"fields": ("args", "kwargs")}),
        (
            _("Options"),
            {
                "fields": (
                    "queue",
                    "priority",
                    "missed",
                    "max_delay",
                    "overlap",
                    "run_on_start",
                    "tags",
                    "description",
                )
            },
        ),
        (_("History"), {"fields": ("version", "created_at", "updated_at")}),
    )
    actions = ("enable_entries", "disable_entries", "run_entries_now")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ScheduleEntry]:
        return super().get_queryset(request).using(app_settings.DATABASE)

    def has_manage_schedule_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.manage_schedule")

    # -- columns and the preview -------------------------------------------
    @admin.display(description=_("schedule"))
    def schedule_display(self, obj: ScheduleEntry) -> str:
        entry, problems = load_row(obj)
        if problems:
            return format_html(
                '<span class="ddj-badge ddj-failed">{}</span> <code>{}</code>',
                _("broken"),
                obj.schedule,
            )
        assert entry is not None
        return format_html(
            "{} <code>{}</code> ({})", entry.schedule.describe(), obj.schedule, entry.zone_name
        )

    @admin.display(description=_("tags"))
    def tags_display(self, obj: ScheduleEntry) -> str:
        tags = obj.tags if isinstance(obj.tags, list) else []
        return format_html_join(" ", '<span class="ddj-badge">{}</span>', ((t,) for t in tags))

    @admin.display(description=_("next fire times"))
    def preview(self, obj: ScheduleEntry) -> str:
        if obj.pk is None:
            return str(_("Shown once saved."))
        entry, problems = load_row(obj)
        if entry is None:
            return format_html_join(
                "", '<div class="errornote">{}</div>', ((p.message,) for p in problems)
            )
        times = entry.schedule.upcoming(timezone.now(), PREVIEW_COUNT)
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "",
                "<li>{} <span class='ddj-muted'>({} UTC)</span></li>",
                (
                    (
                        moment.astimezone(entry.schedule.zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
                        moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    )
                    for moment in times
                ),
            ),
        )

    # -- actions ------------------------------------------------------------
    def _set_enabled(self, request: HttpRequest, queryset: Any, enabled: bool) -> None:
        changed = 0
        for row in queryset:
            if row.enabled == enabled:
                continue
            row.enabled = enabled
            try:
                row.save(using=app_settings.DATABASE)
            except DurableJobsError as exc:
                messages.error(request, str(exc))
                continue
            self.log_change(request, row, [{"changed": {"fields": ["enabled"]}}])
            changed += 1
        done = (
            _("Enabled %(count)s schedule(s).") if enabled else _("Disabled %(count)s schedule(s).")
        )
        messages.success(request, done % {"count": changed})

    @admin.action(description=_("Enable selected schedules"), permissions=["change"])
    def enable_entries(self, request: HttpRequest, queryset: Any) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description=_("Disable selected schedules"), permissions=["change"])
    def disable_entries(self, request: HttpRequest, queryset: Any) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description=_("Run selected schedules now"), permissions=["manage_schedule"])
    def run_entries_now(self, request: HttpRequest, queryset: Any) -> None:
        for row in queryset:
            try:
                job_id = run_schedule_now(row.name)
            except DurableJobsError as exc:
                messages.error(request, str(exc))
                continue
            self.log_change(request, row, f"Ran now: job #{job_id}")
            messages.success(
                request,
                _("Schedule “%(name)s”: enqueued job #%(id)s.") % {"name": row.name, "id": job_id},
            )
