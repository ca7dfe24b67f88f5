"""OpenTelemetry: a request's trace continues into its jobs, their retries and what they enqueue.

Spans are read back with the SDK's in-memory exporter; jobs run on a real
``Worker`` (its threads, claims and completer), in this process so that the
exporter sees its spans.
"""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from django_durable_jobs import JobStatus
from django_durable_jobs.logutil import JsonLogFormatter
from django_durable_jobs.models import Job
from django_durable_jobs.worker import Worker
from tests.testapp import endings, jobs
from tests.testapp.models import Counter

pytestmark = pytest.mark.django_db(transaction=True)

_EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_provider)  # once per process: OpenTelemetry allows no second
request_tracer = trace.get_tracer("tests.request")


@pytest.fixture
def spans(settings):
    settings.DURABLE_JOBS = {"OPENTELEMETRY": True}
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def run_worker() -> None:
    Worker(burst=True, install_signal_handlers=False, scheduler=False, concurrency=2).run()


def named(exporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def test_a_requests_trace_continues_into_its_job(spans):
    with request_tracer.start_as_current_span("GET /signup") as request:
        handle = jobs.add.using(queue="emails").enqueue(1, 2)
    run_worker()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    (send,) = named(spans, "send emails")
    (process,) = named(spans, "process emails")
    trace_id = request.get_span_context().trace_id
    assert send.kind == SpanKind.PRODUCER
    assert process.kind == SpanKind.CONSUMER
    assert send.parent.span_id == request.get_span_context().span_id
    assert process.parent.span_id == send.context.span_id
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert send.attributes["messaging.message.id"] == str(handle.id)
    assert process.attributes["messaging.system"] == "django_durable_jobs"
    assert process.attributes["messaging.destination.name"] == "emails"
    assert process.attributes["django_durable_jobs.job.attempt"] == 1
    assert process.attributes["django_durable_jobs.job.outcome"] == "success"
    assert Job.objects.get(id=handle.id).meta["trace"]["traceparent"].split("-")[1] == (
        format(trace_id, "032x")
    )


def test_every_retry_is_a_child_of_the_enqueue_and_failures_are_errors(spans):
    Counter.objects.create(key="t")
    handle = endings.raises.enqueue("t")  # max_attempts=2, retried at once
    run_worker()
    assert handle.refresh().status == JobStatus.FAILED
    (send,) = named(spans, "send default")
    attempts = named(spans, "process default")
    assert [span.attributes["django_durable_jobs.job.attempt"] for span in attempts] == [1, 2]
    for span in attempts:
        assert span.parent.span_id == send.context.span_id
        assert span.status.status_code == StatusCode.ERROR
        assert "broken on purpose" in span.status.description
        assert [event.name for event in span.events] == ["exception"]


def test_jobs_enqueued_by_a_job_and_its_follow_ups_stay_in_the_trace(spans):
    with request_tracer.start_as_current_span("POST /orders") as request:
        outer = jobs.enqueues_an_add.using(then=jobs.add.prepare(5, 5)).enqueue(2, 3)
    run_worker()
    assert outer.refresh().status == JobStatus.SUCCESSFUL
    trace_id = request.get_span_context().trace_id
    finished = spans.get_finished_spans()
    assert {span.context.trace_id for span in finished} == {trace_id}
    processes = named(spans, "process default")
    assert len(processes) == 3  # the outer job, the job it enqueued, its then= follow-up
    outer_process = next(
        s for s in processes if s.attributes["messaging.message.id"] == str(outer.id)
    )
    inner_id = str(outer.result)
    inner_send = next(
        s
        for s in named(spans, "send default")
        if s.attributes.get("messaging.message.id") == inner_id
    )
    assert inner_send.parent.span_id == outer_process.context.span_id


def test_the_json_log_line_of_a_traced_job_carries_its_trace_id(spans):
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("django_durable_jobs.worker")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with request_tracer.start_as_current_span("GET /") as request:
            handle = jobs.add.enqueue(1, 1)
        run_worker()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    (line,) = [json.loads(x) for x in lines if json.loads(x).get("job_id") == handle.id]
    assert line["trace_id"] == format(request.get_span_context().trace_id, "032x")


def test_off_by_default_nothing_is_traced_or_stored(settings):
    settings.DURABLE_JOBS = {}
    _EXPORTER.clear()
    with request_tracer.start_as_current_span("GET /quiet"):
        handle = jobs.add.enqueue(1, 2)
    run_worker()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    assert [span.name for span in _EXPORTER.get_finished_spans()] == ["GET /quiet"]
    assert "trace" not in Job.objects.get(id=handle.id).meta
