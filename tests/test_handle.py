"""The handle returned by enqueue: status, result, errors, wait()."""

from __future__ import annotations

import pytest

from django_durable_jobs import JobFailed, JobNotFinished, JobStatus
from django_durable_jobs.models import Job
from tests.testapp.jobs import add

pytestmark = pytest.mark.django_db


def test_fresh_handle_is_ready_and_has_no_result():
    handle = add.enqueue(1, 2)
    assert handle.status == JobStatus.READY
    assert not handle.is_finished
    with pytest.raises(JobNotFinished, match="READY"):
        _ = handle.result
    assert repr(handle) == f"<JobHandle #{handle.id} tests.testapp.jobs.add>"


def test_failed_job_result_raises_with_its_last_error():
    handle = add.enqueue(1, 2)
    Job.objects.filter(id=handle.id).update(
        status=JobStatus.FAILED, errors=[{"message": "it broke"}]
    )
    with pytest.raises(JobFailed, match="it broke"):
        _ = handle.refresh().result


def test_wait_times_out_with_the_status():
    handle = add.enqueue(1, 2)
    with pytest.raises(TimeoutError, match="still READY"):
        handle.wait(timeout=0.1)


def test_successful_result_is_decoded():
    handle = add.enqueue(1, 2)
    Job.objects.filter(id=handle.id).update(
        status=JobStatus.SUCCESSFUL, result={"__ddj__": "tuple", "v": [1, 2]}
    )
    assert handle.refresh().wait().result == (1, 2)
