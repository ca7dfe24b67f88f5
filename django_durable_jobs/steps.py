"""Durable multi-step jobs: a class whose ``@step`` methods run in order.

    class OrderPipeline(Steps):
        @step(max_attempts=5)
        def reserve_stock(self, order_id: int) -> int:
            ...
            return order_id                      # the next step's input

        @step(timeout=30)
        def charge(self, order_id: int) -> Next[int]:
            ...
            return Next(order_id, delay=timedelta(minutes=10))

        @step
        def send_confirmation(self, order_id: int) -> str:
            return "sent"                        # the last step: the run's result

    run = OrderPipeline.start(order_id=42)

Each step runs as its own job, with its own retry policy and timeout; the
steps of one run share a ``run_id``. The next step's job is inserted in the
same transaction that records the current step's success, so a crash resumes
from the last committed step: a finished step never runs again, and the
hand-off itself happens exactly once. A failed step can be retried (admin,
``manage.py jobs retry``) without re-running the steps before it.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from . import registry
from .constants import JobStatus
from .definitions import DEFAULT, JobDefinition
from .exceptions import InvalidJobDefinition, InvalidJobOptions
from .handle import JobHandle
from .meta import meta_json
from .retry import RetryPolicy, as_policy
from .validation import (
    check_delay,
    check_max_attempts,
    check_name,
    check_priority,
    check_queue,
    check_run_at,
    check_timeout,
)

T = TypeVar("T")

_STEP = "_durable_jobs_step"


class Next(Generic[T]):
    """Returned by a step: pass ``value`` to the next step, optionally later."""

    def __init__(
        self,
        value: T = None,  # type: ignore[assignment]
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
    ) -> None:
        if delay is not None and run_at is not None:
            raise InvalidJobOptions("Next() takes delay= or run_at=, not both.")
        self.value = value
        self.delay = check_delay(delay) if delay is not None else None
        self.run_at = check_run_at(run_at) if run_at is not None else None


class Done(Generic[T]):
    """Returned by a step: end the run here, with ``value`` as its result."""

    def __init__(self, value: T = None) -> None:  # type: ignore[assignment]
        self.value = value


@dataclasses.dataclass(frozen=True)
class _StepOptions:
    queue: str | None = None
    priority: int = 0
    max_attempts: int | None = None
    retry: RetryPolicy | None = None  # already through as_policy()
    timeout: Any = DEFAULT
    atomic: bool = False


def step(
    func: Callable[..., Any] | None = None,
    /,
    *,
    queue: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    retry: RetryPolicy | Callable[[int], float] | None = None,
    timeout: float | timedelta | None = DEFAULT,
    atomic: bool = False,
) -> Any:
    """Mark a method of a ``Steps`` class as a step, with that step's job options."""
    options = _StepOptions(
        queue=check_queue(queue, against_settings=False) if queue is not None else None,
        priority=check_priority(priority),
        max_attempts=check_max_attempts(max_attempts) if max_attempts is not None else None,
        retry=as_policy(retry) if retry is not None else None,
        timeout=check_timeout(timeout) if timeout is not DEFAULT else DEFAULT,
        atomic=bool(atomic),
    )

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        setattr(method, _STEP, options)
        return method

    return mark(func) if func is not None else mark


class RunHandle:
    """A run of a ``Steps`` class: its id and its steps' jobs, in order."""

    def __init__(self, run_id: uuid.UUID, first: JobHandle[Any]) -> None:
        self.run_id = run_id
        self.first = first

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"

    def jobs(self) -> Any:
        """The run's jobs, step by step (a queryset of ``Job``)."""
        from .models import Job

        return Job.objects.using(self.first.database).filter(run_id=self.run_id).order_by("id")

    @property
    def status(self) -> JobStatus:
        """The latest step's status: SUCCESSFUL once the run has ended well."""
        latest = self.jobs().last()
        return JobStatus(latest.status) if latest is not None else JobStatus.READY

    @property
    def result(self) -> Any:
        """The run's result: what its last step returned (raises until it succeeded)."""
        latest = self.jobs().last()
        return JobHandle(latest.id, latest.name, self.first.database).result


