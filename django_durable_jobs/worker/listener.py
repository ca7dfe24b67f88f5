"""LISTEN/NOTIFY wake-ups (PostgreSQL): a NOTIFY for one of our queues wakes the claimer.

Once LISTEN is first set up, the listener sends itself a probe NOTIFY: behind a
pooler in transaction mode (PgBouncer's ``pool_mode = transaction``) the LISTEN
lands on a server connection that other clients then use, and notifications
never arrive. A missing probe is logged once, with the setting that fits;
polling keeps the worker working meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from ..connections import Backoff, close_connection
from ..db import Backend
from ..logutil import RateLimitedLog

logger = logging.getLogger("django_durable_jobs.worker")

#: Seconds the probe NOTIFY may take to come back before the worker says it did not.
PROBE_SECONDS = 3.0


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
        self.probed = False

    def _send_probe(self) -> str | None:
        """NOTIFY a unique payload from an ordinary connection (once per worker)."""
        if self.probed:
            return None
        self.probed = True
        payload = f"ddj-probe:{uuid.uuid4()}"
        try:
            self.backend.notify({payload})
        finally:
            close_connection(self.backend.alias)  # this thread needs no connection of its own
        return payload

    def _probe_missing(self) -> None:
        logger.warning(
            "LISTEN/NOTIFY does not reach this worker: a NOTIFY it sent itself did not arrive "
            "within %ss. Behind a transaction-pooling PgBouncer it cannot: set "
            "DURABLE_JOBS['LISTEN_NOTIFY'] = False (or runworker --no-listen). Meanwhile idle "
            "workers find new jobs by polling, every %ss.",
            PROBE_SECONDS,
            self.poll_interval,
        )

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            connection: Any = None
            try:
                connection = self.backend.listen_connection()
                self.wake.set()  # catch up on whatever was enqueued while not listening
                backoff.reset()
                self.log.recovered("listen", "LISTEN connection restored")
                probe = self._send_probe()
                probe_deadline = time.monotonic() + PROBE_SECONDS
                while not stop.is_set():
                    # A short timeout: shutdown waits for this thread to notice the stop.
                    for notification in connection.notifies(timeout=0.25):
                        if notification.payload == probe:
                            probe = None
                        elif self.queues is None or notification.payload in self.queues:
                            self.wake.set()
                    if probe is not None and time.monotonic() > probe_deadline:
                        probe = None
                        self._probe_missing()
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
