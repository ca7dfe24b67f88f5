"""Checks of job options, shared by ``@job``, ``.using()`` and enqueue; each error names the fix."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .conf import app_settings
from .constants import MAX_JOB_NAME_LENGTH, PRIORITY_MAX, PRIORITY_MIN, QUEUE_NAME_PATTERN
from .exceptions import InvalidJobOptions, UnknownQueue

_QUEUE_RE = re.compile(QUEUE_NAME_PATTERN)


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
    if type(max_attempts) is not int or max_attempts < 1:
        raise InvalidJobOptions(
            f"max_attempts={max_attempts!r} is invalid: use an integer >= 1 (1 means no retries)."
        )
    return max_attempts


def check_timeout(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidJobOptions(
            f"timeout={timeout!r} is invalid: use a number of seconds > 0, a timedelta, or None."
        )
    return float(timeout)


def check_delay(delay: Any) -> float:
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise InvalidJobOptions(
            f"delay={delay!r} is invalid: use a number of seconds >= 0 or a timedelta."
        )
    return float(delay)


def check_run_at(run_at: Any) -> datetime:
    if not isinstance(run_at, datetime):
        raise InvalidJobOptions(f"run_at={run_at!r} is not a datetime.")
    if settings.USE_TZ and timezone.is_naive(run_at):
        raise InvalidJobOptions(
            f"run_at={run_at!r} is a naive datetime while USE_TZ is True, so it names no "
            "single instant: pass an aware datetime (django.utils.timezone.now() + ..., or "
            "datetime(..., tzinfo=...))."
        )
    if not settings.USE_TZ and timezone.is_aware(run_at):
        return timezone.make_naive(run_at)
    return run_at
