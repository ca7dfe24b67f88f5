"""Unique jobs and per-key concurrency: the keys, computed at enqueue.

Unique: at most one job with the same key among the chosen statuses, enforced
by a unique index (never by check-then-insert). The stored key is a hash of
the job's name and the key text, so any key fits the column and keys of two
job definitions never collide; the readable key is kept in ``meta``.

Per-key concurrency: at most ``concurrency_limit`` RUNNING jobs share a key,
enforced when jobs are claimed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from .constants import STATUS_BITS, JobStatus
from .exceptions import InvalidJobOptions

DEFAULT_STATES = (JobStatus.READY, JobStatus.RUNNING)
MAX_KEY_CHARS = 255


@dataclasses.dataclass(frozen=True)
class Unique:
    """How a job is unique.

    ``key``: a function of the job's arguments returning the key text (None:
    the arguments themselves). ``states``: the statuses in which a job blocks
    a duplicate (default READY and RUNNING; with ``period``, every status).
    ``period``: the key holds for one time window (a timedelta), so at most one
    job per window is enqueued, finished or not.
    """

    key: Callable[..., Any] | None = None
    states: Iterable[str] | None = None
    period: timedelta | float | None = None

    def __post_init__(self) -> None:
        if self.key is not None and not callable(self.key):
            raise InvalidJobOptions(f"Unique(key={self.key!r}) must be a function of the args.")
        for state in self.resolved_states():
            if state not in STATUS_BITS:
                raise InvalidJobOptions(
                    f"Unique(states=...) has {state!r}; use statuses from {list(STATUS_BITS)}."
                )
        if self.period is not None and self.period_seconds() <= 0:
            raise InvalidJobOptions("Unique(period=...) must be a positive duration.")

    def resolved_states(self) -> tuple[str, ...]:
        if self.states is not None:
            return tuple(self.states)
        return tuple(STATUS_BITS) if self.period is not None else DEFAULT_STATES

    def period_seconds(self) -> float:
        period = self.period
        return period.total_seconds() if isinstance(period, timedelta) else float(period or 0)

    def bitmask(self) -> int:
        return sum(STATUS_BITS[state] for state in set(self.resolved_states()))


def as_unique(unique: bool | Unique | None) -> Unique | None:
    if unique is None or unique is False:
        return None
    if unique is True:
        return Unique()
    if isinstance(unique, Unique):
        return unique
    raise InvalidJobOptions(
        f"unique={unique!r} is invalid: use True (by arguments) or Unique(key=..., states=..., "
        "period=...)."
    )


def unique_key(
    name: str,
    unique: Unique,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    encoded_arguments: str,
    explicit_key: str | None = None,
) -> tuple[str, str]:
    """``(stored hash, readable key)`` for one enqueue."""
    if explicit_key is not None:
        text = str(explicit_key)
    elif unique.key is not None:
        text = str(unique.key(*args, **kwargs))
    else:
        text = encoded_arguments
    if unique.period is not None:
        seconds = unique.period_seconds()
        window = math.floor(timezone.now().timestamp() / seconds)
        text = f"{text} @{window * seconds:.0f}+{seconds:g}s"
    digest = hashlib.sha256(f"{name}\x00{text}".encode()).hexdigest()
    return digest, text[:MAX_KEY_CHARS]


def check_concurrency(key: Any, limit: Any) -> None:
    if key is None:
        if limit is not None:
            raise InvalidJobOptions("concurrency_limit needs a concurrency_key.")
        return
    if not (isinstance(key, str) or callable(key)):
        raise InvalidJobOptions(
            f"concurrency_key={key!r} must be a string (a template such as "
            "'customer:{customer_id}') or a function of the job's arguments."
        )
    if type(limit) is not int or not 1 <= limit <= 2**31 - 1:
        raise InvalidJobOptions(
            f"concurrency_limit={limit!r} is invalid: use an integer from 1 (one at a time) "
            f"to {2**31 - 1:,}."
        )


def concurrency_key(
    key: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, what: str = "concurrency_key"
) -> str | None:
    """The key text for one enqueue: a template filled from kwargs, or a function's result."""
    if key is None:
        return None
    if callable(key):
        text = str(key(*args, **kwargs))
    else:
        try:
            text = key.format(*args, **kwargs)
        except (KeyError, IndexError) as exc:
            raise InvalidJobOptions(
                f"{what} {key!r} names {exc} which this call does not pass; "
                "pass it as a keyword argument, or use a function."
            ) from None
    if not text or len(text) > MAX_KEY_CHARS:
        raise InvalidJobOptions(
            f"{what.replace('_', ' ')} {text!r} must be 1 to {MAX_KEY_CHARS} characters long."
        )
    return text
