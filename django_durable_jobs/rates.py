"""Rate limits and queue-wide limits: their syntax, and the gates the claim enforces.

A rate limit reads ``"<starts>/<period>"``: ``"100/m"``, ``"50/10s"``, ``"20/s"``,
``"1000/h"``, ``"5/d"``. It is enforced in the claim query as a *sliding-window
log*: every start of a rate-limited job writes a row (its key and the database
time); a job is claimed only while fewer than ``starts`` rows of its key lie in
the last ``period``. So in no window of that length do more than ``starts``
jobs start, across every worker and machine, and up to ``starts`` may start at
once (the burst is the limit itself, never more).

Three gates use it:

* a job's own limit, ``@job(rate_limit="100/m")``: one window per job name, or
  per key with ``rate_key="api:{account_id}"`` (filled like ``concurrency_key``);
* a queue's limit, ``DURABLE_JOBS["QUEUES"] = {"emails": {"rate_limit": "20/s"}}``;
* a queue's concurrency, ``{"reports": {"concurrency": 2}}``: at most that many
  RUNNING jobs of the queue.

Queue gates are read from each worker's settings when it claims (every worker
must have the same ``QUEUES``); a job's own gate is stored on its row at enqueue.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import app_settings
from .exceptions import InvalidJobOptions

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNIT_NAMES = {
    "s": "s",
    "sec": "s",
    "second": "s",
    "m": "m",
    "min": "m",
    "minute": "m",
    "h": "h",
    "hour": "h",
    "d": "d",
    "day": "d",
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")
#: Longest period a limit may have: the start log is kept that long.
MAX_PERIOD_SECONDS = 7 * 86400.0
#: Key prefixes in the start log, so a job's keys never collide with a queue's.
JOB_KEY_PREFIX = "job:"
CUSTOM_KEY_PREFIX = "key:"
QUEUE_KEY_PREFIX = "queue:"
QUEUE_OPTIONS = frozenset({"rate_limit", "concurrency"})


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``starts`` jobs start in any window of ``period`` seconds."""

    starts: int
    period: float

    def __str__(self) -> str:
        return f"{self.starts}/{self.period:g}s"


def parse_rate(value: Any, *, what: str = "rate_limit") -> RateLimit:
    """``"100/m"`` (or a ``RateLimit``) as a ``RateLimit``; anything else raises, naming the fix."""
    if isinstance(value, RateLimit):
        return value
    match = _RATE.match(value) if isinstance(value, str) else None
    unit = _UNIT_NAMES.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise InvalidJobOptions(
            f"{what}={value!r} is not a rate: write '<starts>/<period>', such as '100/m', "
            "'50/10s', '20/s', '1000/h' or '5/d'."
        )
    starts = int(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[unit]
    if not 1 <= starts <= 2**31 - 1:
        raise InvalidJobOptions(f"{what}={value!r}: the number of starts must be at least 1.")
    if not 0 < period <= MAX_PERIOD_SECONDS:
        raise InvalidJobOptions(
            f"{what}={value!r}: the period must be more than 0 and at most 7 days."
        )
    return RateLimit(starts, period)


@dataclasses.dataclass(frozen=True)
class QueueGate:
    """A queue's limits across all workers: RUNNING jobs and starts per window."""

    queue: str
    concurrency: int | None = None
    rate: RateLimit | None = None


def parse_queue_options(queue: str, options: Any) -> QueueGate:
    """One entry of the ``QUEUES`` dict; raises ``InvalidJobOptions`` naming the problem."""
    if options is None:
        return QueueGate(queue)
    if not isinstance(options, Mapping):
        raise InvalidJobOptions(
            f"DURABLE_JOBS['QUEUES'][{queue!r}] must be a dict of options "
            "({'rate_limit': '20/s', 'concurrency': 2}) or None."
        )
    unknown = set(options) - QUEUE_OPTIONS
    if unknown:
        raise InvalidJobOptions(
            f"DURABLE_JOBS['QUEUES'][{queue!r}] has unknown options {sorted(unknown)}: "
            f"use {sorted(QUEUE_OPTIONS)}."
        )
    concurrency = options.get("concurrency")
    if concurrency is not None and (
        type(concurrency) is not int or not 1 <= concurrency <= 2**31 - 1
    ):
        raise InvalidJobOptions(
            f"DURABLE_JOBS['QUEUES'][{queue!r}]['concurrency']={concurrency!r}: "
            "use a whole number of at least 1, or leave it out for no limit."
        )
    rate = options.get("rate_limit")
    return QueueGate(
        queue,
        concurrency=concurrency,
        rate=None
        if rate is None
        else parse_rate(rate, what=f"DURABLE_JOBS['QUEUES'][{queue!r}]['rate_limit']"),
    )


@lru_cache(maxsize=1)
def queue_gates() -> tuple[QueueGate, ...]:
    """The limited queues of this process's settings (cached until the setting changes)."""
    queues = app_settings.QUEUES
    if not isinstance(queues, Mapping):
        return ()
    gates = (parse_queue_options(name, options) for name, options in queues.items())
    return tuple(gate for gate in gates if gate.concurrency is not None or gate.rate is not None)


@receiver(setting_changed)
def _forget_gates(*, setting: str, **kwargs: Any) -> None:
    if setting == "DURABLE_JOBS":
        queue_gates.cache_clear()


def rate_limits_declared() -> bool:
    """Whether any registered job or any queue of the settings has a rate limit."""
    return any(gate.rate is not None for gate in queue_gates()) or job_rate_limits_declared()


def job_rate_limits_declared() -> bool:
    """Whether any job definition of this process has a rate limit.

    Decides whether the claim enforces job rate limits at all: a process whose
    code declares none (the common case) keeps the plain claim. A job row can
    carry a limit only if some code declared it; during the deploy that adds a
    project's first rate limit, workers still on the old code run those jobs
    without it until they restart.
    """
    from .registry import all_definitions

    return any(definition.rate_limit for definition in all_definitions().values())


def check_rate(key: Any, rate: RateLimit | None) -> None:
    """A ``rate_key`` needs a rate limit, and is a template or a function."""
    if rate is None:
        raise InvalidJobOptions(
            "rate_key needs a rate limit: declare the job with @job(rate_limit='100/m', ...)."
        )
    if not (isinstance(key, str) and key) and not callable(key):
        raise InvalidJobOptions(
            f"rate_key={key!r} must be a non-empty string (a template such as "
            "'api:{account_id}') or a function of the job's arguments."
        )


def job_rate_key(name: str, template: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The start-log key of one enqueue: per job name, or per filled ``rate_key``."""
    from .uniqueness import concurrency_key

    if template is None:
        return JOB_KEY_PREFIX + name
    text = concurrency_key(template, args, kwargs, what="rate_key")
    assert text is not None
    return CUSTOM_KEY_PREFIX + text
