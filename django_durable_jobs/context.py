"""``JobContext``: what a running job can learn about itself, and ``current_job()``."""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import uuid
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from .progress import Progress, ProgressReporter


@dataclasses.dataclass(frozen=True)
class JobContext:
    """The running job: its id, name, queue, attempt number (from 1) and more.

    ``fire_time`` is the schedule tick a periodic job was enqueued for (not
    "now"). ``cancel_requested`` turns true when an operator asks a running job
    to stop; a long job should check it and return early. ``set_progress()``
    reports how far it got (see docs/howto/flow-control.md, "Progress").
    """

    job_id: int
    name: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    _cancel_event: threading.Event = dataclasses.field(
        default_factory=threading.Event, repr=False, compare=False
    )
    _progress: ProgressReporter = dataclasses.field(
        default_factory=ProgressReporter, repr=False, compare=False
    )

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_event.is_set()

    @property
    def fire_time(self) -> datetime | None:
        value = self.meta.get("fire_time")
        return parse_datetime(value) if isinstance(value, str) else None

    @property
    def schedule(self) -> str | None:
        return self.meta.get("schedule")

    def set_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report ``done`` of ``total`` (None: unknown), with an optional short message.

        Cheap to call in a loop: written at most once a second, the last value
        always (with the outcome). In async code it never waits for the database;
        ``await aset_progress()`` does. Raises ``InvalidProgress`` for negative or
        non-numeric values or ``done > total``; a message past 200 characters is cut.
        """
        self._progress.set(done, total, message)

    async def aset_progress(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """``set_progress()`` for async code, waiting for the write when one is due."""
        await self._progress.aset(done, total, message)

    @property
    def progress(self) -> Progress | None:
        """The progress this attempt set last (None before the first ``set_progress``)."""
        return self._progress.latest


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "durable_job", default=None
)


def current_job() -> JobContext | None:
    """The context of the job running in this thread or task, or None outside a job."""
    return _current.get()


def set_current(context: JobContext | None) -> contextvars.Token[JobContext | None]:
    return _current.set(context)


def reset_current(token: contextvars.Token[JobContext | None]) -> None:
    _current.reset(token)
