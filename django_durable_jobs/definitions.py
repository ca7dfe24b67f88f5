"""``@job`` and the immutable ``JobDefinition`` it returns."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from django.utils import timezone

from . import meta as job_meta
from . import registry
from .conf import app_settings
from .enqueue import enqueue_prepared
from .exceptions import InvalidJobDefinition, InvalidJobOptions
from .rates import RateLimit, check_rate, job_rate_key, parse_rate
from .retry import RetryPolicy, as_policy
from .rows import PreparedJob
from .serialization import dumps, encode_payload
from .uniqueness import Unique, as_unique, check_concurrency, concurrency_key, unique_key
from .validation import (
    CallShape,
    check_call,
    check_delay,
    check_expires,
    check_max_attempts,
    check_name,
    check_priority,
    check_queue,
    check_run_at,
    check_timeout,
    expiry,
)

if TYPE_CHECKING:
    from .handle import JobHandle

P = ParamSpec("P")
R = TypeVar("R")


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


#: Marks an option left to the settings, which are read at enqueue, not at import.
DEFAULT: Any = _Unset()


@dataclasses.dataclass(frozen=True, eq=False)
class JobDefinition(Generic[P, R]):
    """A function that can run in the background, and the options it runs with.

    Calling it runs the function directly, here and now; ``enqueue()`` stores a
    job for a worker. ``using()`` returns a copy with other options, so the
    definition itself never changes.
    """

    func: Callable[P, R]
    name: str
    queue: str = DEFAULT
    priority: int = 0
    max_attempts: int = DEFAULT
    retry: RetryPolicy = dataclasses.field(default_factory=lambda: as_policy(None))
    timeout: float | None = DEFAULT
    atomic: bool = False
    takes_context: bool = False
    run_at: datetime | None = None
    delay: float | None = None
    #: No attempt starts after this: seconds from the enqueue, or an instant (``using()``).
    expires: float | datetime | None = None
    #: At most one job with the same key among chosen statuses (``Unique``).
    unique: Unique | None = None
    #: This call's unique key (``using(unique_key=...)``), instead of one computed.
    unique_key: str | None = None
    #: At most ``concurrency_limit`` RUNNING jobs share a concurrency key: a
    #: template filled from the kwargs ("customer:{customer_id}") or a function.
    concurrency_key: str | Callable[..., Any] | None = None
    concurrency_limit: int | None = None
    #: At most ``rate_limit.starts`` jobs start in any ``rate_limit.period`` seconds,
    #: per job name or per ``rate_key`` (a template like ``concurrency_key``).
    rate_limit: RateLimit | None = None
    rate_key: str | Callable[..., Any] | None = None
    #: Jobs to enqueue when this one succeeds (``using(then=...)``).
    then: tuple[Any, ...] = ()
    #: After a successful call: ``(job, value) -> (value to store, follow-up jobs)``.
    #: Steps use it to hand their result to the next step.
    after: Callable[[Any, Any], tuple[Any, list[Any]]] | None = None
    #: Whether ``func`` is a coroutine function, worked out once (the worker asks per run).
    is_async: bool = dataclasses.field(init=False, default=False)
    #: The calls ``func`` accepts (without the context it may take), checked at enqueue.
    call_shape: CallShape | None = dataclasses.field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            object.__setattr__(self, attribute, getattr(self.func, attribute, None))
        object.__setattr__(self, "__wrapped__", self.func)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))
        shape = CallShape.of(self.func, skip_first=self.takes_context)
        object.__setattr__(self, "call_shape", shape)

    @property
    def path(self) -> str:
        """Where the function lives: ``module.qualname``."""
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobDefinition {self.name}>"

    def using(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = DEFAULT,
        unique_key: str | None = None,
        concurrency_key: str | None = None,
        rate_key: str | None = None,
        then: PreparedJob | list[PreparedJob] | None = None,
        expires: float | timedelta | datetime | None = None,
    ) -> JobDefinition[P, R]:
        """A copy with per-call options; ``run_at`` and ``delay`` exclude each other.

        ``expires``: no attempt starts after this, seconds (or a timedelta) from the
        enqueue or an aware datetime; a job not started by then ends CANCELLED,
        "expired" (see docs/howto/flow-control.md).

        ``unique_key`` makes this call unique by that key (with the definition's
        ``Unique`` statuses, default READY and RUNNING). ``then``: jobs (from
        ``other.prepare(...)``) enqueued when this one succeeds, in the same
        transaction as its success.
        """
        changes: dict[str, Any] = {}
        if unique_key is not None:
            if not isinstance(unique_key, str) or not unique_key:
                raise InvalidJobOptions(f"unique_key={unique_key!r} must be a non-empty string.")
            changes["unique_key"] = unique_key
        if concurrency_key is not None:
            check_concurrency(concurrency_key, self.concurrency_limit or 1)
            changes["concurrency_key"] = concurrency_key
            changes["concurrency_limit"] = self.concurrency_limit or 1
        if rate_key is not None:
            check_rate(rate_key, self.rate_limit)
            changes["rate_key"] = rate_key
        if then is not None:
            follow = [then] if isinstance(then, PreparedJob) else list(then)
            if not all(isinstance(item, PreparedJob) for item in follow):
                raise InvalidJobOptions(
                    "then= takes jobs prepared with other_job.prepare(...), or a list of them."
                )
            changes["then"] = (*self.then, *follow)
        if queue is not None:
            changes["queue"] = check_queue(queue)
        if priority is not None:
            changes["priority"] = check_priority(priority)
        if max_attempts is not None:
            changes["max_attempts"] = check_max_attempts(max_attempts)
        if timeout is not DEFAULT:
            changes["timeout"] = check_timeout(timeout)
        if run_at is not None and delay is not None:
            raise InvalidJobOptions("Pass run_at= or delay=, not both.")
        if run_at is not None:
            changes["run_at"], changes["delay"] = check_run_at(run_at), None
        if delay is not None:
            changes["delay"], changes["run_at"] = check_delay(delay), None
        if expires is not None:
            changes["expires"] = check_expires(expires)
        return dataclasses.replace(self, **changes)

    # The options as they apply now (settings are read here, never at import).
    def resolved_queue(self) -> str:
        return self.queue if self.queue is not DEFAULT else app_settings.DEFAULT_QUEUE

    def resolved_max_attempts(self) -> int:
        if self.max_attempts is not DEFAULT:
            return self.max_attempts
        return app_settings.DEFAULT_MAX_ATTEMPTS

    def resolved_timeout(self) -> float | None:
        if self.timeout is not DEFAULT:
            return self.timeout
        default = app_settings.DEFAULT_TIMEOUT  # the setting may be an int
        return None if default is None else float(default)

    def prepare(self, *args: P.args, **kwargs: P.kwargs) -> PreparedJob:
        """Validate and encode one call without writing it; for ``enqueue_many``."""
        queue = check_queue(self.resolved_queue())
        check_call(self.name, self.call_shape, args, kwargs)
        args_json, kwargs_json = encode_payload(args, kwargs, app_settings.MAX_PAYLOAD_BYTES)
        meta: dict[str, Any] = {}
        hashed_key, states = None, 0
        if self.unique is not None or self.unique_key is not None:
            unique = self.unique or Unique()
            canonical = dumps([json.loads(args_json), json.loads(kwargs_json)], sort_keys=True)
            hashed_key, meta["unique_key"] = unique_key(
                self.name, unique, args, kwargs, canonical, self.unique_key
            )
            states = unique.bitmask()
        key = concurrency_key(self.concurrency_key, args, kwargs)
        rate = self.rate_limit
        rate_key = job_rate_key(self.name, self.rate_key, args, kwargs) if rate else None
        if self.then:
            meta[job_meta.THEN] = [job_meta.serialize(item) for item in self.then]
        expires_at, expires_in = None, None
        if self.expires is not None:
            expires_at, expires_in = expiry(
                self.expires, run_at=self.run_at, delay=self.delay, now=timezone.now()
            )
        return PreparedJob(
            name=self.name,
            queue=queue,
            priority=self.priority,
            args_json=args_json,
            kwargs_json=kwargs_json,
            max_attempts=self.resolved_max_attempts(),
            timeout=self.resolved_timeout(),
            run_at=self.run_at,
            delay=self.delay,
            unique_key=hashed_key,
            unique_states=states,
            concurrency_key=key,
            concurrency_limit=self.concurrency_limit if key is not None else None,
            meta_json=job_meta.meta_json(meta) if meta else "{}",
            rate_key=rate_key,
            rate_limit=rate.starts if rate else None,
            rate_period=rate.period if rate else None,
            expires_at=expires_at,
            expires_in=expires_in,
        )

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Store a job that runs ``func(*args, **kwargs)`` on a worker.

        Inside ``transaction.atomic()`` on the jobs' database the job is part of
        that transaction: it exists only if it commits. Invalid arguments raise
        before anything is written.
        """
        return enqueue_prepared([self.prepare(*args, **kwargs)])[0]

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """``enqueue()`` for async code (async views): same checks, same transaction rules.

        The insert runs through ``sync_to_async(thread_sensitive=True)``, on the
        same thread and database connection as your other ``sync_to_async`` calls
        of the request: inside a transaction opened there it joins that
        transaction; otherwise it is committed when this returns.
        """
        from asgiref.sync import sync_to_async

        prepared = self.prepare(*args, **kwargs)  # invalid arguments raise here, in the loop

        handles = await sync_to_async(enqueue_prepared, thread_sensitive=True)([prepared])
        return handles[0]


