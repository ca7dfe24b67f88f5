"""LISTEN/NOTIFY wake-ups (PostgreSQL): a NOTIFY for one of our queues wakes the claimer."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..connections import Backoff
from ..db import Backend
from ..logutil import RateLimitedLog

logger = logging.getLogger("django_durable_jobs.worker")


class Listener:
    """A thread's loop on its own LISTEN connection; polling covers the gaps while it is down."""

    def __init__(
        self,
        backend: Backend,
        *,
        queues: list[str] | None,
        wake: threading.Event,
        poll_interval: float,
        log: RateLimitedLog,
    ) -> None:
        self.backend = backend
        self.queues = queues
        self.wake = wake
        self.poll_interval = poll_interval
        self.log = log

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            connection: Any = None
            try:
                connection = self.backend.listen_connection()
                self.wake.set()  # catch up on whatever was enqueued while not listening
                backoff.reset()
                self.log.recovered("listen", "LISTEN connection restored")
                while not stop.is_set():
                    # A short timeout: shutdown waits for this thread to notice the stop.
                    for notification in connection.notifies(timeout=0.25):
                        if self.queues is None or notification.payload in self.queues:
                            self.wake.set()
            except Exception as exc:
                self.log.log(
                    logging.WARNING,
                    "listen",
                    "LISTEN connection lost (%s); polling every %ss until it is back",
                    str(exc).strip()[:300],
                    self.poll_interval,
                )
                stop.wait(backoff.next())
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        logger.debug("closing the LISTEN connection failed", exc_info=True)
