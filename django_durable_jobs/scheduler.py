"""The scheduler: enqueue each due tick of the PERIODIC entries, once across every scheduler.

Every worker runs one (``runworker --no-scheduler`` opts out). No scheduler is
elected: all of them try each tick, and the ledger's unique (entry, fire time)
row, written in the job's transaction, lets exactly one win; the others are
quiet. Fire times are judged against the database clock, so hosts with skewed
clocks agree. A scheduler only handles the entries it knows, so during a
rolling deploy old and new workers never stop each other's entries.

``describe_schedules``, ``run_schedule_now`` and ``set_schedule_enabled``
(from ``schedule_ops``, re-exported here) are what ``manage.py jobs schedule``
and the admin call.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.db import DatabaseError

from .conf import app_settings
from .connections import close_all, close_connection, tidy_connections
from .ledger import (
    TICK_RETENTION,
    Clock,
    DatabaseClock,
    TickOutcome,
    active_run,
    enqueue_tick,
    iso_utc,
    last_fire_times,
    prune_ticks,
    recorded_between,
)
from .logutil import RateLimitedLog
from .models import ScheduleState
from .periodic import (
    CATCH_UP,
    LATEST,
    SKIP,
    PeriodicEntry,
    get_entries,
)
from .schedule_ops import (
    ScheduleBusy,
    ScheduleInfo,
    UnknownSchedule,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)

logger = logging.getLogger("django_durable_jobs.scheduler")

MAX_SLEEP = 60.0  # seconds: re-read the database clock at least this often
PRUNE_EVERY = timedelta(hours=1)
_TINY = timedelta(microseconds=1)


class Scheduler:
    """Enqueues the due ticks of ``entries`` (default: the PERIODIC setting).

    Raises ``PeriodicConfigError`` at construction when an entry is broken: a
    scheduler never runs with an entry silently left out. ``run(stop)`` loops
    until ``stop`` is set; ``run_pending()`` is one pass (for tests and tools).
    """

    def __init__(
        self,
        entries: list[PeriodicEntry] | None = None,
        *,
        database: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.entries = get_entries() if entries is None else list(entries)
        self.alias = database or app_settings.DATABASE
        self.clock: Clock = clock or DatabaseClock(self.alias)
        self._cursor: dict[str, datetime] = {}  # ticks up to here are handled
        self._next: dict[str, datetime] = {}
        self._force_latest: set[str] = set()  # run_on_start: the first pass enqueues the latest
        self._started = False
        self._pruned_at: datetime | None = None
        self._log = RateLimitedLog(logger)

    # -- the loop --------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Enqueue due ticks and sleep until the next one, until ``stop`` is set."""
        logger.info(
            "scheduler starting with %s entr%s: %s",
            len(self.entries),
            "y" if len(self.entries) == 1 else "ies",
            ", ".join(f"{e.name} ({e.schedule.describe()}, {e.zone_name})" for e in self.entries),
        )
        delay = 0.5
        try:
            while not stop.is_set():
                try:
                    tidy_connections()
                    seconds = self.run_pending()
                except Exception as exc:
                    if isinstance(exc, DatabaseError):
                        self._log.log(
                            logging.WARNING,
                            "trouble",
                            "scheduler: database unavailable (%s: %s); retrying with backoff",
                            type(exc).__name__,
                            str(exc).strip()[:300],
                        )
                    else:
                        self._log.log(
                            logging.ERROR, "trouble", "scheduler pass failed", exc_info=True
                        )
                    close_connection(self.alias)
                    self.clock.sleep(delay, stop)
                    delay = min(delay * 2, 15.0)
                    continue
                if delay > 0.5:
                    self._log.recovered("trouble", "scheduler: working again")
                delay = 0.5
                self.clock.sleep(seconds, stop)
        finally:
            close_all()

    def run_pending(self) -> float:
        """Enqueue every due tick; return the seconds until the next one (at most MAX_SLEEP)."""
        now = self.clock.now()
        if not self._started:
            self._start(now)
        names = [entry.name for entry in self.entries]
        overrides = dict(
            ScheduleState.objects.using(self.alias)
            .filter(name__in=names)
            .values_list("name", "enabled")
        )
        for entry in self.entries:
            if self._next[entry.name] <= now:
                override = overrides.get(entry.name)
                try:
                    self._handle(entry, now, entry.enabled if override is None else override)
                except DatabaseError:
                    raise  # the whole pass is retried
                except Exception:
                    # One entry's bug must not stop the others: say so loudly, move on.
                    self._log.log(
                        logging.ERROR,
                        f"entry {entry.name}",
                        "schedule %r: its due ticks up to %s could not be enqueued",
                        entry.name,
                        iso_utc(now),
                        exc_info=True,
                    )
                    self._cursor[entry.name] = now
                    self._next[entry.name] = entry.schedule.next_after(now)
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._prune(now)
        if not self.entries:
            return MAX_SLEEP
        wait = (min(self._next.values()) - now).total_seconds()
        return min(max(wait, 0.0), MAX_SLEEP)

    def _start(self, now: datetime) -> None:
        """Resume each entry after its newest ledger row (a new entry, or ``skip``: from now).

        ``run_on_start`` makes the first pass enqueue the most recent tick, unless the
        ledger already has it (or a later one), whatever the missed-tick policy says.
        """
        last = last_fire_times([entry.name for entry in self.entries], self.alias)
        for entry in self.entries:
            recorded = last.get(entry.name)
            cursor = now if recorded is None or entry.missed == SKIP else recorded
            if entry.run_on_start:
                previous = entry.schedule.previous(now)
                if previous is not None and (recorded is None or recorded < previous):
                    cursor = min(cursor, previous - _TINY)
                    self._force_latest.add(entry.name)
            self._cursor[entry.name] = cursor
            self._next[entry.name] = entry.schedule.next_after(cursor)
        self._started = True

    # -- one entry -------------------------------------------------------------
    def _handle(self, entry: PeriodicEntry, now: datetime, enabled: bool) -> None:
        """Apply the entry's missed-tick policy to its ticks in (cursor, now]."""
        cursor, latest = self._cursor[entry.name], entry.schedule.previous(now)
        assert latest is not None  # a tick is due, so there is one at or before now
        forced = entry.name in self._force_latest
        limit = None if forced else entry.lateness_limit
        earliest = now - timedelta(seconds=limit) if limit is not None else None
        if not enabled:
            ticks = [latest]
        elif entry.missed == CATCH_UP and not forced:
            start = max(cursor, earliest - _TINY) if earliest is not None else cursor
            ticks = entry.schedule.between(start, now)
        else:  # latest and skip: only the most recent tick, if it is not too late
            ticks = [latest] if earliest is None or latest >= earliest else []
        self._report_missed(entry, cursor, ticks[0] if ticks else now + _TINY, enabled)
        for fire_time in ticks:
            self._enqueue(entry, fire_time, enabled)
            self._cursor[entry.name] = fire_time
        self._cursor[entry.name] = now
        self._next[entry.name] = entry.schedule.next_after(now)
        self._force_latest.discard(entry.name)

    def _enqueue(self, entry: PeriodicEntry, fire_time: datetime, enabled: bool) -> None:
        result = enqueue_tick(entry, fire_time, self.alias, enabled=enabled)
        when = iso_utc(fire_time)
        if result.outcome is TickOutcome.ENQUEUED:
            logger.info("schedule %r: enqueued job #%s for %s", entry.name, result.job_id, when)
        elif result.outcome is TickOutcome.OVERLAP:
            logger.info(
                "schedule %r: tick %s skipped: the previous run (job #%s) is still pending and "
                "overlap=False",
                entry.name,
                when,
                result.blocking_job_id,
            )
        elif result.outcome is TickOutcome.DISABLED:
            logger.debug("schedule %r: tick %s skipped: disabled", entry.name, when)
        else:
            logger.debug("schedule %r: tick %s taken by another scheduler", entry.name, when)

    def _report_missed(
        self, entry: PeriodicEntry, cursor: datetime, first_run: datetime, enabled: bool
    ) -> None:
        """Warn about ticks before ``first_run`` that no scheduler enqueued (never silent)."""
        if not enabled:
            return
        limit = 10_000
        skipped = entry.schedule.between(cursor, first_run - _TINY, limit=limit)
        if not skipped:
            return
        missing = len(skipped) - recorded_between(
            entry.name, cursor, skipped[-1] + _TINY, self.alias
        )
        if missing <= 0:
            return
        reason = {
            LATEST: "missed='latest' runs only the most recent tick",
            SKIP: "missed='skip' resumes with the next tick",
            CATCH_UP: f"they are older than max_delay={entry.max_delay or 0:g}s",
        }[entry.missed]
        logger.warning(
            "schedule %r: %s%s tick(s) from %s to %s were missed (no scheduler ran them) and "
            "are not enqueued: %s",
            entry.name,
            "at least " if len(skipped) == limit else "",
            missing,
            iso_utc(skipped[0]),
            iso_utc(skipped[-1]),
            reason,
        )

    def _prune(self, now: datetime) -> None:
        delays = [entry.max_delay or 0.0 for entry in self.entries]
        keep = max(TICK_RETENTION, timedelta(seconds=2 * max(delays, default=0.0)))
        deleted = prune_ticks(self.alias, now, keep)
        if deleted:
            logger.debug("scheduler: pruned %s old ledger rows", deleted)
        self._pruned_at = now


__all__ = [
    "Clock",
    "DatabaseClock",
    "ScheduleBusy",
    "ScheduleInfo",
    "Scheduler",
    "UnknownSchedule",
    "active_run",
    "describe_schedules",
    "run_schedule_now",
    "set_schedule_enabled",
]
