"""Every way an attempt can end, in every place a job can run, on every database.

Each ending (``worker/outcomes.py``) runs on a real worker subprocess, through
``testing.run_pending_jobs()`` and in immediate mode; each run checks the job's
final status, its attempts, its history, its database effects, what followed it,
and the signals: their order, and that each end signal came after its write
(the receiver reads the row and finds the outcome already there). The endings
that only a worker process has (shutdown, outage, a lost worker, jobs released
unstarted) are in ``test_crashes.py`` and ``tests/test_faults.py``.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from django_durable_jobs import JobStatus, signals
from django_durable_jobs.enqueue import enqueue_prepared
from django_durable_jobs.models import Job
from django_durable_jobs.rows import PreparedJob
from django_durable_jobs.testing import immediate_mode, run_pending_jobs
from tests.conftest import wait_for
from tests.testapp import endings
from tests.testapp.models import Counter
from tests.testapp.signal_log import row_state

pytestmark = pytest.mark.django_db(transaction=True)

MODES = ["worker", "run_pending_jobs", "immediate"]


def _raw(name: str, *, max_attempts: int, args_json: str = "[]") -> PreparedJob:
    """A job row for a name or payload that ``prepare()`` would refuse."""
    return PreparedJob(
        name=name,
        queue="default",
        priority=0,
        args_json=args_json,
        kwargs_json="{}",
        max_attempts=max_attempts,
        timeout=None,
    )


@dataclasses.dataclass(frozen=True)
class Ending:
    name: str
    prepare: Callable[[str], PreparedJob]
    status: str
    history: list[str]
    #: ``started``, ``retrying``, ``finished``, in order.
    signals: list[str]
    #: The job's committed database effects (its Counter), None: it never ran.
    bumps: int | None = None
    exception_class: str | None = None
    message: str | None = None
    follow_ups: int = 0

    @property
    def attempts(self) -> int:
        return self.signals.count("started")


ENDINGS = [
    Ending(
        "succeeded, then its follow-up",
        lambda key: endings.succeeds.using(then=endings.follow_up.prepare(key)).prepare(key),
        JobStatus.SUCCESSFUL,
        history=[],
        signals=["started", "finished"],
        bumps=2,
        follow_ups=1,
    ),
    Ending(
        "raised, retried, failed",
        endings.raises.prepare,
        JobStatus.FAILED,
        history=["error", "error"],
        signals=["started", "retrying", "started", "finished"],
        bumps=2,
        exception_class="builtins.ValueError",
        message="broken on purpose",
    ),
    Ending(
        "asked for a retry",
        endings.asks_for_a_retry.prepare,
        JobStatus.SUCCESSFUL,
        history=["retry"],
        signals=["started", "retrying", "started", "finished"],
        bumps=2,
    ),
    Ending(
        "cancelled itself",
        endings.cancels_itself.prepare,
        JobStatus.CANCELLED,
        history=["cancelled"],
        signals=["started", "finished"],
        bumps=1,
        message="no longer needed",
    ),
    Ending(
        "timed out",
        endings.times_out.prepare,
        JobStatus.FAILED,
        history=["timeout"],
        signals=["started", "finished"],
        bumps=1,
        exception_class="django_durable_jobs.exceptions.JobTimeout",
        message="timed out after 0.5s",
    ),
    Ending(
        "returned what cannot be stored",
        endings.returns_the_unstorable.prepare,
        JobStatus.FAILED,
        history=["unstorable_result"],
        signals=["started", "finished"],
        bumps=1,
        exception_class="builtins.TypeError",
        message="cannot be stored",
    ),
    Ending(
        "left an atomic block open",
        endings.leaves_atomic_open.prepare,
        JobStatus.FAILED,
        history=["left_transaction_open"],
        signals=["started", "finished"],
        bumps=0,
        message="left a transaction open on the database 'default'",
    ),
    Ending(
        "left a raw BEGIN open",
        endings.leaves_begin_open.prepare,
        JobStatus.FAILED,
        history=["left_transaction_open"],
        signals=["started", "finished"],
        bumps=0,
        message="left a transaction open on the database 'default'",
    ),
    Ending(
        "its module's dependency is missing",
        lambda key: _raw("tests.testapp.broken.missing_dependency.run", max_attempts=2),
        JobStatus.FAILED,
        history=["import_error", "import_error"],
        signals=["started", "retrying", "started", "finished"],
        exception_class="builtins.ModuleNotFoundError",
        message="No module named 'a_dependency_that_is_not_installed'",
    ),
    Ending(
        "its module raises at import",
        lambda key: _raw("tests.testapp.broken.raises_at_import.run", max_attempts=2),
        JobStatus.FAILED,
        history=["definition_error", "definition_error"],
        signals=["started", "retrying", "started", "finished"],
        exception_class="builtins.RuntimeError",
        message="this module is broken at import",
    ),
    Ending(
        "no job has its name",
        lambda key: _raw("tests.testapp.endings.no_such_job", max_attempts=2),
        JobStatus.FAILED,
        history=["unknown_job"],
        signals=["started", "finished"],
        message="unknown job 'tests.testapp.endings.no_such_job'",
    ),
    Ending(
        "its arguments cannot be decoded",
        lambda key: _raw(
            endings.succeeds.name, max_attempts=2, args_json='[{"__ddj__": "nonsense", "v": 1}]'
        ),
        JobStatus.FAILED,
        history=["decode_error"],
        signals=["started", "finished"],
        bumps=0,
        message="could not be decoded",
    ),
]


@pytest.fixture
def received():
    """The end signals sent in this process, with the job's row status as each was sent."""
    events: list[dict] = []
    receivers = {}
    for name in ("job_started", "job_retrying", "job_finished"):

        def receiver(sender, _name=name, **kwargs):
            job_id = kwargs["context"].job_id
            events.append({**kwargs, "signal": _name, "job_id": job_id, "row": row_state(job_id)})

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield events
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def _run(mode: str, prepared: PreparedJob, start_worker, tmp_path: Path, received) -> list[dict]:
    """Run the job to its end in ``mode``; the signals of its attempts, in order."""
    if mode == "immediate":
        with immediate_mode():
            (handle,) = enqueue_prepared([prepared])
        return [event for event in received if event["job_id"] == handle.id]
    (handle,) = enqueue_prepared([prepared])
    if mode == "run_pending_jobs":
        run_pending_jobs(with_scheduled=True)
        return [event for event in received if event["job_id"] == handle.id]
    log = tmp_path / "signals.jsonl"
    worker = start_worker(env={"DDJ_TEST_SIGNAL_LOG": str(log)})
    finished = JobStatus.finished()
    wait_for(lambda: not Job.objects.exclude(status__in=finished).exists(), timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [line for line in lines if line["job_id"] == handle.id]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ending", ENDINGS, ids=[ending.name for ending in ENDINGS])
def test_every_ending_everywhere(ending: Ending, mode: str, start_worker, tmp_path, received):
    key = f"ending-{mode}"
    Counter.objects.create(key=key)
    events = _run(mode, ending.prepare(key), start_worker, tmp_path, received)

    job = Job.objects.exclude(parent_id__isnull=False).get()
    assert job.status == ending.status, job.errors
    assert job.attempts == ending.attempts
    assert [entry["outcome"] for entry in job.errors] == ending.history
    assert job.lease_expires_at is None
    assert job.finished_at is not None
    assert [entry["attempt"] for entry in job.errors] == list(range(1, len(ending.history) + 1))
    if ending.history:
        last = job.errors[-1]
        if ending.exception_class:
            assert last["exception_class"] == ending.exception_class
        if ending.message:
            assert ending.message in last["message"]
    if ending.bumps is not None:
        assert Counter.objects.get(key=key).value == ending.bumps
    follow_ups = Job.objects.filter(parent_id=job.id)
    assert [row.status for row in follow_ups] == [JobStatus.SUCCESSFUL] * ending.follow_ups

    # The signals: in order, and each end signal after its outcome was written.
    assert [event["signal"].removeprefix("job_") for event in events] == ending.signals
    for event in events:
        kind, (status, attempts) = event["signal"], event["row"]
        attempt = event["attempt"] if mode == "worker" else event["context"].attempt
        if kind == "job_started":
            assert (status, attempts) == (JobStatus.RUNNING, attempt)
        elif kind == "job_retrying":
            # Written: READY, or already claimed again for the next attempt.
            assert (status, attempts) != (JobStatus.RUNNING, attempt)
            assert attempts >= attempt
        else:
            assert (status, attempts) == (ending.status, attempt)
            assert event["status"] == ending.status
    assert not Job.objects.filter(status=JobStatus.RUNNING).exists()
