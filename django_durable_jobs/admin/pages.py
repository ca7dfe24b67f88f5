"""The console's own pages beside the jobs list (the dashboard, the schedules).

A page is an ``AdminPage`` in ``PAGES``: its URLs are added under the jobs
admin (``admin/django_durable_jobs/job/<slug>/``) and it gets a tab in the
navigation every console page shows. Adding a page means writing its view
and template and appending it to ``PAGES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import django
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin


class AdminPage:
    """One page of the console. Subclasses set ``slug``/``title`` and implement ``view``."""

    slug = ""
    title: Any = ""
    template = ""

    def url_name(self, model_admin: ModelAdmin) -> str:
        opts = model_admin.model._meta
        return f"{opts.app_label}_{opts.model_name}_{self.slug.replace('-', '_')}"

    def has_permission(self, request: HttpRequest, model_admin: ModelAdmin) -> bool:
        return model_admin.has_view_permission(request)

    def urls(self, model_admin: ModelAdmin) -> list[URLPattern]:
        """The page itself; override to add POST endpoints (wrap them in ``admin_view``)."""
        view = model_admin.admin_site.admin_view(
            lambda request: self.dispatch(request, model_admin)
        )
        return [path(f"{self.slug}/", view, name=self.url_name(model_admin))]

    def dispatch(self, request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
        from django.core.exceptions import PermissionDenied

        if not self.has_permission(request, model_admin):
            raise PermissionDenied
        return self.view(request, model_admin)

    def view(self, request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
        raise NotImplementedError

    def render(
        self, request: HttpRequest, model_admin: ModelAdmin, context: dict[str, Any]
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            self.template,
            {**console_context(request, model_admin, self.title, active=self.slug), **context},
        )


def _pages() -> list[AdminPage]:
    from .dashboard import DashboardPage
    from .schedules import SchedulesPage

    return [DashboardPage(), SchedulesPage()]


PAGES: list[AdminPage] = []


def pages() -> list[AdminPage]:
    if not PAGES:
        PAGES.extend(_pages())
    return PAGES


def nav_tabs(request: HttpRequest, model_admin: ModelAdmin, active: str) -> list[dict[str, Any]]:
    """Tabs for every console page the user may see, in order."""
    from ..models import Worker

    tabs = []
    for page in pages():
        if page.has_permission(request, model_admin):
            url = reverse(f"{model_admin.admin_site.name}:{page.url_name(model_admin)}")
            tabs.append({"slug": page.slug, "title": page.title, "url": url})
        if page.slug == "dashboard":
            tabs.append(
                {
                    "slug": "jobs",
                    "title": _("Jobs"),
                    "url": reverse(
                        f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist"
                    ),
                }
            )
    worker_admin = model_admin.admin_site._registry.get(Worker)
    if worker_admin is not None and worker_admin.has_view_permission(request):
        tabs.append(
            {
                "slug": "workers",
                "title": _("Workers"),
                "url": reverse(
                    f"{model_admin.admin_site.name}:django_durable_jobs_worker_changelist"
                ),
            }
        )
    for tab in tabs:
        tab["active"] = tab["slug"] == active
    return tabs


def console_context(
    request: HttpRequest,
    model_admin: ModelAdmin,
    title: Any,
    *,
    active: str,
    parents: Sequence[tuple[Any, str]] = (),
) -> dict[str, Any]:
    """What every console page's template needs: the admin's context, title, tabs, crumbs.

    ``parents``: ``(label, url)`` pages between the app and this one (the job list,
    for a job's page).
    """
    opts = model_admin.model._meta
    site = model_admin.admin_site.name
    crumbs = [
        (_("Home"), reverse(f"{site}:index")),
        (opts.app_config.verbose_name, reverse(f"{site}:app_list", args=[opts.app_label])),
        *parents,
        (title, None),
    ]
    return {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "ddj_tabs": nav_tabs(request, model_admin, active),
        "ddj_crumbs": crumbs,
        # Django 6 renders breadcrumbs as a list (<ol class="breadcrumbs">), 5.2 as a div.
        "ddj_crumbs_as_list": django.VERSION >= (6, 0),
    }