def _check_function(func: Any) -> None:
    if not inspect.isfunction(func):
        raise InvalidJobDefinition(
            f"@job can only decorate a function defined with def, not {func!r}."
        )
    if func.__name__ == "<lambda>":
        raise InvalidJobDefinition("@job cannot decorate a lambda: define a named function.")
    if "<locals>" in func.__qualname__ or func.__qualname__ != func.__name__:
        raise InvalidJobDefinition(
            f"@job needs a module-level function, but {func.__qualname__} is defined inside "
            "another function or class, where a worker cannot import it. Move it to the top "
            "level of a module (for example <app>/jobs.py)."
        )
    if func.__module__ == "__main__":
        raise InvalidJobDefinition(
            f"@job function {func.__name__} is defined in __main__, which a worker cannot "
            "import. Move it into a module of your project (for example <app>/jobs.py)."
        )


@overload
def job(func: Callable[P, R], /) -> JobDefinition[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    retry: RetryPolicy | Callable[[int], float] | None = None,
    timeout: float | timedelta | None = DEFAULT,
    atomic: bool = False,
    takes_context: bool = False,
    unique: bool | Unique = False,
    concurrency_key: str | Callable[..., Any] | None = None,
    concurrency_limit: int | None = None,
    rate_limit: str | RateLimit | None = None,
    rate_key: str | Callable[..., Any] | None = None,
    expires: float | timedelta | None = None,
) -> Callable[[Callable[P, R]], JobDefinition[P, R]]: ...