class Steps:
    """Base class of multi-step jobs; see the module docstring.

    ``name`` (a class attribute) prefixes the steps' job names; it defaults
    to the class's dotted path. Set it to keep names stable across refactors.
    """

    name: ClassVar[str] = ""
    _steps: ClassVar[list[JobDefinition[..., Any]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
            raise InvalidJobDefinition(
                f"{cls.__qualname__} must be defined at the top level of an importable module, "
                "so a worker can find its steps."
            )
        prefix = check_name(cls.__dict__.get("name") or f"{cls.__module__}.{cls.__qualname__}")
        methods = [(attr, value) for attr, value in cls.__dict__.items() if hasattr(value, _STEP)]
        if not methods:
            raise InvalidJobDefinition(f"{cls.__qualname__} has no @step method.")
        cls.name = prefix
        cls._steps = []
        for index, (attr, method) in enumerate(methods):
            options: _StepOptions = getattr(method, _STEP)
            definition = JobDefinition(
                func=_runner(cls, attr),
                name=f"{prefix}.{attr}",
                queue=options.queue if options.queue is not None else DEFAULT,
                priority=options.priority,
                max_attempts=options.max_attempts if options.max_attempts is not None else DEFAULT,
                retry=options.retry or as_policy(None),
                timeout=options.timeout,
                atomic=options.atomic,
                after=_hand_off(cls, index),
            )
            registry.register(definition)
            cls._steps.append(definition)

    @property
    def context(self) -> Any:
        """The running step's ``JobContext`` (attempt, run id, cancel requests...)."""
        from .context import current_job

        return current_job()

    @classmethod
    def prepare(cls, *args: Any, **kwargs: Any) -> Any:
        """The first step of a new run, prepared (for ``enqueue_many`` or ``group``)."""
        prepared = cls._steps[0].prepare(*args, **kwargs)
        prepared.run_id = uuid.uuid4()
        prepared.meta_json = meta_json({"step": 1, "steps": len(cls._steps)})
        return prepared

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> RunHandle:
        """Enqueue the first step; the rest follow as each step succeeds."""
        from .enqueue import enqueue_prepared

        prepared = cls.prepare(*args, **kwargs)
        (handle,) = enqueue_prepared([prepared])
        return RunHandle(prepared.run_id, handle)


def _runner(cls: type[Steps], attr: str) -> Callable[..., Any]:
    def run_step(*args: Any, **kwargs: Any) -> Any:
        return getattr(cls(), attr)(*args, **kwargs)

    method = getattr(cls, attr)
    run_step.__name__ = run_step.__qualname__ = attr
    run_step.__module__ = cls.__module__
    run_step.__doc__ = method.__doc__
    # The method's own parameters, without self: what enqueue checks a call against.
    signature = inspect.signature(method)
    run_step.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return run_step


def _hand_off(cls: type[Steps], index: int) -> Callable[[Any, Any], tuple[Any, list[Any]]]:
    """After step ``index`` succeeds: what to store, and the next step's job."""

    def after(job: Any, value: Any) -> tuple[Any, list[Any]]:
        if isinstance(value, Done):
            return value.value, []
        next_value, delay, run_at = value, None, None
        if isinstance(value, Next):
            next_value, delay, run_at = value.value, value.delay, value.run_at
        if index + 1 >= len(cls._steps):
            return next_value, []
        following = cls._steps[index + 1]
        if delay is not None:
            following = following.using(delay=delay)
        elif run_at is not None:
            following = following.using(run_at=run_at)
        prepared = following.prepare(next_value)
        prepared.run_id = job.run_id or uuid.uuid4()
        prepared.parent_id = job.id
        prepared.meta_json = meta_json({"step": index + 2, "steps": len(cls._steps)})
        return next_value, [prepared]

    return after


__all__ = ["Done", "Next", "RunHandle", "Steps", "step"]
