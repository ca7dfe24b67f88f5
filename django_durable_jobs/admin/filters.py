"""Changelist filters that each map to an index, with choices that cost no table scan.

Job and queue names come from loose index scans (``Backend.distinct_names``,
``operations.queue_names``) and the registry, never from ``SELECT DISTINCT``
over the history.
A value a filter does not know is an error (Django's "invalid lookup"
page), never ignored: an ignored filter would widen "every job matching" to
every job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import operations, registry
from ..constants import JobStatus
from ..db import get_backend

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, StrOrPromise]]:
        return list(JobStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if value not in JobStatus.values:
            # Never widened to "every job": an action on all matching would hit them all.
            raise IncorrectLookupParameters(f"unknown status {value!r}")
        return queryset.filter(status=value)


class QueueFilter(admin.SimpleListFilter):
    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = operations.queue_names(model_admin.database)
        value = self.value()
        if value and value not in names:
            names.append(value)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset


class NameFilter(admin.SimpleListFilter):
    title = _("job name")
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Every name in the table (also of jobs whose code this process has not
        # imported, or that is gone), and the registered ones that have no jobs yet.
        names = set(registry.all_definitions())
        names.update(get_backend(model_admin.database).distinct_names())
        value = self.value()
        if value:
            names.add(value)  # reached by a link: shown selected even if it matches nothing
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(name=value) if value else queryset


def _ago(**delta: float) -> Any:
    return Now() - timedelta(**delta)


# Only finished jobs have a finished_at; naming their statuses lets the
# database use the (status, finished_at) index.
_FINISHED = Q(status__in=sorted(JobStatus.finished()))


_PERIODS: dict[str, tuple[StrOrPromise, Q]] = {
    "finished_1h": (_("Finished in the last hour"), _FINISHED & Q(finished_at__gte=_ago(hours=1))),
    "finished_24h": (
        _("Finished in the last 24 hours"),
        _FINISHED & Q(finished_at__gte=_ago(hours=24)),
    ),
    "finished_7d": (_("Finished in the last 7 days"), _FINISHED & Q(finished_at__gte=_ago(days=7))),
    "finished_before_7d": (
        _("Finished more than 7 days ago"),
        _FINISHED & Q(finished_at__lt=_ago(days=7)),
    ),
    "enqueued_1h": (_("Enqueued in the last hour"), Q(enqueued_at__gte=_ago(hours=1))),
    "enqueued_24h": (_("Enqueued in the last 24 hours"), Q(enqueued_at__gte=_ago(hours=24))),
    "scheduled": (
        _("Scheduled for later (READY, run at in the future)"),
        Q(status=JobStatus.READY, run_at__gt=Now()),
    ),
}


class PeriodFilter(admin.SimpleListFilter):
    title = _("when")
    parameter_name = "period"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(key, label) for key, (label, _condition) in _PERIODS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value is None:
            return queryset
        if value not in _PERIODS:
            raise IncorrectLookupParameters(f"unknown period {value!r}")
        return queryset.filter(_PERIODS[value][1])
