import pytest

from django_durable_jobs.constants import JobStatus
from django_durable_jobs.models import Job
from tests.testapp.jobs import add


@pytest.mark.django_db(transaction=True)
def test_burst_worker_runs_a_job(start_worker):
    handle = add.enqueue(2, 3)
    worker = start_worker("--burst")
    assert worker.wait() == 0, worker.output()
    handle.refresh()
    assert handle.status == JobStatus.SUCCESSFUL, worker.output()
    assert handle.result == 5
    assert Job.objects.count() == 1
