"""A clock the test moves by hand, for schedulers running in threads."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest


class FakeClock:
    """``now()`` is what the test set; ``sleep()`` ends when the test moves time past it.

    ``wait_idle(n)`` returns once ``n`` schedulers are asleep and none of them has
    yet to react to the latest move of time.
    """

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._generation = 0
        # thread id -> (generation it fell asleep in, the time it sleeps until)
        self._asleep: dict[int, tuple[int, datetime]] = {}
        self._condition = threading.Condition()

    def now(self) -> datetime:
        with self._condition:
            return self._now

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        with self._condition:
            until = self._now + timedelta(seconds=seconds)
            me = threading.get_ident()
            self._asleep[me] = (self._generation, until)
            self._condition.notify_all()
            try:
                while self._now < until and not stop.is_set():
                    self._condition.wait(0.05)
            finally:
                self._asleep.pop(me, None)

    def set(self, instant: datetime) -> None:
        with self._condition:
            self._now = instant
            self._generation += 1
            self._condition.notify_all()

    def advance(self, delta: timedelta) -> None:
        self.set(self.now() + delta)

    def wait_idle(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._idle() < count:
                if time.monotonic() > deadline:
                    pytest.fail(f"{count} schedulers did not go idle within {timeout}s")
                self._condition.wait(0.05)

    def _idle(self) -> int:
        """Sleepers that reacted to the latest move of time, or that it did not wake."""
        return sum(
            generation == self._generation or until > self._now
            for generation, until in self._asleep.values()
        )
