"""The scheduler: enqueue each due tick of the periodic entries, once across every scheduler.

Every worker runs one (``runworker --no-scheduler`` opts out). No scheduler is
elected: all of them try each tick, and the ledger's unique (entry, fire time)
row, written in the job's transaction, lets exactly one win; the others are
quiet. Fire times are judged against the database clock, so hosts with skewed
clocks agree. A scheduler only handles the entries it knows, so during a
rolling deploy old and new workers never stop each other's entries.

Entries come from the PERIODIC setting (fixed for the process) and from the
database (``ScheduleEntry``), re-read without a restart: every
``RELOAD_INTERVAL`` seconds one query tells whether any changed
(``schedule_entries``). An added or re-enabled entry starts like an entry of
a starting scheduler; an edited one keeps its place (ticks up to the edit are
handled) and continues on its new schedule.

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
from .schedule_entries import RELOAD_INTERVAL, DatabaseEntries, LoadedEntry, settings_names
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
    """Enqueues the due ticks of ``entries`` (default: the PERIODIC setting), and of the
    database entries when ``live`` (default: when ``entries`` is not given).

    Raises ``PeriodicConfigError`` at construction when a settings entry is broken: a
    scheduler never runs with an entry silently left out (a broken database entry is
    logged and left out: it was valid when saved, the code changed since).
    ``run(stop)`` loops until ``stop`` is set; ``run_pending()`` is one pass (for
    tests and tools).
    """

    def __init__(
        self,
        entries: list[PeriodicEntry] | None = None,
        *,
        database: str | None = None,
        clock: Clock | None = None,
        live: bool | None = None,
    ) -> None:
        self.fixed = get_entries() if entries is None else list(entries)
        self.entries = list(self.fixed)
        self.alias = database or app_settings.DATABASE
        live = entries is None if live is None else live
        self.database_entries = (
            DatabaseEntries(self.alias, {e.name for e in self.fixed} | settings_names())
            if live
            else None
        )
        self._reload_at: datetime | None = None
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
            "scheduler starting with %s entr%s from settings%s%s",
            len(self.fixed),
            "y" if len(self.fixed) == 1 else "ies",
            "".join(
                f"{', ' if i else ': '}{e.name} ({e.schedule.describe()}, {e.zone_name})"
                for i, e in enumerate(self.fixed)
            ),
            f"; database entries re-read every {RELOAD_INTERVAL:g}s"
            if self.database_entries is not None
            else "",
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
            if self.database_entries is not None:
                self.database_entries.refresh()
                self.entries = self.fixed + [r.entry for r in self._database_rows() if r.entry]
                self._reload_at = now + timedelta(seconds=RELOAD_INTERVAL)
            self._start(now)
        elif self._reload_at is not None and now >= self._reload_at:
            self._reload(now)
        # Operator overrides are for settings entries (a database entry has its own flag).
        names = [entry.name for entry in self.fixed]
        overrides = (
            dict(
                ScheduleState.objects.using(self.alias)
                .filter(name__in=names)
                .values_list("name", "enabled")
            )
            if names
            else {}
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
        if self.entries and (self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY):
            self._prune(now)
        limit = MAX_SLEEP
        if self._reload_at is not None:
            limit = min(limit, max((self._reload_at - now).total_seconds(), 0.0))
        if not self.entries:
            return limit
        wait = (min(self._next.values()) - now).total_seconds()
        return min(max(wait, 0.0), limit)

    # -- the database entries --------------------------------------------------
    def _database_rows(self) -> list[LoadedEntry]:
        assert self.database_entries is not None
        active = self.database_entries.active()
        return [active[name] for name in sorted(active)]

    def _reload(self, now: datetime) -> None:
        """Apply the database entries' changes since the last poll (one query if none)."""
        assert self.database_entries is not None
        self._reload_at = now + timedelta(seconds=RELOAD_INTERVAL)
        if not self.database_entries.refresh():
            return
        fixed = {entry.name for entry in self.fixed}
        before = {entry.name: entry for entry in self.entries if entry.name not in fixed}
        rows = self._database_rows()
        current = {row.name: row for row in rows}
        for name in before.keys() - current.keys():
            self._cursor.pop(name, None)
            self._next.pop(name, None)
            self._force_latest.discard(name)
            logger.info("schedule %r: removed or disabled in the database", name)
        added = [row.entry for row in rows if row.name not in before and row.entry is not None]
        for row in rows:
            old = before.get(row.name)
            if old is not None and row.entry is not None and old != row.entry:
                # Ticks up to the edit belonged to the old schedule: go on from there.
                cursor = max(self._cursor[row.name], min(row.since, now))
                self._cursor[row.name] = cursor
                self._next[row.name] = row.entry.schedule.next_after(cursor)
                logger.info(
                    "schedule %r: changed in the database: %s (%s)",
                    row.name,
                    row.entry.schedule.describe(),
                    row.entry.zone_name,
                )
        self.entries = self.fixed + [row.entry for row in rows if row.entry is not None]
        if added:
            self._start(now, added, {row.name: row.since for row in rows})
            for entry in added:
                logger.info(
                    "schedule %r: added or enabled in the database: %s (%s)",
                    entry.name,
                    entry.schedule.describe(),
                    entry.zone_name,
                )

    def _start(
        self,
        now: datetime,
        entries: list[PeriodicEntry] | None = None,
        since: dict[str, datetime] | None = None,
    ) -> None:
        """Resume each entry after its newest ledger row (a new entry, or ``skip``: from now).

        ``run_on_start`` makes the first pass enqueue the most recent tick, unless the
        ledger already has it (or a later one), whatever the missed-tick policy says.
        A database entry without ledger rows starts when it was saved (``since``), so
        the ticks between its creation and a scheduler's next poll are not lost.
        """
        entries = self.entries if entries is None else entries
        if since is None and self.database_entries is not None:
            since = {row.name: row.since for row in self._database_rows()}
        since = since or {}
        last = last_fire_times([entry.name for entry in entries], self.alias)
        for entry in entries:
            recorded = last.get(entry.name)
            if recorded is None:
                cursor = min(now, since.get(entry.name, now))
            else:
                cursor = now if entry.missed == SKIP else recorded
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
