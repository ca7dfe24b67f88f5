"""``JobHandle``: what ``enqueue()`` returns, to follow a job by id."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .constants import JobStatus
from .exceptions import DurableJobsError, JobFailed, JobNotFinished
from .progress import Progress
from .serialization import decode

if TYPE_CHECKING:
    from .models import Job

R = TypeVar("R")


class JobHandle(Generic[R]):
    """A reference to an enqueued job. ``refresh()`` reads its current state.

    ``id`` is None while the insert waits for a transaction on another database
    to commit (see ``enqueue``).
    """

    def __init__(self, job_id: int | None, name: str, database: str) -> None:
        self.id = job_id
        self.name = name
        self.database = database
        #: A unique job whose key a committed job already held: ``id`` is that job's.
        self.deduplicated = False
        self._job: Job | None = None

    def __repr__(self) -> str:
        return f"<JobHandle #{self.id} {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and (self.id, self.name) == (other.id, other.name)

    def __hash__(self) -> int:
        return hash((self.id, self.name))

    def refresh(self) -> JobHandle[R]:
        from .models import Job

        if self.id is None:
            raise DurableJobsError(
                f"Job {self.name} is not written yet: it is enqueued when the open transaction on "
                "another database commits."
            )
        self._job = Job.objects.using(self.database).get(id=self.id)
        return self

    async def arefresh(self) -> JobHandle[R]:
        """``refresh()`` for async code."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.refresh, thread_sensitive=True)()

    @property
    def job(self) -> Job:
        """The job row, as of the last ``refresh()`` (read once on first access)."""
        if self._job is None:
            self.refresh()
        assert self._job is not None
        return self._job

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.job.status)

    @property
    def attempts(self) -> int:
        return self.job.attempts

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The attempt history: one entry per attempt that did not succeed."""
        return self.job.errors

    @property
    def progress(self) -> Progress | None:
        """What the job last reported with ``set_progress()``, as of the last ``refresh()``."""
        return Progress.from_value(self.job.progress)

    @property
    def is_finished(self) -> bool:
        return self.status in JobStatus.finished()

    @property
    def result(self) -> R:
        """The job's return value; raises unless the job is SUCCESSFUL."""
        status = self.status
        if status == JobStatus.SUCCESSFUL:
            return decode(self.job.result)
        if status in JobStatus.finished():
            last = self.job.last_error or {}
            raise JobFailed(
                f"Job #{self.id} {self.name} ended {status}: {last.get('message', 'no message')}"
            )
        raise JobNotFinished(f"Job #{self.id} {self.name} is {status}; it has no result yet.")

    def wait(self, timeout: float = 30.0, interval: float = 0.05) -> JobHandle[R]:
        """Poll until the job is finished; raise ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            if self.is_finished:
                return self
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Job #{self.id} {self.name} is still {self.status}.")
            time.sleep(interval)
