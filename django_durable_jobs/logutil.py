"""Logging that stays readable during an outage: repeats are counted, not printed."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Log a message at most once per ``interval`` seconds per key; count the rest."""

    def __init__(self, logger: logging.Logger, interval: float = 30.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, message: str, *args: object, exc_info: bool = False):
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        self.logger.log(level, message, *args, exc_info=exc_info)

    def recovered(self, key: str, message: str, *args: object) -> None:
        """Log that the condition behind ``key`` is over, if it was ever logged."""
        with self._lock:
            if self._last.pop(key, None) is None:
                return
            self._suppressed.pop(key, None)
        self.logger.warning(message, *args)


class JobContextFilter(logging.Filter):
    """Add ``job_id``, ``job_name``, ``job_queue`` and ``job_attempt`` to records logged in a job.

    Attach it to a handler (``LOGGING["filters"]``) to use ``%(job_id)s`` and the others in
    formats, or to ship them as fields of structured logs. Outside a job they are ``"-"``.
    It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from .context import current_job

        context = current_job()
        record.job_id = context.job_id if context else "-"
        record.job_name = context.name if context else "-"
        record.job_queue = context.queue if context else "-"
        record.job_attempt = context.attempt if context else "-"
        return True
