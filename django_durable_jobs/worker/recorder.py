"""The one writer of outcomes: fenced, with what follows them, then the signals.

Every ending goes through ``Recorder``, whoever ran the job (a worker's pool
or watchdog, immediate mode, ``testing.run_pending_jobs()``):

1. the outcome's follow-ups are worked out (``outcomes.with_what_follows``), and
   the attempt's last progress not written yet is written (fenced) first;
2. in one transaction: the fenced update of each job row (only if its lease
   token still holds), the follow-up jobs of the rows written (the next step,
   chained jobs) and the release of their group callbacks;
3. after the commit, ``announce`` sends ``job_finished`` / ``job_retrying``
   for the rows that were written, and for nothing else: a receiver never sees
   an ending that a stale worker's late report would have claimed.

A write that fails because the database is unreachable or read-only is
retried with backoff until it succeeds (``record``); the fencing makes a late
write harmless.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections import Counter

from django.db import DatabaseError, connections, transaction

from .. import progress, signals, tracing
from ..connections import (
    Backoff,
    close_connection,
    is_database_unavailable,
    is_retryable_conflict,
    tidy_connections,
)
from ..constants import AttemptOutcome, JobStatus
from ..db import Backend
from ..failures import history_entry
from ..logutil import RateLimitedLog
from ..rows import Outcome
from .outcomes import with_what_follows

logger = logging.getLogger("django_durable_jobs.worker")


@dataclasses.dataclass
class Written:
    """What a write changed: the job ids recorded, and the jobs it made ready to run."""

    ids: set[int] = dataclasses.field(default_factory=set)
    #: Follow-up jobs inserted and group callbacks released (immediate mode runs them).
    made_ready: list[int] = dataclasses.field(default_factory=list)


class Recorder:
    """Writes outcomes for one worker, or for a process running jobs inline.

    ``give_up`` (a forced stop) ends ``record``'s retries; ``log`` rate-limits
    its outage warnings.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        worker_id: uuid.UUID | None = None,
        give_up: threading.Event | None = None,
        log: RateLimitedLog | None = None,
    ) -> None:
        self.backend = backend
        self.worker_id = worker_id
        self.give_up = give_up or threading.Event()
        self.log = log or RateLimitedLog(logger)

    # -- writing ---------------------------------------------------------------
    def write(self, outcomes: list[Outcome]) -> Written:
        """One fenced write of ``outcomes`` and what follows them; joins an open transaction.

        No retry: an atomic job calls this inside its own transaction, where any
        error must roll the job's body back too.
        """
        outcomes = [with_what_follows(outcome) for outcome in outcomes]
        return self._write(outcomes)

    def _write(self, outcomes: list[Outcome]) -> Written:
        progress.flush(self.backend, outcomes)  # the attempts' last progress, fenced, first
        if not any(outcome.follow_ups or outcome.releases for outcome in outcomes):
            return Written(self.backend.record(outcomes))
        from ..enqueue import insert_now  # enqueue imports definitions, which import us

        alias = self.backend.alias
        in_transaction = connections[alias].in_atomic_block
        with transaction.atomic(using=alias, savepoint=not in_transaction):
            written = Written(self.backend.record(outcomes))
            followed = [o for o in outcomes if o.job.id in written.ids and o.follow_ups]
            if followed and tracing.enabled():
                for outcome in followed:  # each in its job's trace
                    with tracing.resumed(outcome.job):
                        written.made_ready += insert_now(outcome.follow_ups, alias)
            elif followed:
                follow_ups = [follow for outcome in followed for follow in outcome.follow_ups]
                written.made_ready += insert_now(follow_ups, alias)
            releases = Counter(
                callback
                for outcome in outcomes
                if outcome.job.id in written.ids and outcome.is_final
                for callback in outcome.releases
            )
            if releases:
                written.made_ready += self.backend.release_waiting(dict(releases))
        return written

    def record(self, outcomes: list[Outcome]) -> Written:
        """Write ``outcomes`` (see ``write``), retrying through outages and lost races.

        A write that fails for another reason (a bug, a value the database
        rejects) is replaced once by FAILED outcomes saying so.
        """
        outcomes = [with_what_follows(outcome) for outcome in outcomes]
        backoff = Backoff()
        while True:
            try:
                tidy_connections()
                written = self._write(outcomes)
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
                        return Written()
                    continue
                logger.exception("recording %s outcome(s) failed", len(outcomes))
                close_connection(self.backend.alias)
                if all(outcome.error and outcome.result_json is None for outcome in outcomes):
                    return Written()  # even plain failures cannot be written: leave it to the lease
                outcomes = [self._unstorable(outcome) for outcome in outcomes]
                continue
            self.log.recovered("record", "database reachable again: outcomes recorded")
            for outcome in outcomes:
                if outcome.job.id not in written.ids:
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
            follow_ups=[],
            error=history_entry(
                attempt=outcome.job.attempt,
                outcome=AttemptOutcome.ERROR,
                message="the outcome of this attempt could not be stored (see the worker log)",
                worker_id=self.worker_id,
            ),
        )

    # -- after the write -------------------------------------------------------------
    @staticmethod
    def announce(outcomes: list[Outcome], written: Written) -> None:
        """The end signals of the attempts whose outcome was written (see ``signals``)."""
        for outcome in outcomes:
            if outcome.context is not None and outcome.job.id in written.ids:
                signals.send_ended(outcome)

    def record_and_announce(self, outcomes: list[Outcome]) -> Written:
        written = self.record(outcomes)
        self.announce(outcomes, written)
        return written


