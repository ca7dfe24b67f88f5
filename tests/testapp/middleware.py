"""Job middleware for tests/worker/test_middleware.py, and the jobs it runs under them.

What the middleware saw is returned by the jobs (so a worker subprocess's run
shows it in the stored results) and appended to ``EVENTS`` (in-process runs).
``scripted`` does what a job's ``mw`` keyword argument asks: fail before or
after the job, swallow its exception, cancel, change the arguments, write to
the database, or dawdle.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import Counter as Tally
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import MiddlewareNotUsed
from django.db.models import F
from django.utils import translation

from django_durable_jobs import Cancel, FixedDelay, current_job, job
from django_durable_jobs.middleware import CONTROL_EXCEPTIONS, CallJob, JobCall
from tests.testapp.models import Counter

#: (middleware, what happened, detail) in the order it happened, in this process.
EVENTS: list[tuple[str, str, Any]] = []
#: How many times each factory was called in this process.
BUILDS: Tally[str] = Tally()
#: The names of the middleware the running job is inside, outermost first.
TRAIL: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("trail", default=())
#: Per-thread state, as a tenant library keeps it on the connection.
_local = threading.local()


def _bump(key: str) -> None:
    Counter.objects.filter(key=key).update(value=F("value") + 1)


def _tagging(name: str) -> Any:
    def factory(call_job: CallJob) -> CallJob:
        BUILDS[name] += 1

        def middleware(call: JobCall) -> Any:
            seen = {
                "current_job": current_job() is call.context,
                "args": call.args,
                "kwargs": dict(call.kwargs),
            }
            EVENTS.append((name, "before", seen))
            token = TRAIL.set((*TRAIL.get(), name))
            try:
                value = call_job(call)
            finally:
                TRAIL.reset(token)
            EVENTS.append((name, "after", value))
            return [*value, f"{name}:after"] if isinstance(value, list) else value

        return middleware

    return factory


first = _tagging("first")
second = _tagging("second")


def tenant(call_job: CallJob) -> CallJob:
    """Sets a thread-local "tenant" from the job's ``tenant`` keyword, for the job's duration."""

    def middleware(call: JobCall) -> Any:
        previous = getattr(_local, "tenant", None)
        _local.tenant = call.kwargs.get("tenant")
        try:
            return call_job(call)
        finally:
            _local.tenant = previous

    return middleware


def locale(call_job: CallJob) -> CallJob:
    """Activates the job's ``language`` keyword (a contextvar-backed setting in Django)."""

    def middleware(call: JobCall) -> Any:
        with translation.override(call.kwargs.get("language", "en")):
            return call_job(call)

    return middleware


def current_tenant() -> str | None:
    return getattr(_local, "tenant", None)


def scripted(call_job: CallJob) -> CallJob:
    def middleware(call: JobCall) -> Any:
        script = call.kwargs.get("mw", "").split(",")
        if "raise_before" in script:
            raise RuntimeError("middleware failed before the job")
        if "cancel_before" in script:
            raise Cancel("tenant suspended")
        if "mutate" in script:
            call.kwargs["mw"] = "something else"  # type: ignore[index]
        if "write" in script:
            _bump("mw")
        if "dawdle" in script:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # short sleeps: a timeout can land
                time.sleep(0.01)
        try:
            value = call_job(call)
        except CONTROL_EXCEPTIONS as exc:
            EVENTS.append(("scripted", "passed on", exc))
            raise
        except Exception as exc:
            if "swallow" in script:
                return f"recovered from {exc}"
            EVENTS.append(("scripted", "passed on", exc))
            raise
        except BaseException as exc:  # JobTimeout
            EVENTS.append(("scripted", "passed on", exc))
            raise
        if "raise_after" in script:
            raise RuntimeError("middleware failed after the job")
        return value

    return middleware


def not_used(call_job: CallJob) -> CallJob:
    BUILDS["not_used"] += 1
    raise MiddlewareNotUsed


def returns_async(call_job: CallJob) -> Any:
    async def middleware(call: JobCall) -> Any:
        return call_job(call)

    return middleware


async def async_factory(call_job: CallJob) -> Any:
    return call_job


NOT_CALLABLE = 42

NOW = FixedDelay(0.0)


@job(max_attempts=2, retry=NOW)
def reports(key: str, tenant: str | None = None, mw: str = "", fail: bool = False) -> Any:
    """Returns the middleware it ran inside, the tenant it saw and how often each was built."""
    _bump(key)
    if fail:
        raise ValueError("the job failed")
    return [*TRAIL.get(), f"tenant={current_tenant()}", f"builds={BUILDS['first']}", "job"]


@job(max_attempts=2, retry=NOW)
async def reports_async(key: str, tenant: str | None = None) -> Any:
    """The same from its event loop: the trail (a contextvar), and the executor thread's
    tenant through ``sync_to_async`` (where the ORM runs)."""
    await Counter.objects.filter(key=key).aupdate(value=F("value") + 1)
    seen = await sync_to_async(current_tenant)()
    return [*TRAIL.get(), f"tenant={seen}", f"builds={BUILDS['first']}", "job"]


@job(max_attempts=2, retry=NOW, atomic=True)
def reports_atomic(key: str, mw: str = "") -> Any:
    _bump(key)
    return [*TRAIL.get(), "job"]


@job(max_attempts=1, takes_context=True)
def with_context(context, key: str) -> Any:
    """A ``takes_context`` job: the middleware's ``call.args`` do not include the context."""
    _bump(key)
    return [*TRAIL.get(), f"context={context is current_job()}", "job"]


@job
def speaks(language: str) -> str | None:
    return translation.get_language()


@job
async def speaks_async(language: str) -> str | None:
    return translation.get_language()
