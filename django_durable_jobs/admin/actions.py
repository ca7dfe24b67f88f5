"""Changelist actions: retry, cancel, run now, delete, for the selection or the whole filter.

Each is a Django admin action guarded by its permission (Django drops an
action the user may not run, so a crafted POST naming it does nothing). An
action on "all N matching" (select across) or a delete first shows a
confirmation page with what it will do; the operation then runs in bounded
batches, at most ``JobAdmin.bulk_limit`` jobs per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from .. import operations
from ..models import Job
from .pages import console_context

if TYPE_CHECKING:
    from .jobs import JobAdmin

    Operation = Callable[..., operations.OperationResult]

#: GET parameters of the changelist that are not filters.
_NOT_FILTERS = {"p", "o", "all", "e", "_changelist_filters", "_to_field", "_popup"}


def run_action(
    model_admin: JobAdmin,
    request: HttpRequest,
    queryset: QuerySet[Job],
    *,
    action: str,
    operation: Operation,
    title: Any,
    always_confirm: bool = False,
) -> HttpResponse | None:
    select_across = request.POST.get("select_across") == "1"
    if (select_across or always_confirm) and request.POST.get("ddj_confirm") != "yes":
        preview = operation(queryset, dry_run=True, limit=model_admin.bulk_limit)
        changelist = reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist")
        context = console_context(
            request, model_admin, title, active="jobs", parents=[(_("Jobs"), changelist)]
        )
        context.update(
            action=action,
            preview=preview,
            select_across=select_across,
            selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            filters=[
                (key, value)
                for key, value in request.GET.items()
                if key not in _NOT_FILTERS and value != ""
            ],
            bulk_limit=model_admin.bulk_limit,
        )
        return TemplateResponse(
            request, "admin/django_durable_jobs/job/action_confirmation.html", context
        )
    result = operation(queryset, actor=request.user.get_username(), limit=model_admin.bulk_limit)
    level = messages.SUCCESS if result.complete else messages.WARNING
    model_admin.message_user(request, result.summary(), level)
    return None


def _action(
    name: str, operation: str, permission: str, description: Any, *, confirm: bool = False
) -> Callable[..., HttpResponse | None]:
    """The admin action ``name`` running ``operations.<operation>`` (looked up when used:
    the admin module is imported by every process of the project, workers included)."""

    def action(model_admin: JobAdmin, request: HttpRequest, queryset: QuerySet[Job]) -> Any:
        return run_action(
            model_admin,
            request,
            queryset,
            action=name,
            operation=getattr(operations, operation),
            title=description,
            always_confirm=confirm,
        )

    action.__name__ = name
    return admin.action(permissions=[permission], description=description)(action)


retry_jobs = _action("retry_jobs", "retry", "retry", _("Retry (FAILED, CANCELLED)"))
cancel_jobs = _action("cancel_jobs", "cancel", "cancel", _("Cancel (READY, RUNNING)"), confirm=True)
run_jobs_now = _action("run_jobs_now", "run_now", "run_now", _("Run now (scheduled READY)"))
delete_jobs = _action("delete_jobs", "delete", "delete", _("Delete (not RUNNING)"), confirm=True)

ACTIONS = [retry_jobs, cancel_jobs, run_jobs_now, delete_jobs]
