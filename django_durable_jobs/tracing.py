"""OpenTelemetry spans for jobs (``DURABLE_JOBS["OPENTELEMETRY"] = True``; the API package only).

Following the messaging semantic conventions:

* ``send {queue}`` (kind PRODUCER) around each insert of jobs, in the caller's
  trace (a request's, say). Its context goes into each job's meta (W3C Trace
  Context: ``traceparent``, ``tracestate``).
* ``process {queue}`` (kind CONSUMER) around each attempt, a child of that
  context: every attempt of a job, retries included, is a child of the span
  that enqueued it, and the jobs an attempt enqueues are children of the
  attempt. Follow-ups the writer inserts after the attempt (``then=``, the
  next step, group callbacks) continue the finished job's trace.

With the setting off (the default), or without ``opentelemetry-api``, nothing
here runs beyond one settings lookup per insert and per attempt.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from .conf import app_settings
from .rows import ClaimedJob, PreparedJob

#: The key of ``Job.meta`` that carries the trace context.
TRACE = "trace"
SYSTEM = "django_durable_jobs"


def enabled() -> bool:
    return bool(app_settings.OPENTELEMETRY)


def _tracer() -> Any:
    from opentelemetry import trace

    from . import __version__

    return trace.get_tracer("django_durable_jobs", __version__)


def _carrier() -> dict[str, str]:
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def _with_carrier(meta_json: str, carrier: dict[str, str]) -> str:
    meta = json.loads(meta_json) if meta_json and meta_json != "{}" else {}
    meta[TRACE] = carrier
    return json.dumps(meta, ensure_ascii=False)


@contextlib.contextmanager
def producing(prepared: list[PreparedJob]) -> Iterator[Any]:
    """A ``send`` span around an insert; writes its context into each job's meta.

    Yields the span (None when tracing is off) for ``sent`` to name the ids.
    """
    if not prepared or not enabled():
        yield None
        return
    from opentelemetry.trace import SpanKind

    queues = sorted({job.queue for job in prepared})
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": ",".join(queues),
    }
    if len(prepared) > 1:
        attributes["messaging.batch.message_count"] = len(prepared)
    else:
        attributes["django_durable_jobs.job.name"] = prepared[0].name
    name = f"send {queues[0]}" if len(queues) == 1 else "send"
    with _tracer().start_as_current_span(
        name, kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier = _carrier()
        if carrier:
            for job in prepared:
                job.meta_json = _with_carrier(job.meta_json, carrier)
        yield span


def sent(span: Any, ids: list[int]) -> None:
    """Name the inserted job's id on its ``send`` span (a single job)."""
    if span is not None and len(ids) == 1:
        span.set_attribute("messaging.message.id", str(ids[0]))


@contextlib.contextmanager
def resumed(job: ClaimedJob) -> Iterator[None]:
    """Make ``job``'s trace current (for the follow-ups written after its attempt)."""
    carrier = job.meta_dict.get(TRACE) if enabled() else None
    if not isinstance(carrier, dict):
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def processing(job: ClaimedJob) -> Iterator[Any]:
    """A ``process`` span around one attempt, a child of the span that enqueued the job."""
    if not enabled():
        yield None
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    carrier = job.meta_dict.get(TRACE)
    parent = extract(carrier) if isinstance(carrier, dict) else None
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "django_durable_jobs.job.name": job.name,
        "django_durable_jobs.job.attempt": job.attempt,
    }
    with _tracer().start_as_current_span(
        f"process {job.queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def ended(span: Any, outcome: Any) -> None:
    """Put the attempt's ending on its span: the outcome, and an error status with the exception."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("django_durable_jobs.job.outcome", outcome.kind)
    if outcome.kind != "success" and outcome.error is not None:
        if outcome.cause is not None:
            span.record_exception(outcome.cause)
        span.set_status(Status(StatusCode.ERROR, str(outcome.error.get("message", ""))[:200]))


def trace_id(job: ClaimedJob) -> str | None:
    """The job's trace id (32 hex digits) from its stored context, for log lines."""
    carrier = job.meta_dict.get(TRACE)
    parent = carrier.get("traceparent") if isinstance(carrier, dict) else None
    if isinstance(parent, str) and parent.count("-") == 3:
        return parent.split("-")[1]
    return None
