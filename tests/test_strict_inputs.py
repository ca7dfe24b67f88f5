"""Bad options and arguments raise at the call site, name the problem, and write nothing."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.db import transaction

from django_durable_jobs import InvalidJobArguments, InvalidJobOptions, JobStatus
from django_durable_jobs.models import Job
from django_durable_jobs.testing import run_pending_jobs
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"delay": math.nan}, "delay="),
        ({"delay": math.inf}, "delay="),
        ({"delay": -1}, "delay="),
        ({"delay": 10**20}, "delay="),
        ({"delay": timedelta(days=10**6)}, "delay="),
        ({"timeout": math.nan}, "timeout="),
        ({"timeout": -math.inf}, "timeout="),
        ({"timeout": 0}, "timeout="),
        ({"timeout": 1e300}, "timeout="),
        ({"max_attempts": 2**40}, "max_attempts="),
        ({"max_attempts": 0}, "max_attempts="),
    ],
)
def test_out_of_range_options_raise_before_anything_is_written(options, named):
    with transaction.atomic():
        with pytest.raises(InvalidJobOptions, match=named):
            jobs.add.using(**options).enqueue(1, 2)
        # The caller's transaction is still usable (no database error was raised in it).
        assert Job.objects.count() == 0
    assert Job.objects.count() == 0


def test_deeply_nested_arguments_are_refused_clearly():
    value: list = []
    for _ in range(10_000):
        value = [value]
    with pytest.raises(InvalidJobArguments, match="nested too deeply"):
        jobs.echo.enqueue(value)
    looped: list = []
    looped.append(looped)
    with pytest.raises(InvalidJobArguments, match="nested too deeply"):
        jobs.echo.enqueue(looped)
    assert Job.objects.count() == 0


def test_arguments_are_bound_against_the_signature_at_enqueue():
    with pytest.raises(InvalidJobArguments) as info:
        jobs.add.enqueue(1, c=2)
    message = str(info.value)
    assert "tests.testapp.jobs.add(a, b)" in message
    assert "unexpected keyword argument 'c'" in message or "missing a required" in message
    with pytest.raises(InvalidJobArguments, match="too many positional"):
        jobs.add.enqueue(1, 2, 3)
    with pytest.raises(InvalidJobArguments, match="multiple values"):
        jobs.add.enqueue(1, a=2)
    with pytest.raises(InvalidJobArguments, match="missing a required argument: 'b'"):
        jobs.add.prepare(1)
    assert Job.objects.count() == 0
    # The valid shapes still go through.
    jobs.add.enqueue(1, 2)
    jobs.add.enqueue(1, b=2)
    jobs.add.enqueue(a=1, b=2)
    jobs.echo.enqueue(1, 2, 3, x=1)  # *args, **kwargs
    assert Job.objects.count() == 4


def test_steps_and_context_jobs_are_checked_without_self_or_context():
    from tests.testapp.pipelines import OrderPipeline

    with pytest.raises(InvalidJobArguments, match="reserve"):
        OrderPipeline.start()  # reserve(order_id, **options) needs order_id
    OrderPipeline.start(1, hang=0)
    with pytest.raises(InvalidJobArguments):
        jobs.with_context.enqueue(1, 2)
    assert Job.objects.count() == 1


@pytest.mark.parametrize("value", [1e16, -1e16, 1e308, -0.0, 2.0**60, 0.1, 1.5e-300, 12.0])
def test_floats_come_back_with_their_type_value_and_sign(value):
    handle = jobs.echo.enqueue(value)
    run_pending_jobs()
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    (back,) = handle.result["args"]
    assert type(back) is float
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)
