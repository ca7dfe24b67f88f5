"""Retry policies: how long to wait before the next attempt of a failed job.

A policy is any object with ``delay(attempt) -> seconds`` (``attempt`` is the
number of the attempt that just failed, from 1), or a plain callable with that
signature. Only ``max_attempts`` decides whether there is a next attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .conf import app_settings
from .exceptions import InvalidJobOptions


@runtime_checkable
class RetryPolicy(Protocol):
    def delay(self, attempt: int) -> float:
        """Seconds to wait after the failed ``attempt`` (1-based)."""
        ...


def _jittered(seconds: float, jitter: float) -> float:
    if jitter <= 0:
        return seconds
    return max(0.0, seconds * random.uniform(1 - jitter, 1 + jitter))


@dataclass(frozen=True)
class ExponentialBackoff:
    """``base * factor ** (attempt - 1)`` seconds, capped at ``max_delay``, +/- ``jitter``.

    Unset values come from the ``RETRY_BASE_DELAY``, ``RETRY_MAX_DELAY`` and
    ``RETRY_JITTER`` settings, read when a retry is planned. Jitter spreads the
    retries of jobs that failed together (a downstream outage) over time.
    """

    base: float | None = None
    factor: float = 2.0
    max_delay: float | None = None
    jitter: float | None = None

    def delay(self, attempt: int) -> float:
        base = app_settings.RETRY_BASE_DELAY if self.base is None else self.base
        cap = app_settings.RETRY_MAX_DELAY if self.max_delay is None else self.max_delay
        jitter = app_settings.RETRY_JITTER if self.jitter is None else self.jitter
        exponent = min(max(attempt - 1, 0), 64)  # no float overflow on absurd attempt counts
        return _jittered(min(base * self.factor**exponent, cap), jitter)


@dataclass(frozen=True)
class FixedDelay:
    """The same delay after every failed attempt, +/- ``jitter``."""

    seconds: float
    jitter: float = 0.0

    def delay(self, attempt: int) -> float:
        return _jittered(self.seconds, self.jitter)


@dataclass(frozen=True)
class _CallablePolicy:
    func: Callable[[int], float]

    def delay(self, attempt: int) -> float:
        return float(self.func(attempt))


DEFAULT_RETRY = ExponentialBackoff()


def as_policy(retry: RetryPolicy | Callable[[int], float] | None) -> RetryPolicy:
    """Accept a policy, a ``callable(attempt) -> seconds`` or None (the default policy)."""
    if retry is None:
        return DEFAULT_RETRY
    if isinstance(retry, RetryPolicy):
        return retry
    if callable(retry):
        return _CallablePolicy(retry)
    raise InvalidJobOptions(
        f"retry={retry!r} is not a retry policy: pass ExponentialBackoff(...), FixedDelay(...) "
        "or a function taking the failed attempt number and returning seconds."
    )
