"""Signals sent as jobs are enqueued and run, and the helpers that send them safely.

Every signal's ``sender`` is the job's ``JobDefinition`` (None when the job names
a function that is not registered), so a receiver can listen to one job:
``@receiver(job_finished, sender=send_receipt)``.

* ``job_enqueued(sender, handle, queue)``: a job row was written. Inside a
  transaction this is before the commit: a receiver whose effect must wait for
  the commit uses ``transaction.on_commit``.
* ``job_started(sender, context)``: an attempt starts; ``context`` is its
  ``JobContext`` (id, name, queue, attempt, worker).
* ``job_finished(sender, context, status, outcome, duration, error, result_json)``:
  the job reached a final status (SUCCESSFUL, FAILED or CANCELLED) at the end of
  this attempt. ``outcome`` is ``"success"`` or why the attempt ended (an
  ``AttemptOutcome`` value); ``duration`` is the attempt's seconds.
* ``job_retrying(sender, context, outcome, duration, error, delay)``: the attempt
  failed (or raised ``Retry``) and another one runs after ``delay`` seconds.

Each attempt that starts ends in exactly one of ``job_finished`` and
``job_retrying``. Receivers run in the worker's executor thread, inside the
attempt's time. A receiver that raises is logged (logger
``django_durable_jobs.signals``) and ignored: it never fails the job, loses its
outcome or stops the worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

from .constants import JobStatus

if TYPE_CHECKING:
    from .context import JobContext
    from .db import Outcome
    from .handle import JobHandle

logger = logging.getLogger("django_durable_jobs.signals")

job_enqueued = Signal()
job_started = Signal()
job_finished = Signal()
job_retrying = Signal()

#: ``job_finished``'s ``outcome`` for an attempt that returned normally.
SUCCESS = "success"


def listened(signal: Signal, sender: Any = None) -> bool:
    """Is a receiver connected for ``sender``, or for every sender?

    Reading ``signal.receivers`` first makes the usual case (nothing connected)
    nearly free per job. ``has_listeners()`` without the sender would miss a
    receiver connected for one job only (``sender=send_receipt``).
    """
    return bool(signal.receivers) and signal.has_listeners(sender)


def _definition(name: str) -> Any:
    from .registry import find

    return find(name)


def _send(signal: Signal, name: str, sender: Any, **kwargs: Any) -> None:
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "%s receiver %r raised; ignored",
                name,
                receiver,
                exc_info=(type(result), result, result.__traceback__),
            )


def send_enqueued(handles: list[JobHandle[Any]], queues: list[str]) -> None:
    """``job_enqueued`` for rows just written (one signal per job)."""
    if not job_enqueued.receivers:
        return  # each send below skips the handles whose job has no receiver
    for handle, queue in zip(handles, queues, strict=True):
        _send(job_enqueued, "job_enqueued", _definition(handle.name), handle=handle, queue=queue)


def send_started(context: JobContext, definition: Any) -> None:
    if listened(job_started, definition):
        _send(job_started, "job_started", definition, context=context)


def send_ended(context: JobContext, definition: Any, outcome: Outcome, duration: float) -> None:
    """``job_finished`` or ``job_retrying``, whichever the attempt's outcome is."""
    error = outcome.error
    kind = SUCCESS
    if outcome.status != JobStatus.SUCCESSFUL and error:
        kind = error.get("outcome", SUCCESS)
    if outcome.status == JobStatus.READY:
        if outcome.uncount or not listened(job_retrying, definition):
            return  # released at shutdown: not an attempt that ended
        _send(
            job_retrying,
            "job_retrying",
            definition,
            context=context,
            outcome=kind,
            duration=duration,
            error=error,
            delay=outcome.retry_delay,
        )
    elif listened(job_finished, definition):
        _send(
            job_finished,
            "job_finished",
            definition,
            context=context,
            status=JobStatus(outcome.status),
            outcome=kind,
            duration=duration,
            error=error,
            result_json=outcome.result_json,
        )
