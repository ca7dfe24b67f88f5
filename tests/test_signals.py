"""job_enqueued, job_started, job_finished, job_retrying: payloads, pairing, robustness."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from django_durable_jobs import JobStatus, signals
from django_durable_jobs.testing import run_pending_jobs
from tests.conftest import wait_for
from tests.testapp import jobs
from tests.testapp.models import Counter


@pytest.fixture
def received():
    events: list[tuple[str, object, dict]] = []
    receivers = {}
    for name in ("job_enqueued", "job_started", "job_finished", "job_retrying"):

        def receiver(sender, _name=name, **kwargs):
            events.append((_name, sender, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield events
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


@pytest.mark.django_db
def test_enqueued_carries_the_handle_queue_and_definition(received):
    handle = jobs.add.using(queue="math").enqueue(1, 2)
    ((name, sender, kwargs),) = received
    assert name == "job_enqueued"
    assert sender is jobs.add
    assert kwargs["handle"] is handle
    assert kwargs["handle"].id is not None
    assert kwargs["queue"] == "math"


@pytest.mark.django_db
def test_a_receiver_can_listen_to_one_job(received):
    seen = []

    def only_add(sender, handle, **kwargs):
        seen.append(handle.name)

    signals.job_enqueued.connect(only_add, sender=jobs.add)
    try:
        jobs.add.enqueue(1, 2)
        jobs.noop.enqueue()
    finally:
        signals.job_enqueued.disconnect(only_add, sender=jobs.add)
    assert seen == ["tests.testapp.jobs.add"]


@pytest.mark.django_db
def test_a_receiver_for_one_job_fires_with_no_other_receiver_connected():
    # The sender-specific receiver is the only one: "are there listeners?" must count it.
    seen = []

    def only_add(sender, **kwargs):
        seen.append((kwargs["signal"], sender))

    names = ("job_enqueued", "job_started", "job_finished", "job_retrying")
    for name in names:
        getattr(signals, name).connect(only_add, sender=jobs.add)
        getattr(signals, name).connect(only_add, sender=jobs.flaky)
    try:
        jobs.add.enqueue(1, 2)
        jobs.noop.enqueue()
        run_pending_jobs()
    finally:
        for name in names:
            getattr(signals, name).disconnect(only_add, sender=jobs.add)
            getattr(signals, name).disconnect(only_add, sender=jobs.flaky)
    assert seen == [
        (signals.job_enqueued, jobs.add),
        (signals.job_started, jobs.add),
        (signals.job_finished, jobs.add),
    ]


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_enqueued_waits_for_the_insert_when_it_is_deferred(received, settings):
    # A transaction open on another alias: the insert (and the signal) wait for its commit.
    with transaction.atomic(using="other"):
        handle = jobs.add.enqueue(1, 2)
        assert received == []
    assert [event[0] for event in received] == ["job_enqueued"]
    assert received[0][2]["handle"].id == handle.id is not None


@pytest.mark.django_db
def test_success_sends_started_then_finished_with_outcome_and_duration(received):
    handle = jobs.add.enqueue(2, 3)
    run_pending_jobs()
    names = [event[0] for event in received]
    assert names == ["job_enqueued", "job_started", "job_finished"]
    started, finished = received[1][2], received[2][2]
    assert started["context"].job_id == handle.id
    assert started["context"].attempt == 1
    assert finished["status"] == JobStatus.SUCCESSFUL
    assert finished["outcome"] == "success"
    assert finished["duration"] >= 0
    assert finished["error"] is None
    assert json.loads(finished["result_json"]) == 5
    assert received[2][1] is jobs.add


@pytest.mark.django_db
def test_each_attempt_ends_in_exactly_one_of_retrying_or_finished(received):
    jobs.always_fails.enqueue("boom")
    run_pending_jobs(with_scheduled=True)
    names = [event[0] for event in received if event[0] != "job_enqueued"]
    assert names == [
        "job_started",
        "job_retrying",
        "job_started",
        "job_retrying",
        "job_started",
        "job_finished",
    ]
    retry = received[2][2]
    assert retry["outcome"] == "error"
    assert retry["error"]["message"] == "boom"
    assert retry["delay"] == pytest.approx(0.2)
    final = received[-1][2]
    assert final["status"] == JobStatus.FAILED
    assert final["context"].attempt == 3


@pytest.mark.django_db
def test_cancel_and_unknown_jobs_finish_too(received):
    from datetime import timedelta

    from django.utils import timezone

    from django_durable_jobs.models import Job

    jobs.cancels_itself.enqueue("stop")
    # run_at in the past: PostgreSQL's now() is the test transaction's start.
    ghost = Job.objects.create(name="gone.long.ago", run_at=timezone.now() - timedelta(hours=1))
    run_pending_jobs()
    finished = {
        event[2]["context"].job_id: event for event in received if event[0] == "job_finished"
    }
    assert finished[ghost.id][1] is None  # no definition: sender None
    assert finished[ghost.id][2]["outcome"] == "unknown_job"
    (cancel,) = [event for job_id, event in finished.items() if job_id != ghost.id]
    assert cancel[2]["status"] == JobStatus.CANCELLED
    assert cancel[2]["outcome"] == "cancelled"


@pytest.mark.django_db
def test_a_raising_receiver_is_logged_and_loses_nothing(caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    for signal in (signals.job_enqueued, signals.job_started, signals.job_finished):
        signal.connect(broken)
    try:
        handle = jobs.add.enqueue(1, 1)
        run_pending_jobs()
    finally:
        for signal in (signals.job_enqueued, signals.job_started, signals.job_finished):
            signal.disconnect(broken)
    assert handle.refresh().status == JobStatus.SUCCESSFUL
    assert handle.result == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "django_durable_jobs.signals"]
    assert len(messages) == 3
    assert all("raised; ignored" in message for message in messages)


@pytest.mark.django_db(transaction=True)
def test_worker_sends_signals_and_survives_a_raising_receiver(start_worker, tmp_path, monkeypatch):
    log = tmp_path / "signals.jsonl"
    monkeypatch.setenv("DDJ_TEST_SIGNAL_LOG", str(log))
    monkeypatch.setenv("DDJ_TEST_SIGNAL_RAISE", "1")
    Counter.objects.create(key="flaky")
    ok = jobs.add.enqueue(1, 2)
    flaky = jobs.flaky.enqueue(1, "flaky")
    worker = start_worker()
    wait_for(lambda: flaky.refresh().status == JobStatus.SUCCESSFUL, timeout=30)
    wait_for(lambda: ok.refresh().status == JobStatus.SUCCESSFUL, timeout=30)
    worker.signal(15)
    assert worker.wait() == 0
    assert "raised; ignored" in worker.output()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_job = {}
    for line in lines:
        by_job.setdefault(line["job_id"], []).append((line["signal"], line["attempt"]))
    assert by_job[ok.id] == [("job_started", 1), ("job_finished", 1)]
    assert by_job[flaky.id] == [
        ("job_started", 1),
        ("job_retrying", 1),
        ("job_started", 2),
        ("job_finished", 2),
    ]
    finished = [line for line in lines if line["signal"] == "job_finished"]
    assert {line["status"] for line in finished} == {"SUCCESSFUL"}
    assert all(line["duration"] >= 0 and line["sender"] for line in finished)