def job(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
    retry: RetryPolicy | Callable[[int], float] | None = None,
    timeout: float | timedelta | None = DEFAULT,
    atomic: bool = False,
    takes_context: bool = False,
    unique: bool | Unique = False,
    concurrency_key: str | Callable[..., Any] | None = None,
    concurrency_limit: int | None = None,
    rate_limit: str | RateLimit | None = None,
    rate_key: str | Callable[..., Any] | None = None,
    expires: float | timedelta | None = None,
) -> Any:
    """Turn a module-level function into a job definition.

    ``name`` defaults to the dotted path of the function; set it to keep a
    job's name stable when the function moves. ``atomic=True`` runs the body
    in the transaction that records its success. ``takes_context=True`` passes
    a ``JobContext`` as the first argument. ``unique``: True (by arguments) or
    ``Unique(...)``. ``concurrency_key`` and ``concurrency_limit``: at most that
    many jobs with the same key run at once. ``rate_limit`` ("100/m", "50/10s"):
    at most that many starts in any such window, across every worker, per job
    name or per ``rate_key`` (see docs/howto/flow-control.md).
    ``expires``: seconds (or a timedelta) from each enqueue after which no attempt
    starts; the job then ends CANCELLED with reason "expired".
    """
    if concurrency_key is not None and concurrency_limit is None:
        concurrency_limit = 1
    check_concurrency(concurrency_key, concurrency_limit)
    rate = parse_rate(rate_limit) if rate_limit is not None else None
    if rate_key is not None:
        check_rate(rate_key, rate)

    options: dict[str, Any] = {
        "queue": check_queue(queue, against_settings=False) if queue is not None else DEFAULT,
        "priority": check_priority(priority),
        "max_attempts": check_max_attempts(max_attempts) if max_attempts is not None else DEFAULT,
        "retry": as_policy(retry),
        "timeout": check_timeout(timeout) if timeout is not DEFAULT else DEFAULT,
        "atomic": bool(atomic),
        "takes_context": bool(takes_context),
        "unique": as_unique(unique),
        "concurrency_key": concurrency_key,
        "concurrency_limit": concurrency_limit,
        "rate_limit": rate,
        "rate_key": rate_key,
        "expires": check_expires(expires, at_decoration=True) if expires is not None else None,
    }
    if name is not None:
        check_name(name)

    def decorate(fn: Callable[P, R]) -> JobDefinition[P, R]:
        _check_function(fn)
        job_name = name if name is not None else check_name(f"{fn.__module__}.{fn.__qualname__}")
        definition = JobDefinition(func=fn, name=job_name, **options)
        registry.register(definition)
        return definition

    if func is not None:
        return decorate(func)
    return decorate
