"""A running job's progress: validated, throttled, fenced writes of one small JSON value.

``current_job().set_progress(done, total, message)`` lands in the attempt's
``ProgressReporter``. A job reporting in a tight loop must not turn into a
write per iteration, and a stale worker must not overwrite the attempt that
took its job over, so:

* at most one write per job per ``PROGRESS_INTERVAL`` seconds; a value set in
  between is kept and written by the next call after the interval, or with the
  attempt's outcome (the recorder flushes it right before the outcome, fenced
  the same way), so the last value set before the job ends is never lost;
* each write is ``UPDATE ... WHERE id AND lease_token AND status = 'RUNNING'``
  (``Backend.write_progress``); a write that matches no row stops the reporter;
* writes happen on the job's own thread and connection only. From async code
  (an event loop) the write is handed to that thread with ``sync_to_async``, so
  the loop never waits on the database; inside a transaction the job opened
  itself (``atomic=True`` jobs, or ``with transaction.atomic()`` in the body)
  nothing is written until it ends: an UPDATE there would hold the job row's
  lock, on SQLite the database's only write lock, until the commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidProgress

if TYPE_CHECKING:
    from .db import Backend
    from .rows import Outcome

logger = logging.getLogger("django_durable_jobs.progress")

#: Seconds between two writes of one job's progress.
PROGRESS_INTERVAL = 1.0
#: Characters of a progress message kept; longer ones are cut, with "…".
MESSAGE_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Progress:
    """A job's progress as stored: ``done`` of ``total`` (None: unknown), when, which attempt."""

    done: float
    total: float | None = None
    message: str | None = None
    at: datetime | None = None
    attempt: int | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1]; None without a total (0 of 0 is complete: 1.0)."""
        if self.total is None:
            return None
        if self.total == 0:
            return 1.0
        return min(1.0, max(0.0, self.done / self.total))

    @property
    def percent(self) -> int | None:
        fraction = self.fraction
        return None if fraction is None else math.floor(fraction * 100)

    @classmethod
    def from_value(cls, value: Any) -> Progress | None:
        """The stored JSON (a dict) as a ``Progress``; None for anything else."""
        if not isinstance(value, dict):
            return None
        done, total = value.get("done"), value.get("total")
        if not _is_number(done) or not (total is None or _is_number(total)):
            return None
        assert done is not None  # a number, as checked above
        message, attempt = value.get("message"), value.get("attempt")
        at = value.get("at")
        try:
            moment = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            moment = None
        return cls(
            done=done,
            total=total,
            message=message if isinstance(message, str) else None,
            at=moment,
            attempt=attempt if isinstance(attempt, int) else None,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_progress(done: Any, total: Any, message: Any) -> tuple[Any, Any, str | None]:
    """Validated ``(done, total, message)``; ``InvalidProgress`` names the problem and the fix.

    Numbers are ints or floats, finite and not negative, ``done <= total`` when
    a total is given; a message longer than ``MESSAGE_CHARS`` is cut (a
    progress line is for people, and a job must not fail over its length).
    """
    for name, value in (("done", done), ("total", total)):
        if name == "total" and value is None:
            continue
        if not _is_number(value):
            raise InvalidProgress(
                f"set_progress({name}={value!r}): {name} must be an int or a float, finite"
                + (" (or None when the total is unknown)." if name == "total" else ".")
            )
        if value < 0:
            raise InvalidProgress(f"set_progress({name}={value!r}): {name} cannot be negative.")
    if total is not None and done > total:
        raise InvalidProgress(
            f"set_progress(done={done!r}, total={total!r}): done cannot exceed total; "
            "raise the total or pass total=None when it is not known."
        )
    if message is not None:
        if not isinstance(message, str):
            raise InvalidProgress(
                f"set_progress(message={message!r}): the message must be a str or None."
            )
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 1] + "…"
    return done, total, message


_NEVER = -math.inf
#: Guards every reporter's state (a few attribute changes per call: never contended long).
_lock = threading.Lock()


def _json(value: dict[str, Any]) -> str:
    """The stored form: ``at`` (a ``time.time()``) as ISO 8601 text, in UTC."""
    at = value["at"]
    if isinstance(at, float):
        value = {**value, "at": datetime.fromtimestamp(at, UTC).isoformat()}
    return json.dumps(value, ensure_ascii=False)


class ProgressReporter:
    """One attempt's progress: the latest value, what was written, and the writes themselves.

    Unbound (no database: a ``JobContext`` made by hand, in a unit test), it
    only validates and remembers. ``bind`` ties it to the jobs' database, the
    calling thread (the job's) and that thread's transaction depth.
    """

    __slots__ = (
        "_alias",
        "_clock",
        "_depth",
        "_last_write",
        "_latest",
        "_lost",
        "_tasks",
        "_thread",
        "_version",
        "_written",
        "attempt",
        "job_id",
        "lease_token",
    )

    # Made for every attempt, most of which never report: nothing costly here.
    def __init__(
        self,
        job_id: int | None = None,
        lease_token: int | None = None,
        attempt: int | None = None,
        *,
        clock: Any = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.lease_token = lease_token
        self.attempt = attempt
        self._clock = clock
        self._latest: dict[str, Any] | None = None
        self._version = 0  # bumped by each set
        self._written = 0  # the version last written
        self._last_write = _NEVER
        self._alias: str | None = None
        self._thread: int | None = None
        self._depth = 0
        self._lost = False  # a write matched no row: the attempt's lease is gone
        self._tasks: set[asyncio.Task[Any]] | None = None

    def bind(self, alias: str, depth: int = 0) -> None:
        """Write to ``alias`` from this thread; ``depth``: atomic blocks open before the job
        (a test's, inline): deeper ones are the job's own transactions."""
        self._alias = alias
        self._thread = threading.get_ident()
        self._depth = depth

    # -- what the job calls --------------------------------------------------
    def set(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if not self._store(done, total, message):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:  # async code: the job's thread writes, the loop goes on
            task = loop.create_task(self._write_on_job_thread())
            if self._tasks is None:
                self._tasks = set()
            self._tasks.add(task)  # (a reference, until it is done)
            task.add_done_callback(self._tasks.discard)
        elif threading.get_ident() == self._thread:
            self.write_due()
        # (Another thread of the job's: kept, written by the job's thread later.)

    async def aset(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        if self._store(done, total, message):
            await self._write_on_job_thread()

    @property
    def latest(self) -> Progress | None:
        latest = self._latest
        return None if latest is None else Progress.from_value(json.loads(_json(latest)))

    # -- writing -------------------------------------------------------------------
    def _store(self, done: Any, total: Any, message: Any) -> bool:
        """Validate and keep the value; True when a write is due now."""
        done, total, message = check_progress(done, total, message)
        value = {
            "done": done,
            "total": total,
            "message": message,
            "at": time.time(),  # made ISO text when written: a call in a loop stays cheap
            "attempt": self.attempt,
        }
        now = self._clock()
        with _lock:
            self._latest = value
            self._version += 1
            if self._alias is None or self._lost or now - self._last_write < PROGRESS_INTERVAL:
                return False
            self._last_write = now
            return True

    async def _write_on_job_thread(self) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self.write_due, thread_sensitive=True)()

    def write_due(self) -> None:
        """Write the latest value now, on this thread's connection, unless it must wait."""
        from django.db import DatabaseError, connections, transaction

        assert self._alias is not None
        connection = connections[self._alias]
        if len(connection.atomic_blocks) > self._depth:
            return  # the job's own transaction: written when the attempt ends
        with _lock:
            if self._latest is None or self._written == self._version or self._lost:
                return
            version, text = self._version, _json(self._latest)
        try:
            if connection.in_atomic_block:  # the caller's (a test's): keep it usable on failure
                with transaction.atomic(using=self._alias):
                    written = self._backend().write_progress([self._row(text)])
            else:
                written = self._backend().write_progress([self._row(text)])
        except DatabaseError as exc:
            logger.warning(
                "job #%s: progress not written (%s); it is written with the outcome",
                self.job_id,
                str(exc).strip()[:200],
            )
            return
        with _lock:
            if self.job_id in written:
                self._written = max(self._written, version)
            else:
                self._lost = True
                logger.info("job #%s: progress not written: its lease was taken over", self.job_id)

    def _backend(self) -> Backend:
        from .db import get_backend

        assert self._alias is not None
        return get_backend(self._alias)

    def _row(self, text: str) -> tuple[int, int, str]:
        assert self.job_id is not None
        assert self.lease_token is not None
        return self.job_id, self.lease_token, text

    def unwritten(self) -> str | None:
        """The latest value as JSON if it was not written yet (and the lease still holds)."""
        if self._latest is None:
            return None  # the common case, every attempt that never reports: no lock
        with _lock:
            if self._written == self._version or self._lost:
                return None
            return _json(self._latest)


# -- the recorder's flush ------------------------------------------------------------
def unwritten(outcome: Outcome) -> str | None:
    """The attempt's progress still to write with ``outcome``, as JSON; None if nothing."""
    if outcome.progress is not None:
        return outcome.progress
    reporter = getattr(outcome.context, "_progress", None)
    if reporter is None or reporter.job_id != outcome.job.id:
        return None
    return reporter.unwritten()


def flush(backend: Backend, outcomes: list[Outcome]) -> None:
    """Write the unwritten progress of these attempts, fenced, before their outcomes."""
    rows = [
        (outcome.job.id, outcome.job.lease_token, text)
        for outcome in outcomes
        if (text := unwritten(outcome)) is not None
    ]
    if rows:
        backend.write_progress(rows)
