"""A job's page: facts, arguments and result as pretty JSON, every attempt, and actions.

Arguments, results, metadata and error texts are shown only with the
``view_job_payload`` permission, always escaped, clipped past
``rendering.CLIP_CHARS`` with a link to see them whole (``?full=<part>``) or
as raw JSON (``raw/<part>/``). Actions are POST-only and check their
permission on the server, whatever the page showed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from .. import operations
from ..constants import JobStatus
from ..models import Job
from .pages import console_context
from .rendering import (
    clip,
    outcome_badge,
    parse_when,
    pretty_json,
    progress_bar,
    size_label,
    status_badge,
    when,
    worker_label,
)

if TYPE_CHECKING:
    from .jobs import JobAdmin

PAYLOAD_PARTS = {
    "args": _("Arguments"),
    "kwargs": _("Keyword arguments"),
    "result": _("Result"),
    "meta": _("Metadata"),
    "history": _("Attempt history"),
}

# action -> (name in ``operations``, permission codename, allowed statuses); by name, so
# importing the admin (as every process of the project does) does not import them.
JOB_ACTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "retry": ("retry", "retry_job", (JobStatus.FAILED, JobStatus.CANCELLED)),
    "cancel": ("cancel", "cancel_job", (JobStatus.READY, JobStatus.RUNNING)),
    "run-now": ("run_now", "run_job_now", (JobStatus.READY,)),
}


def detail_urls(model_admin: JobAdmin) -> list[URLPattern]:
    wrap = model_admin.admin_site.admin_view
    info = "django_durable_jobs_job"
    urls = [
        path(
            "<int:object_id>/delete/",
            wrap(lambda request, object_id: delete_view(model_admin, request, object_id)),
            name=f"{info}_delete",
        ),
        path(
            "<int:object_id>/raw/<str:part>/",
            wrap(lambda request, object_id, part: raw_view(model_admin, request, object_id, part)),
            name=f"{info}_raw",
        ),
    ]
    for action in JOB_ACTIONS:

        def view(request: HttpRequest, object_id: int, action: str = action) -> HttpResponse:
            return action_view(model_admin, request, object_id, action)

        urls.append(
            path(
                f"<int:object_id>/{action}/",
                wrap(require_POST(view)),
                name=f"{info}_{action.replace('-', '_')}",
            )
        )
    return urls


def _job(model_admin: JobAdmin, request: HttpRequest, object_id: Any, *, payload: bool) -> Job:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    queryset = model_admin.get_queryset(request)
    if not payload:
        queryset = queryset.defer("args", "kwargs", "result", "meta")
    else:
        queryset = queryset.defer(None)
    try:
        return queryset.get(pk=int(object_id))
    except (Job.DoesNotExist, ValueError, TypeError):
        raise Http404(f"No job #{object_id}.") from None


def _detail_url(model_admin: JobAdmin, job_id: int) -> str:
    return reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_change", args=[job_id])


def action_view(
    model_admin: JobAdmin, request: HttpRequest, object_id: int, action: str
) -> HttpResponse:
    operation, codename, _statuses = JOB_ACTIONS[action]
    if not request.user.has_perm(f"django_durable_jobs.{codename}"):
        raise PermissionDenied
    job = _job(model_admin, request, object_id, payload=False)
    result = getattr(operations, operation)(
        [job.id], actor=request.user.get_username(), database=model_admin.database
    )
    if result.done:
        messages.success(request, result.summary())
    else:
        messages.warning(request, result.summary())
    return HttpResponseRedirect(_detail_url(model_admin, job.id))


def delete_view(model_admin: JobAdmin, request: HttpRequest, object_id: int) -> HttpResponse:
    if not model_admin.has_delete_permission(request):
        raise PermissionDenied
    job = _job(model_admin, request, object_id, payload=False)
    if request.method == "POST":
        result = operations.delete(
            [job.id], actor=request.user.get_username(), database=model_admin.database
        )
        if not result.done:
            messages.warning(request, result.summary())
            return HttpResponseRedirect(_detail_url(model_admin, job.id))
        messages.success(request, result.summary())
        return HttpResponseRedirect(
            reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist")
        )
    site = model_admin.admin_site.name
    parents = [
        (_("Jobs"), reverse(f"{site}:django_durable_jobs_job_changelist")),
        (f"#{job.id}", reverse(f"{site}:django_durable_jobs_job_change", args=[job.id])),
    ]
    context = console_context(
        request, model_admin, _("Delete job #%s") % job.id, active="jobs", parents=parents
    )
    context.update(job=job, detail_url=_detail_url(model_admin, job.id))
    return TemplateResponse(request, "admin/django_durable_jobs/job/delete.html", context)


def raw_view(
    model_admin: JobAdmin, request: HttpRequest, object_id: int, part: str
) -> HttpResponse:
    if part not in PAYLOAD_PARTS:
        raise Http404("No such part of a job.")
    if not model_admin.has_payload_permission(request):
        raise PermissionDenied
    job = _job(model_admin, request, object_id, payload=True)
    value = job.errors if part == "history" else getattr(job, part)
    response = HttpResponse(pretty_json(value), content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="job-{job.id}-{part}.json"'
    return response


def detail_view(model_admin: JobAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    can_see = model_admin.has_payload_permission(request)
    job = _job(model_admin, request, object_id, payload=can_see)
    full = set(request.GET.getlist("full"))
    raw_url = reverse(
        f"{model_admin.admin_site.name}:django_durable_jobs_job_raw", args=[job.id, "args"]
    ).rsplit("/args/", 1)[0]
    changelist_url = reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist")
    context = console_context(
        request, model_admin, f"Job #{job.id}", active="jobs", parents=[(_("Jobs"), changelist_url)]
    )
    context.update(
        job=job,
        status=status_badge(job.status),
        progress=_progress(job, can_see),
        facts=_facts(job),
        can_see_payload=can_see,
        payload=_payload_sections(job, full, raw_url) if can_see else [],
        history=_history(job, full, can_see),
        history_raw_url=f"{raw_url}/history/",
        run_steps=_run_steps(model_admin, request, job),
        actions=_available_actions(model_admin, request, job),
        can_delete=model_admin.has_delete_permission(request) and job.status != JobStatus.RUNNING,
        delete_url=reverse(
            f"{model_admin.admin_site.name}:django_durable_jobs_job_delete", args=[job.id]
        ),
        changelist_url=changelist_url,
    )
    return TemplateResponse(request, "admin/django_durable_jobs/job/detail.html", context)


def _available_actions(
    model_admin: JobAdmin, request: HttpRequest, job: Job
) -> list[dict[str, Any]]:
    labels = {"retry": _("Retry"), "cancel": _("Cancel"), "run-now": _("Run now")}
    actions = []
    for action, (_operation, codename, statuses) in JOB_ACTIONS.items():
        if job.status not in statuses:
            continue
        if action == "run-now" and job.run_at <= timezone.now():
            continue
        if not request.user.has_perm(f"django_durable_jobs.{codename}"):
            continue
        name = f"django_durable_jobs_job_{action.replace('-', '_')}"
        actions.append(
            {
                "name": action,
                "label": labels[action],
                "url": reverse(f"{model_admin.admin_site.name}:{name}", args=[job.id]),
                "danger": action == "cancel",
            }
        )
    return actions


def _progress(job: Job, can_see: bool) -> dict[str, Any] | None:
    """The bar, when the progress was reported, and by which attempt if not the latest."""
    from ..progress import Progress

    progress = Progress.from_value(job.progress)
    if progress is None:
        return None
    return {
        "bar": progress_bar(job.progress, with_message=can_see),
        "at": when(progress.at),
        "attempt": progress.attempt if progress.attempt != job.attempts else None,
    }


def _facts(job: Job) -> list[tuple[Any, Any]]:
    facts: list[tuple[Any, Any]] = [
        (_("Job name"), job.name),
        (_("Queue"), job.queue),
        (_("Priority"), job.priority),
        (_("Attempts"), f"{job.attempts} of {job.max_attempts}"),
        (_("Run at"), when(job.run_at)),
        (_("Enqueued at"), when(job.enqueued_at)),
        (_("Last attempt started"), when(job.started_at)),
        (_("Finished at"), when(job.finished_at)),
        (_("Duration"), f"{job.duration:.3f} s" if job.duration is not None else None),
        (_("Timeout"), f"{job.timeout:g} s" if job.timeout else _("none")),
        (_("Worker"), worker_label(job.worker_id) or None),
    ]
    if job.status == JobStatus.RUNNING:
        facts.append((_("Lease expires at"), when(job.lease_expires_at)))
    optional = [
        (_("Expires at"), when(job.expires_at)),
        (_("Cancel requested at"), when(job.cancel_requested_at)),
        (_("Unique key"), job.unique_key),
        (_("Concurrency key"), job.concurrency_key),
        (_("Concurrency limit"), job.concurrency_limit),
        (_("Rate key"), job.rate_key),
        (_("Rate limit"), _rate(job)),
        (_("Run"), job.run_id),
        (_("Parent job"), job.parent_id),
        (_("Waiting for jobs"), job.waiting_for or None),
    ]
    facts += [(label, value) for label, value in optional if value is not None]
    return facts


def _rate(job: Job) -> str | None:
    if job.rate_limit is None or job.rate_period is None:
        return None
    return str(_("%(starts)s per %(period)g s")) % {
        "starts": job.rate_limit,
        "period": job.rate_period,
    }


#: A run longer than this shows its first steps and a link to all of them.
RUN_STEPS_SHOWN = 100


def _run_steps(model_admin: JobAdmin, request: HttpRequest, job: Job) -> dict[str, Any] | None:
    """The jobs of this job's run (a ``Steps`` run or a chain), in the order they were made."""
    if job.run_id is None:
        return None
    jobs = (
        model_admin.get_queryset(request)
        .filter(run_id=job.run_id)
        .only("id", "name", "status", "attempts", "max_attempts", "finished_at", "meta")
        .order_by("id")
    )
    steps = [
        {
            "id": step.id,
            "number": step.meta.get("step") if isinstance(step.meta, dict) else None,
            "name": step.name,
            "status": status_badge(step.status),
            "attempts": f"{step.attempts} of {step.max_attempts}",
            "finished": when(step.finished_at),
            "url": _detail_url(model_admin, step.id),
            "current": step.id == job.id,
        }
        for step in jobs[: RUN_STEPS_SHOWN + 1]
    ]
    changelist = reverse(f"{model_admin.admin_site.name}:django_durable_jobs_job_changelist")
    return {
        "run_id": job.run_id,
        "steps": steps[:RUN_STEPS_SHOWN],
        "more": len(steps) > RUN_STEPS_SHOWN,
        "declared": job.meta.get("steps") if isinstance(job.meta, dict) else None,
        "all_url": f"{changelist}?q={job.run_id}",
    }


