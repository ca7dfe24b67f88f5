"""Functions decorated with Django's own @task, run by DurableJobsBackend (TASKS in settings)."""

from __future__ import annotations

from django.db.models import F

from .models import Counter

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task


@task
def multiply(a: int, b: int) -> int:
    return a * b


@task(priority=10, queue_name="emails")
def send_email(address: str) -> str:
    return f"sent to {address}"


@task
def fails(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def with_context(context, key: str) -> dict:
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": context.task_result.status,
    }


@task(takes_context=True)
def fails_once(context, key: str) -> int:
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if context.attempt == 1:
        raise ConnectionError("first attempt fails")
    return context.attempt


@task
async def async_multiply(a: int, b: int) -> int:
    return a * b


@task
def cancels() -> None:
    from django_durable_jobs import Cancel

    raise Cancel("not needed any more")


@task
def returns_a_set() -> object:
    return {1, 2}
