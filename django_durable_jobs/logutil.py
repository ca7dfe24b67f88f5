"""The package's logging helpers: rate-limited outage lines, job fields, JSON lines."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime


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
    formats, or to ship them as fields of structured logs. Outside a job they are ``"-"``,
    except on the worker's own lines about a job (its outcome), which carry them already.
    It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "job_id"):
            return True  # a worker line about a job: its fields are set
        from .context import current_job

        context = current_job()
        record.job_id = context.job_id if context else "-"
        record.job_name = context.name if context else "-"
        record.job_queue = context.queue if context else "-"
        record.job_attempt = context.attempt if context else "-"
        return True


#: Record attributes a JSON line carries when they are set (not ``"-"``).
JOB_FIELDS = ("job_id", "job_name", "job_queue", "job_attempt", "duration", "outcome", "trace_id")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (``runworker --log-format json``), for log stacks that parse.

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process``,
    ``thread``, the job's fields where the line is about a job (``JOB_FIELDS``; add
    ``JobContextFilter`` for the lines a job's own code logs), and ``exception``
    (the formatted traceback) when there is one.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for field in JOB_FIELDS:
            value = getattr(record, field, None)
            if value is not None and value != "-":
                data[field] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
