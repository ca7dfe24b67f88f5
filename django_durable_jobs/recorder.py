"""Writing outcomes: fenced, retried through database outages, never silently lost."""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid

from django.db import DatabaseError

from . import followups
from .connections import (
    close_connection,
    is_database_unavailable,
    is_retryable_conflict,
    tidy_connections,
)
from .constants import AttemptOutcome, JobStatus
from .db import Backend, Outcome
from .failures import history_entry
from .logutil import RateLimitedLog

logger = logging.getLogger("django_durable_jobs.worker")


class Backoff:
    """Exponential delays for retry loops: ``first`` seconds doubling up to ``cap``."""

    def __init__(self, first: float = 0.5, cap: float = 15.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


class Recorder:
    """Records outcomes for one worker; ``give_up`` (a forced stop) ends its retries.

    A write that fails because the database is unreachable or read-only is
    retried with backoff until it succeeds; the lease fencing in the SQL makes
    a late write harmless. A write that fails for another reason (a bug, a
    value the database rejects) is replaced once by a FAILED outcome saying so.
    """

    def __init__(
        self, backend: Backend, worker_id: uuid.UUID, give_up: threading.Event, log: RateLimitedLog
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.give_up = give_up
        self.log = log

    def record(self, outcomes: list[Outcome]) -> set[int]:
        """Write ``outcomes``; return the ids written (the others had lost their lease)."""
        backoff = Backoff()
        while True:
            try:
                tidy_connections()
                written = followups.write(self.backend, outcomes)
            except DatabaseError as exc:
                if is_retryable_conflict(exc):
                    logger.info(
                        "recording %s outcome(s) lost a race (%s); retrying", len(outcomes), exc
                    )
                    self.give_up.wait(0.01)
                    continue
                if is_database_unavailable(exc):
                    self.log.log(
                        logging.WARNING,
                        "record",
                        "database unavailable while recording %s outcome(s) (%s); retrying",
                        len(outcomes),
                        str(exc).strip()[:300],
                    )
                    close_connection(self.backend.alias)
                    if self.give_up.wait(backoff.next()):
                        logger.warning(
                            "stopping with %s outcome(s) unrecorded: job(s) %s run again when "
                            "their leases expire",
                            len(outcomes),
                            ", ".join(f"#{outcome.job.id}" for outcome in outcomes),
                        )
                        return set()
                    continue
                logger.exception("recording %s outcome(s) failed", len(outcomes))
                close_connection(self.backend.alias)
                if all(outcome.error and outcome.result_json is None for outcome in outcomes):
                    return set()  # even plain failures cannot be written: leave it to the lease
                outcomes = [self._unstorable(outcome) for outcome in outcomes]
                continue
            self.log.recovered("record", "database reachable again: outcomes recorded")
            for outcome in outcomes:
                if outcome.job.id not in written:
                    logger.warning(
                        "job #%s %s: late report ignored (its lease was taken over: released, "
                        "rescued or cancelled)",
                        outcome.job.id,
                        outcome.job.name,
                    )
            return written

    def _unstorable(self, outcome: Outcome) -> Outcome:
        return dataclasses.replace(
            outcome,
            status=JobStatus.FAILED,
            result_json=None,
            error=history_entry(
                attempt=outcome.job.attempt,
                outcome=AttemptOutcome.ERROR,
                message="the outcome of this attempt could not be stored (see the worker log)",
                worker_id=self.worker_id,
            ),
        )


def log_outcome(outcome: Outcome, seconds: float) -> None:
    """One line per finished attempt, with the job's id, name, queue and attempt.

    Successes are logged at DEBUG (``runworker --log-level DEBUG`` shows them):
    at thousands of jobs a second a line each is noise and a fifth of the
    worker's CPU. Retries, failures and interruptions are WARNING or ERROR.
    """
    job = outcome.job
    if outcome.status == JobStatus.SUCCESSFUL:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job #%s %s [queue %s, attempt %s/%s] succeeded in %.3fs",
                job.id,
                job.name,
                job.queue,
                job.attempt,
                job.max_attempts,
                seconds,
            )
        return
    where = (
        f"job #{job.id} {job.name} [queue {job.queue}, attempt {job.attempt}/{job.max_attempts}]"
    )
    message = (outcome.error or {}).get("message", "")[:500]
    if outcome.status == JobStatus.READY and outcome.uncount:
        logger.warning("%s interrupted after %.3fs, will run again: %s", where, seconds, message)
    elif outcome.status == JobStatus.READY:
        logger.warning(
            "%s failed after %.3fs, retrying in %.1fs: %s",
            where,
            seconds,
            outcome.retry_delay,
            message,
        )
    else:
        logger.error("%s ended %s after %.3fs: %s", where, outcome.status, seconds, message)
