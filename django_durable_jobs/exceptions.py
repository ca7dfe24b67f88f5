"""Exceptions raised to users of django-durable-jobs, and the two a job may raise itself."""

from __future__ import annotations

from datetime import datetime, timedelta


class DurableJobsError(Exception):
    """Base class of every error this package raises."""


class InvalidJobDefinition(DurableJobsError, TypeError):
    """``@job`` was applied to something that cannot be a job (not a module-level function)."""


class InvalidJobOptions(DurableJobsError, ValueError):
    """A job option (priority, queue, attempts, run time...) is out of range or the wrong type."""


class InvalidJobArguments(DurableJobsError, TypeError):
    """An argument cannot be stored as JSON; the message names its path and the fix."""


class PayloadTooLarge(InvalidJobArguments):
    """The encoded arguments exceed ``DURABLE_JOBS["MAX_PAYLOAD_BYTES"]``."""


class UnknownJob(DurableJobsError, LookupError):
    """No job definition is registered under this name."""


class UnknownQueue(InvalidJobOptions):
    """The queue is not in ``DURABLE_JOBS["QUEUES"]``."""


class DuplicateJobName(InvalidJobDefinition):
    """Two different functions were registered under the same job name."""


class JobNotFinished(DurableJobsError):
    """The result of a job was asked for before the job succeeded."""


class JobFailed(DurableJobsError):
    """The job ended FAILED or CANCELLED, so it has no result."""


class Retry(Exception):
    """Raise from a job to ask for another attempt later.

    The attempt counts towards ``max_attempts``; when none is left the job ends
    FAILED. ``delay`` (seconds or timedelta) or ``at`` (aware datetime) says
    when; without either, the job's retry policy decides.
    """

    def __init__(
        self,
        reason: str = "",
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
    ) -> None:
        if delay is not None and at is not None:
            raise InvalidJobOptions("Retry() takes delay= or at=, not both.")
        super().__init__(reason or "retry requested")
        self.reason = reason
        self.delay = delay
        self.at = at


class Snooze(Exception):
    """Raise from a job to run it again in ``seconds`` without using an attempt.

    For "not yet" rather than "failed": a rate-limited API, a resource that is not
    ready. The job goes back to READY, due ``seconds`` (or a timedelta) from now;
    its attempt is given back and the snooze recorded in its history. A job
    that snoozes for ever runs for ever: bound it yourself (``current_job()``'s
    history, or a counter in your arguments).
    """

    def __init__(self, seconds: float | timedelta, reason: str = "") -> None:
        from .validation import snooze_seconds  # validation imports this module

        self.seconds = snooze_seconds(seconds)
        self.reason = reason
        super().__init__(reason or f"snoozed for {self.seconds:g}s")


class Cancel(Exception):
    """Raise from a job to end it as CANCELLED, with a reason, and no further attempts."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "cancelled by the job")
        self.reason = reason


class InvalidProgress(DurableJobsError, ValueError):
    """``set_progress()`` got a value it cannot store (negative, not a number, done > total...)."""


class JobTimeout(BaseException):
    """Raised inside a job that ran past its timeout.

    It derives from ``BaseException`` (like ``KeyboardInterrupt``) so that a
    job's ``except Exception:`` cannot swallow it. The worker has already
    recorded the timeout when it is raised; clean up and let it propagate.
    """
