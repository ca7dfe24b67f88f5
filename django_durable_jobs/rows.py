"""The rows that cross layers: a job about to be written, a claimed job, an attempt's outcome.

They live in this low module (it imports nothing of ours but constants) so
that the definitions, the db backends, the worker and the writer can all name
them without lazy imports.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import datetime
from typing import Any

from .constants import FAILED_ATTEMPT_OUTCOMES, STATUS_BITS, JobStatus

_FINISHED = JobStatus.finished()


@dataclasses.dataclass(slots=True)
class PreparedJob:
    """A validated, encoded job row that has not been written yet."""

    name: str
    queue: str
    priority: int
    args_json: str
    kwargs_json: str
    max_attempts: int
    timeout: float | None
    run_at: datetime | None = None
    delay: float | None = None
    unique_key: str | None = None
    unique_states: int = 0
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    run_id: uuid.UUID | None = None
    parent_id: int | None = None
    waiting_for: int = 0
    meta_json: str = "{}"
    #: The job's own rate limit (see rates.py): its start-log key, starts, period.
    rate_key: str | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    #: No attempt starts after this instant (``expires=`` as a datetime), or after
    #: ``expires_in`` seconds from the insert (database clock); both None: never.
    expires_at: datetime | None = None
    expires_in: float | None = None


@dataclasses.dataclass(slots=True)
class ClaimedJob:
    """A job this worker holds a lease on; ``lease_token`` fences every write about it."""

    id: int
    name: str
    queue: str
    priority: int
    args: Any
    kwargs: Any
    attempt: int
    max_attempts: int
    timeout: float | None
    lease_token: int
    meta: Any
    run_id: uuid.UUID | None
    unique_states: int
    #: No attempt may start after this (checked again when a thread takes the job).
    expires_at: datetime | None = None

    @property
    def meta_dict(self) -> dict[str, Any]:
        """``meta`` as a dict ({} if it is not one), parsed once: a job reads it several times."""
        meta = self.meta
        if isinstance(meta, str | bytes):
            try:
                meta = json.loads(meta)
            except ValueError:
                meta = {}
        if not isinstance(meta, dict):
            meta = {}
        self.meta = meta
        return meta


@dataclasses.dataclass(slots=True)
class Outcome:
    """How an attempt ended, as one fenced update of the job row.

    ``status`` is the job's next status: a final one, or READY for a retry
    (after ``retry_delay`` seconds). ``uncount`` gives the attempt back (a job
    released at shutdown did not fail). ``error`` is appended to the history.
    Outcomes are made by ``worker.outcomes`` only.
    """

    job: ClaimedJob
    status: str
    result_json: str | None = None
    error: dict[str, Any] | None = None
    retry_delay: float = 0.0
    uncount: bool = False
    #: The exception behind a failure (not stored; lets the worker tell a database
    #: outage from a job's own error, and the signals re-raise it for receivers).
    cause: BaseException | None = dataclasses.field(default=None, repr=False, compare=False)
    #: Jobs to insert in the same transaction as this outcome, if it is written
    #: (the next step of a run, a chained job).
    follow_ups: list[PreparedJob] = dataclasses.field(default_factory=list, repr=False)
    #: Group callbacks waiting for this job: released by one when it is final.
    releases: list[int] = dataclasses.field(default_factory=list, repr=False)
    #: Seconds the attempt ran; None when it never started (released unstarted).
    duration: float | None = None
    #: When the attempt started, on this process's ``time.monotonic()`` clock: the
    #: writer turns it into ``started_at`` on the database clock.
    started: float | None = None
    #: The attempt's ``JobContext`` (for the signals); None when it never started.
    context: Any = dataclasses.field(default=None, repr=False, compare=False)
    #: The attempt's latest progress (JSON) not written yet: the recorder writes it,
    #: fenced, right before this outcome (see ``progress.py``).
    progress: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in _FINISHED

    @property
    def keeps_unique_key(self) -> bool:
        return bool(self.job.unique_states & STATUS_BITS[self.status])

    def seconds_since_start(self, clock: float | None = None) -> float | None:
        """How long before ``clock`` (a ``time.monotonic()`` reading, default now) it started.

        None: it never did. For ``started_at``: a writer that stamps a batch with
        one wall-clock time passes the monotonic reading taken with it.
        """
        if self.started is None:
            return None
        return max(0.0, (time.monotonic() if clock is None else clock) - self.started)

    @property
    def is_failed_attempt(self) -> bool:
        """A charged attempt that went wrong (counted in ``models.FailedAttempts``)."""
        return (
            not self.uncount
            and self.error is not None
            and self.error.get("outcome") in FAILED_ATTEMPT_OUTCOMES
        )

    @property
    def kind(self) -> str:
        """Why the attempt ended: ``"success"`` or the history entry's ``outcome``."""
        if self.status == JobStatus.SUCCESSFUL or not self.error:
            return "success"
        return str(self.error.get("outcome", "success"))
