"""JobContextFilter: log records made inside a job carry its id, name, queue and attempt."""

from __future__ import annotations

import logging

import pytest

from django_durable_jobs.logutil import JobContextFilter
from django_durable_jobs.testing import run_pending_jobs
from tests.testapp import jobs


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(JobContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.django_db
def test_records_inside_a_job_carry_its_context():
    handler = Collect()
    logger = logging.getLogger("tests.testapp.jobs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        handle = jobs.logs_a_line.using(queue="chatty").enqueue("hello")
        run_pending_jobs()
        logger.info("outside any job")
    finally:
        logger.removeHandler(handler)
    inside, outside = handler.records
    assert inside.getMessage() == "hello"
    assert (inside.job_id, inside.job_name, inside.job_queue, inside.job_attempt) == (
        handle.id,
        "tests.testapp.jobs.logs_a_line",
        "chatty",
        1,
    )
    assert (outside.job_id, outside.job_name, outside.job_queue, outside.job_attempt) == (
        "-",
        "-",
        "-",
        "-",
    )
    formatted = logging.Formatter("%(job_name)s#%(job_id)s a%(job_attempt)s: %(message)s")
    assert formatted.format(inside) == f"tests.testapp.jobs.logs_a_line#{handle.id} a1: hello"