def _payload_sections(job: Job, full: set[str], raw_url: str) -> list[dict[str, Any]]:
    sections = []
    for part in ("args", "kwargs", "result", "meta"):
        value = getattr(job, part)
        if part == "result" and job.status != JobStatus.SUCCESSFUL and value is None:
            continue
        if part == "meta" and not value:
            continue
        shown = clip(pretty_json(value), full=part in full or "all" in full)
        sections.append(
            {
                "part": part,
                "label": PAYLOAD_PARTS[part],
                "text": shown.text,
                "clipped": shown.clipped,
                "size": size_label(shown.total),
                "hidden": size_label(shown.hidden),
                "raw_url": f"{raw_url}/{part}/",
            }
        )
    return sections


def _history(job: Job, full: set[str], can_see: bool) -> list[dict[str, Any]]:
    entries = []
    everything = "all" in full or "history" in full
    history = operations.history(job)
    for index, entry in enumerate(history):
        item: dict[str, Any] = {
            "index": index,
            "attempt": entry.get("attempt"),
            "outcome": outcome_badge(entry.get("outcome")),
            "operator": str(entry.get("outcome", "")).startswith("operator_"),
            "at": when(parse_when(entry.get("at"))),
            "latest": index == len(history) - 1,
            "worker": worker_label(entry.get("worker")),
            "by": entry.get("by"),
            "exception_class": entry.get("exception_class"),
        }
        if can_see:
            message = clip(str(entry.get("message") or ""), 2000, full=everything)
            item["message"] = message
            if entry.get("traceback"):
                item["traceback"] = clip(str(entry["traceback"]), full=everything)
        entries.append(item)
    entries.reverse()  # newest first: the last error is what one comes for
    return entries
