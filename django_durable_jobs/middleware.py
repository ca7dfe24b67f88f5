"""Job middleware (``DURABLE_JOBS["MIDDLEWARE"]``): code around every attempt, as Django's.

For what a project does around each job whatever the job: a tenant, a locale,
instrumentation. A middleware is a factory that is called once per process
with ``call_job``, the next step of the chain, and returns the callable that
runs each attempt::

    def tenant_middleware(call_job):
        def middleware(call: JobCall):
            with tenant_context(call.kwargs["tenant_id"]):
                return call_job(call)
        return middleware

The first path listed is the outermost. The chain is built by the first job a
process runs (and again if the setting changes, as in tests); with no
middleware there is no chain at all and ``execution`` calls the job directly.
What the chain returns is the job's result; what it raises is the attempt's
failure, decided by ``outcomes`` as if the job had raised it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.utils.module_loading import import_string

from .conf import app_settings
from .context import JobContext
from .definitions import JobDefinition
from .exceptions import Cancel, Retry, Snooze

__all__ = ["CONTROL_EXCEPTIONS", "CallJob", "JobCall"]

#: What a job raises to ask for another ending than a failure, not an error:
#: a middleware that catches ``Exception`` should re-raise these untouched.
CONTROL_EXCEPTIONS: tuple[type[Exception], ...] = (Retry, Snooze, Cancel)


@dataclasses.dataclass(frozen=True, slots=True)
class JobCall:
    """One attempt of a job, as a middleware sees it (read-only).

    ``args`` and ``kwargs`` are the job's stored arguments, decoded (without
    the ``JobContext`` a ``takes_context=True`` job also gets): what the job
    will be called with, on this attempt and every retry. ``context`` is the
    attempt's ``JobContext``, the same one ``current_job()`` returns.
    """

    context: JobContext
    definition: JobDefinition[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The job's name (``context.name``)."""
        return self.context.name


#: The next step of a chain: call it with the ``JobCall`` to run the job (and the
#: middleware after this one); it returns the job's return value.
CallJob = Callable[[JobCall], Any]


def build(paths: Any, innermost: CallJob) -> CallJob | None:
    """The chain of ``paths`` (first = outermost) around ``innermost``; None if it is empty.

    Raises ``ImproperlyConfigured`` for a path that does not import or a
    factory that returns something that cannot run a job; a factory that
    raises ``MiddlewareNotUsed`` is left out, as in Django.
    """
    if not isinstance(paths, list | tuple):
        raise ImproperlyConfigured(
            f"DURABLE_JOBS['MIDDLEWARE'] must be a list of dotted paths, not {paths!r}."
        )
    handler = innermost
    for path in reversed(paths):
        try:
            factory = import_string(path)
        except ImportError as exc:
            message = f"job middleware {path!r} cannot be imported: {exc}"
            raise ImproperlyConfigured(message) from exc
        try:
            wrapped = factory(handler)
        except MiddlewareNotUsed:
            continue
        if not callable(wrapped) or _is_async(wrapped):
            raise ImproperlyConfigured(
                f"job middleware {path!r} returned {wrapped!r}; its factory must return a "
                "plain (not async) callable that takes the JobCall and returns "
                "call_job(call). Async jobs run inside call_job: a middleware is the same "
                "for both."
            )
        handler = wrapped
    return None if handler is innermost else handler


def _is_async(handler: Any) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 - an instance's async __call__
    return iscoroutinefunction(handler) or iscoroutinefunction(call)


class Chain:
    """The process's middleware chain around ``innermost``, built once per value of the setting.

    ``handler()`` is what a job calls: None when ``MIDDLEWARE`` is empty. Two
    executor threads asking at once build it once; a build that raises is not
    kept, so the next job tries again (and fails the same way, loudly).
    """

    def __init__(self, innermost: CallJob) -> None:
        self._innermost = innermost
        self._lock = threading.Lock()
        self._paths: Any = _UNSET
        self._handler: CallJob | None = None

    def handler(self) -> CallJob | None:
        paths = app_settings.MIDDLEWARE
        if paths is self._paths:  # the hot path: one attribute read and a comparison
            return self._handler
        with self._lock:
            if paths is not self._paths:
                self._handler = build(paths, self._innermost) if paths else None
                self._paths = paths  # after the handler: a reader that sees it sees both
            return self._handler


_UNSET = object()
