"""Receivers a worker subprocess connects when the tests ask for them (environment variables).

``DDJ_TEST_SIGNAL_LOG=<path>`` appends one JSON line per signal to that file;
``DDJ_TEST_SIGNAL_RAISE=1`` adds a receiver that raises on every signal.
"""

from __future__ import annotations

import json
import os

from django_durable_jobs import signals


def row_state(job_id: int | None) -> tuple[str | None, int | None]:
    """The job's status and attempts in the database as the signal is sent (after the write?)."""
    from django_durable_jobs.models import Job

    row = Job.objects.filter(id=job_id).values_list("status", "attempts").first()
    return row or (None, None)


def _log(signal_name: str):
    def receiver(sender, **kwargs):
        context = kwargs.get("context")
        job_id = context.job_id if context else kwargs["handle"].id
        line = {
            "signal": signal_name,
            "sender": getattr(sender, "name", None),
            "job_id": job_id,
            "row": row_state(job_id) if context else None,
            "attempt": context.attempt if context else None,
            "status": kwargs.get("status"),
            "outcome": kwargs.get("outcome"),
            "duration": kwargs.get("duration"),
            "pid": os.getpid(),
        }
        with open(os.environ["DDJ_TEST_SIGNAL_LOG"], "a") as log:
            log.write(json.dumps(line) + "\n")

    return receiver


def _raise(sender, **kwargs):
    raise RuntimeError("receiver bug")


_RECEIVERS = {name: _log(name) for name in ("job_started", "job_finished", "job_retrying")}


def connect() -> None:
    if os.environ.get("DDJ_TEST_SIGNAL_RAISE"):
        for name in ("job_started", "job_finished", "job_retrying"):
            getattr(signals, name).connect(_raise, dispatch_uid=f"raise-{name}")
    if os.environ.get("DDJ_TEST_SIGNAL_LOG"):
        for name, receiver in _RECEIVERS.items():
            getattr(signals, name).connect(receiver, dispatch_uid=f"log-{name}")
