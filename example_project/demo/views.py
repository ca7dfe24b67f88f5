from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from django_durable_jobs.models import Job
from django_durable_jobs.scheduler import describe_schedules

from .services import enqueue_demo_jobs, sign_up


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if request.POST.get("action") == "signup" and request.POST.get("email"):
            signup = sign_up(request.POST["email"])
            messages.success(request, f"Signed up {signup.email}: the welcome email is queued.")
        else:
            count = enqueue_demo_jobs()
            messages.success(request, f"Enqueued {count} demo jobs in one transaction.")
        return redirect("index")
    jobs = Job.objects.defer("args", "kwargs", "result", "errors", "meta")[:20]
    schedules = describe_schedules(count=1)
    return render(request, "demo/index.html", {"jobs": jobs, "schedules": schedules})
