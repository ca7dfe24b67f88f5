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
  failed (or raised ``Retry``), or was interrupted (``outcome="interrupted"``:
  shutdown, a database outage), and another one runs after ``delay`` seconds.

Both end signals are sent after the outcome is written, and only if it was
(a worker whose lease was taken over sends nothing). Each attempt that starts
ends in exactly one of them, unless its worker process dies (then nothing
is sent: the rescue happens elsewhere). Receivers run in the thread that ran
the job (a timed-out job's: the watchdog's), after the attempt; for an
attempt that raised, the exception is current (``sys.exc_info()``). A
receiver that raises is logged (logger ``django_durable_jobs.signals``) and
ignored: it never fails the job, changes its outcome or stops the worker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.dispatch import Signal

from .constants import JobStatus

if TYPE_CHECKING:
    from .context import JobContext
    from .handle import JobHandle
    from .rows import Outcome

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


def ended_listened(outcome: Outcome) -> bool:
    """Is a receiver connected for the end signal this outcome will send?

    Asked for every job: with no receiver at all (the usual case) it reads two
    attributes and looks nothing up.
    """
    if not (job_finished.receivers or job_retrying.receivers):
        return False
    signal = job_finished if outcome.is_final else job_retrying
    return listened(signal, _definition(outcome.job.name))


def send_ended(outcome: Outcome) -> None:
    """``job_finished`` or ``job_retrying`` for a written outcome of an attempt that started.

    Sent after the outcome's write. For an attempt that raised, the exception
    is re-raised around the send, so receivers (Django's ``task_finished``
    logging among them) find it in ``sys.exc_info()``.
    """
    definition = _definition(outcome.job.name)
    signal = job_finished if outcome.is_final else job_retrying
    if not listened(signal, definition):
        return
    cause = outcome.cause
    if cause is None:
        _send_ended(signal, definition, outcome)
        return
    try:
        raise cause
    except BaseException:
        _send_ended(signal, definition, outcome)


def _send_ended(signal: Signal, definition: Any, outcome: Outcome) -> None:
    duration = outcome.duration or 0.0
    if signal is job_retrying:
        _send(
            job_retrying,
            "job_retrying",
            definition,
            context=outcome.context,
            outcome=outcome.kind,
            duration=duration,
            error=outcome.error,
            delay=outcome.retry_delay,
        )
    else:
        _send(
            job_finished,
            "job_finished",
            definition,
            context=outcome.context,
            status=JobStatus(outcome.status),
            outcome=outcome.kind,
            duration=duration,
            error=outcome.error,
            result_json=outcome.result_json,
        )
