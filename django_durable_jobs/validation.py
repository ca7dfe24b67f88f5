"""Checks of job options, shared by ``@job``, ``.using()`` and enqueue; each error names the fix."""

from __future__ import annotations

import functools
import inspect
import math
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .conf import app_settings
from .constants import MAX_JOB_NAME_LENGTH, PRIORITY_MAX, PRIORITY_MIN, QUEUE_NAME_PATTERN
from .exceptions import InvalidJobArguments, InvalidJobOptions, UnknownQueue

_QUEUE_RE = re.compile(QUEUE_NAME_PATTERN)

#: The most attempts a job can have: the attempts columns are 32-bit integers.
MAX_ATTEMPTS_LIMIT = 2**31 - 1
#: The longest delay and timeout accepted (seconds): a century. Far beyond any use,
#: and well inside what every database's timestamps and intervals can hold.
MAX_SECONDS = 100 * 365 * 86400


def _seconds(value: Any, option: str, *, zero_ok: bool, fix: str) -> float:
    """A finite number of seconds in range (a timedelta counts), or ``InvalidJobOptions``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    valid = not isinstance(value, bool) and isinstance(value, int | float)
    if valid:
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            valid = False
        else:
            valid = math.isfinite(seconds) and (seconds >= 0 if zero_ok else seconds > 0)
            valid = valid and seconds <= MAX_SECONDS
    if not valid:
        bound = ">= 0" if zero_ok else "> 0"
        raise InvalidJobOptions(
            f"{option}={value!r} is invalid: use a finite number of seconds {bound} and at most "
            f"{MAX_SECONDS:,} (100 years), {fix}."
        )
    return seconds


def snooze_seconds(value: Any) -> float:
    """``Snooze(seconds)``: finite, > 0, at most a century."""
    return _seconds(value, "Snooze(seconds)", zero_ok=False, fix="for example Snooze(30)")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_JOB_NAME_LENGTH:
        raise InvalidJobOptions(
            f"name={name!r} is not a valid job name: use a non-empty string of at most "
            f"{MAX_JOB_NAME_LENGTH} characters, such as 'shop.send_invoice'."
        )
    return name


def check_priority(priority: Any) -> int:
    if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidJobOptions(
            f"priority={priority!r} is out of range: use an integer from {PRIORITY_MIN} to "
            f"{PRIORITY_MAX} (higher runs first; the default is 0)."
        )
    return priority


def check_queue(queue: Any, *, against_settings: bool = True) -> str:
    """A well-formed queue name that, with ``against_settings``, ``QUEUES`` allows."""
    if not isinstance(queue, str) or not _QUEUE_RE.match(queue):
        raise InvalidJobOptions(
            f"queue={queue!r} is not a valid queue name: use 1 to 100 letters, digits or the "
            "characters _ . : -"
        )
    allowed = app_settings.QUEUES if against_settings else None
    if allowed is not None and queue not in allowed:
        raise UnknownQueue(
            f"unknown queue {queue!r}: DURABLE_JOBS['QUEUES'] allows {sorted(allowed)}. "
            "Add it there, or fix the queue name."
        )
    return queue


def check_max_attempts(max_attempts: Any) -> int:
    if type(max_attempts) is not int or not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidJobOptions(
            f"max_attempts={max_attempts!r} is invalid: use an integer from 1 (no retries) to "
            f"{MAX_ATTEMPTS_LIMIT:,}."
        )
    return max_attempts


def check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    return _seconds(timeout, "timeout", zero_ok=False, fix="a timedelta, or None (no timeout)")


def check_delay(delay: Any) -> float:
    return _seconds(delay, "delay", zero_ok=True, fix="or a timedelta")


def check_run_at(run_at: Any) -> datetime:
    if not isinstance(run_at, datetime):
        raise InvalidJobOptions(f"run_at={run_at!r} is not a datetime.")
    return _instant(run_at, "run_at")


def _instant(value: datetime, option: str) -> datetime:
    """An aware datetime (naive under ``USE_TZ = False``), or ``InvalidJobOptions``."""
    if settings.USE_TZ and timezone.is_naive(value):
        raise InvalidJobOptions(
            f"{option}={value!r} is a naive datetime while USE_TZ is True, so it names no "
            "single instant: pass an aware datetime (django.utils.timezone.now() + ..., or "
            "datetime(..., tzinfo=...))."
        )
    if not settings.USE_TZ and timezone.is_aware(value):
        return timezone.make_naive(value)
    return value


def check_expires(expires: Any, *, at_decoration: bool = False) -> float | datetime:
    """``expires=``: seconds (> 0, a timedelta counts) from the enqueue, or an aware datetime.

    ``@job`` takes seconds only (``at_decoration``): one instant for every future
    call of a job is a mistake; a per-call instant goes to ``.using(expires=...)``.
    """
    if isinstance(expires, datetime):
        if at_decoration:
            raise InvalidJobOptions(
                f"@job(expires={expires!r}): a datetime here would expire every future call "
                "of this job at the same instant. Give @job a number of seconds (or a "
                "timedelta) counted from each enqueue, and pass a datetime per call with "
                ".using(expires=...)."
            )
        return _instant(expires, "expires")
    return _seconds(
        expires, "expires", zero_ok=False, fix="a timedelta, or an aware datetime (.using())"
    )


def expiry(
    expires: float | datetime | None,
    *,
    run_at: datetime | None,
    delay: float | None,
    now: datetime,
) -> tuple[datetime | None, float | None]:
    """``(expires_at, expires_in)`` for a prepared job, once its start time is known.

    Relative expiry counts from the enqueue, like ``delay`` (not from ``run_at``):
    a job that is due only at or after it expires could never run, so that is an
    error here, at enqueue, not a job that silently ends expired. ``now`` is this
    host's clock; the insert computes ``expires_in`` on the database clock.
    """
    if expires is None:
        return None, None
    due = run_at if run_at is not None else now + timedelta(seconds=delay or 0.0)
    if isinstance(expires, datetime):
        if expires <= now:
            raise InvalidJobOptions(
                f"expires={expires.isoformat()} is in the past (now is {now.isoformat()}): "
                "the job could never start. Pass a later time, or seconds from now."
            )
        deadline, shown = expires, expires.isoformat()
    else:
        deadline, shown = now + timedelta(seconds=expires), f"{expires:g}s"
    if deadline <= due:
        start = f"run_at={run_at.isoformat()}" if run_at is not None else f"delay={delay:g}s"
        raise InvalidJobOptions(
            f"expires={shown} is not after the job's start ({start}), so it could never "
            "run. Relative expiry counts from the enqueue, not from the start: make it "
            "longer than the delay, or start sooner."
        )
    if isinstance(expires, datetime):
        return expires, None
    return None, expires


class CallShape:
    """The calls a job function accepts, worked out once, checked at every enqueue.

    A job enqueued with arguments its function cannot take would fail every
    attempt on the worker with a ``TypeError``; the check makes it fail at the
    call site instead, before anything is written. ``accepts`` is a fast test
    of the common shapes; anything it doubts goes to ``inspect.Signature.bind``,
    whose error message is Python's own.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        self.signature = signature
        params = list(signature.parameters.values())
        kinds = inspect.Parameter
        positional = [
            p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        ]
        self.n_positional = len(positional)
        self.n_positional_only = sum(p.kind is kinds.POSITIONAL_ONLY for p in params)
        self.by_name = {
            p.name: index
            for index, p in enumerate(positional)
            if p.kind is kinds.POSITIONAL_OR_KEYWORD
        }
        self.required = [index for index, p in enumerate(positional) if p.default is p.empty]
        self.keyword_only = {p.name for p in params if p.kind is kinds.KEYWORD_ONLY}
        self.required_keyword_only = {
            p.name for p in params if p.kind is kinds.KEYWORD_ONLY and p.default is p.empty
        }
        self.var_positional = any(p.kind is kinds.VAR_POSITIONAL for p in params)
        self.var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self.names = [p.name for p in positional]

    @staticmethod
    @functools.cache
    def of(func: Any, *, skip_first: bool = False) -> CallShape | None:
        """The shape of ``func``'s calls (``skip_first``: a context it is given); None: unknown.

        Cached: ``using()`` makes a new definition of the same function per call.
        """
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return None
        if skip_first:
            params = list(signature.parameters.values())[1:]
            signature = signature.replace(parameters=params)
        return CallShape(signature)

    def accepts(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> bool:
        """True when the call is certainly valid (False: ask ``problem``)."""
        given = len(args)
        if given > self.n_positional and not self.var_positional:
            return False
        if given < self.n_positional_only and any(
            i < self.n_positional_only for i in self.required
        ):
            return False
        for key in kwargs:
            index = self.by_name.get(key)
            if index is not None:
                if index < given:
                    return False  # given twice
            elif key not in self.keyword_only and not self.var_keyword:
                return False
        for index in self.required:
            if index >= given and self.names[index] not in kwargs:
                return False
        return all(name in kwargs for name in self.required_keyword_only)

    def problem(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str | None:
        """Python's own complaint about the call, or None when it is valid after all."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return str(exc)
        return None


def check_call(name: str, shape: CallShape | None, args: Any, kwargs: dict[str, Any]) -> None:
    """Raise ``InvalidJobArguments`` (naming the signature) unless ``shape`` takes the call."""
    if shape is None or shape.accepts(args, kwargs):
        return
    problem = shape.problem(args, kwargs)
    if problem is not None:
        raise InvalidJobArguments(
            f"{name}{shape.signature} cannot be called with these arguments: {problem}. "
            "Fix the call (nothing was enqueued)."
        )