def wants_announcement(outcome: Outcome) -> bool:
    """Does a receiver wait for this outcome's end signal (so its writer must tell it)?"""
    return outcome.context is not None and signals.ended_listened(outcome)


def log_outcome(outcome: Outcome) -> None:
    """One line per finished attempt: INFO for a success, WARNING or ERROR otherwise.

    Each line carries the job's fields as record attributes (``job_id``,
    ``job_name``, ``job_queue``, ``job_attempt``, ``duration``, ``outcome``) for
    ``--log-format json`` and ``JobContextFilter`` formats. The success line
    costs about 20 µs of the worker's CPU per job, a quarter of it for no-op
    jobs (docs/topics/performance.md); ``runworker --log-level WARNING`` drops it.
    """
    job = outcome.job
    seconds = outcome.duration or 0.0
    if outcome.status == JobStatus.SUCCESSFUL:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job #%s %s [queue %s, attempt %s/%s] succeeded in %.3fs",
                job.id,
                job.name,
                job.queue,
                job.attempt,
                job.max_attempts,
                seconds,
                extra=_fields(outcome, seconds),
            )
        return
    if outcome.duration is None:
        return  # released before it started: nothing happened to the job
    where = (
        f"job #{job.id} {job.name} [queue {job.queue}, attempt {job.attempt}/{job.max_attempts}]"
    )
    message = (outcome.error or {}).get("message", "")[:500]
    extra = _fields(outcome, seconds)
    if outcome.kind == AttemptOutcome.SNOOZED:
        logger.info("%s %s", where, message, extra=extra)
    elif outcome.status == JobStatus.READY and outcome.uncount:
        logger.warning(
            "%s interrupted after %.3fs, will run again: %s", where, seconds, message, extra=extra
        )
    elif outcome.status == JobStatus.READY:
        logger.warning(
            "%s failed after %.3fs, retrying in %.1fs: %s",
            where,
            seconds,
            outcome.retry_delay,
            message,
            extra=extra,
        )
    else:
        logger.error(
            "%s ended %s after %.3fs: %s", where, outcome.status, seconds, message, extra=extra
        )


def _fields(outcome: Outcome, seconds: float) -> dict[str, object]:
    job = outcome.job
    return {
        "job_id": job.id,
        "job_name": job.name,
        "job_queue": job.queue,
        "job_attempt": job.attempt,
        "duration": round(seconds, 6),
        "outcome": outcome.kind,
        "trace_id": tracing.trace_id(job) if tracing.enabled() else None,
    }
