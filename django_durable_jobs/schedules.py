"""Periodic schedules: fire times in a time zone, and the helpers for settings.py.

Pure Python (croniter and zoneinfo): ``settings.py`` can import the helpers
(``every_minute("shop.jobs.x")``...) without touching models or settings.

Fire times are computed on the wall clock of the schedule's zone and returned
as UTC instants. Around daylight-saving changes (see docs/howto/periodic-jobs.md):

* a wall time that does not exist (spring forward) fires once, at the instant
  the clock jumps (02:30 in New York on the spring-forward night fires at 03:00 EDT);
* a wall time that happens twice (fall back) fires once, at its first occurrence;
* except for schedules that run in every hour (their hour field is ``*``):
  they follow real time, so a skipped hour has no ticks and a repeated hour
  ticks twice, like any other hour.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import DurableJobsError
from .schedule_grammar import InvalidSchedule, describe_cron, to_cron

if TYPE_CHECKING:
    from croniter import croniter

__all__ = [
    "InvalidSchedule",
    "Schedule",
    "UnknownTimeZone",
    "cron",
    "daily",
    "every",
    "every_minute",
    "hourly",
    "monthly",
    "parse_schedule",
    "weekly",
]


class UnknownTimeZone(DurableJobsError, ValueError):
    """A time zone name is not an IANA zone known to this system."""


_MAX_SHIFT = timedelta(hours=3)  # more than any daylight-saving change
_SAMPLE = timedelta(hours=6)  # less than the time between two changes of one zone
_SECOND = timedelta(seconds=1)


def _croniter(expression: str, start: datetime) -> croniter:
    # Imported here, not at the top: croniter and dateutil are half a megabyte
    # of memory in every worker, and only projects with cron schedules need them.
    from croniter import croniter

    return croniter(expression, start, second_at_beginning=len(expression.split(" ")) == 6)


def get_zone(name: Any) -> ZoneInfo:
    """The IANA zone called ``name``; a clear error when there is none."""
    if isinstance(name, ZoneInfo):
        return name
    if isinstance(name, str) and name.strip():
        try:
            return ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise UnknownTimeZone(
        f"timezone={name!r} is not a known IANA time zone: use a name such as 'UTC', "
        "'Europe/Paris' or 'America/New_York' (the tzdata package provides them where the "
        "system has none)."
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Transition:
    """A change of a zone's UTC offset at the instant ``at``."""

    at: datetime
    before: timedelta
    after: timedelta


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When an entry fires: a cron expression on the wall clock of ``zone``.

    ``next_after`` and ``previous`` return UTC instants, whole seconds, and
    apply the daylight-saving rules of the module docstring.
    """

    text: str
    expression: str
    zone: ZoneInfo
    every_hour: bool  # the hour field matches every hour: follow real time through DST

    # -- the zone ------------------------------------------------------------
    def _offset(self, instant: datetime) -> timedelta:
        return self.zone.utcoffset(instant.astimezone(self.zone)) or timedelta(0)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _transitions(self, start: datetime, end: datetime) -> list[_Transition]:
        """Offset changes in (start, end], found by sampling, then bisection to the second."""
        found: list[_Transition] = []
        left, left_offset = start, self._offset(start)
        while left < end:
            right = min(left + _SAMPLE, end)
            right_offset = self._offset(right)
            if right_offset != left_offset:
                low, high = left, right  # offset(low) is the old one, offset(high) the new one
                while high - low > _SECOND:
                    middle = low + (high - low) / 2
                    middle = middle.replace(microsecond=0)
                    if middle <= low:
                        middle = low + _SECOND
                    if self._offset(middle) == left_offset:
                        low = middle
                    else:
                        high = middle
                found.append(_Transition(high, left_offset, right_offset))
            left, left_offset = right, right_offset
        return found

    def _fall_backs(self, start: datetime, end: datetime) -> list[_Transition]:
        return [t for t in self._transitions(start, end) if t.after < t.before]

    # -- one wall time -------------------------------------------------------
    def _first_instant(self, wall: datetime) -> datetime | None:
        """Where a wall time fires: once, or never (a skipped hour of an every-hour schedule)."""
        fold0 = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        fold1 = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if fold0 == fold1 or self._wall(fold0) == wall:
            return fold0  # exists once, or twice (fold=0 is then the first occurrence)
        # Does not exist: it fires when the clock jumps, unless the schedule follows real time.
        return None if self.every_hour else self._gap_containing(wall).at

    def _gap_containing(self, wall: datetime) -> _Transition:
        """The change that skipped ``wall``: it happened between the two readings of it.

        In a gap, fold=0 reads a wall time with the offset from before the change
        (a later instant) and fold=1 with the offset from after it (an earlier one).
        """
        before_change = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        after_change = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        return self._transitions(before_change, after_change)[0]

    # -- the fire times ------------------------------------------------------
    def next_after(self, instant: datetime) -> datetime:
        """The first fire time strictly after ``instant`` (an aware datetime)."""
        instant = instant.astimezone(UTC)
        best = self._next_first_occurrence(instant)
        if self.every_hour:
            for change in self._fall_backs(instant - _MAX_SHIFT, best):
                second = self._next_in_repeat(change, instant)
                if second is not None and second < best:
                    best = second
        return best

    def _next_first_occurrence(self, instant: datetime) -> datetime:
        local = instant.astimezone(self.zone)
        if local.fold:
            # In the second pass of a repeated hour: every wall time up to the end of the
            # repeat already fired (its first occurrence); continue after it.
            (change,) = self._fall_backs(instant - _MAX_SHIFT, instant)[-1:]
            start = (change.at + change.before).replace(tzinfo=None) - _SECOND
        else:
            start = local.replace(tzinfo=None, microsecond=0)
        it = _croniter(self.expression, start)
        while True:
            wall = it.get_next(datetime)
            fire = self._first_instant(wall)
            if fire is None:  # skipped hour of an every-hour schedule: go past it
                change = self._gap_containing(wall)
                it = _croniter(
                    self.expression, (change.at + change.after).replace(tzinfo=None) - _SECOND
                )
                continue
            if fire > instant:
                return fire

    def _next_in_repeat(self, change: _Transition, instant: datetime) -> datetime | None:
        """The first second-occurrence fire time after ``instant`` in this repeated hour."""
        repeat_start = (change.at + change.after).replace(tzinfo=None)
        repeat_end = (change.at + change.before).replace(tzinfo=None)
        after = (instant + change.after).replace(tzinfo=None, microsecond=0)
        wall = _croniter(self.expression, max(repeat_start - _SECOND, after)).get_next(datetime)
        if wall < repeat_end:
            return (wall - change.after).replace(tzinfo=UTC)
        return None

    def previous(self, instant: datetime) -> datetime | None:
        """The last fire time at or before ``instant``; None if there is none."""
        instant = instant.astimezone(UTC)
        best = self._previous_first_occurrence(instant)
        if self.every_hour:
            since = (best if best is not None else instant - timedelta(days=366)) - _MAX_SHIFT
            for change in self._fall_backs(since, instant):
                second = self._previous_in_repeat(change, instant)
                if second is not None and (best is None or second > best):
                    best = second
        return best

    def _previous_first_occurrence(self, instant: datetime) -> datetime | None:
        local = instant.astimezone(self.zone)
        if local.fold:
            (change,) = self._fall_backs(instant - _MAX_SHIFT, instant)[-1:]
            end = (change.at + change.before).replace(tzinfo=None)
        else:
            end = local.replace(tzinfo=None, microsecond=0) + _SECOND
        from croniter import CroniterBadDateError

        it = _croniter(self.expression, end)
        while True:
            try:
                wall = it.get_prev(datetime)
            except CroniterBadDateError:  # croniter gives up after decades: nothing before
                return None
            fire = self._first_instant(wall)
            if fire is None:
                change = self._gap_containing(wall)
                it = _croniter(self.expression, (change.at + change.before).replace(tzinfo=None))
                continue
            if fire <= instant:
                return fire

    def _previous_in_repeat(self, change: _Transition, instant: datetime) -> datetime | None:
        repeat_start = (change.at + change.after).replace(tzinfo=None)
        repeat_end = (change.at + change.before).replace(tzinfo=None)
        until = (instant + change.after).replace(tzinfo=None, microsecond=0) + _SECOND
        wall = _croniter(self.expression, min(repeat_end, until)).get_prev(datetime)
        if wall >= repeat_start:
            return (wall - change.after).replace(tzinfo=UTC)
        return None

    def between(self, start: datetime, end: datetime, limit: int = 10_000) -> list[datetime]:
        """Fire times in (start, end], at most ``limit`` of them (the earliest)."""
        times: list[datetime] = []
        current = start
        while len(times) < limit:
            current = self.next_after(current)
            if current > end:
                break
            times.append(current)
        return times

    def upcoming(self, instant: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        for _ in range(count):
            instant = self.next_after(instant)
            times.append(instant)
        return times

    # -- in words ------------------------------------------------------------
    def describe(self) -> str:
        """The schedule in words, such as 'every day at 02:30' (the cron text as a fallback)."""
        return describe_cron(self.expression)


#: A numeric range of a cron field, with an optional step: ``5-10``, ``0-30/5``.
_RANGE = re.compile(r"(\d+)-(\d+)(?:/\d+)?")


def parse_schedule(text: str, timezone: str | tzinfo) -> Schedule:
    """Parse a schedule (keyword, macro, cron or English) on the wall clock of ``timezone``."""
    expression = to_cron(text)
    zone = get_zone(timezone if not isinstance(timezone, tzinfo) else str(timezone))
    seconds_first = len(expression.split(" ")) == 6
    for part in re.split(r"[ ,]", expression):
        bounds = _RANGE.fullmatch(part)
        if bounds and int(bounds[1]) > int(bounds[2]):
            start, end = bounds[1], bounds[2]
            raise InvalidSchedule(
                f"schedule={text!r} has the range {part!r}, which starts after it ends "
                f"(croniter would wrap it around). Write {end}-{start} if you meant that range, "
                f"or spell out a wrap-around as two ranges (for hours: {start}-23,0-{end}; for "
                f"minutes: {start}-59,0-{end})."
            )
    try:
        probe = _croniter(expression, datetime(2000, 1, 1))
        hours = probe.expanded[1]
        probe.get_next(datetime)
    except Exception as exc:
        if "failed to find" in str(exc):
            raise InvalidSchedule(
                f"schedule={text!r} never fires (no date matches it): check the day and month."
            ) from None
        raise InvalidSchedule(
            f"schedule={text!r} is not a valid cron expression ({exc}). Fields: "
            + (
                "second minute hour day month weekday"
                if seconds_first
                else "minute hour day month weekday"
            )
            + ", for example '30 2 * * *'."
        ) from None
    every_hour = hours == ["*"] or set(hours) == set(range(24))
    return Schedule(text=str(text), expression=expression, zone=zone, every_hour=every_hour)


# -- helpers for settings.py ------------------------------------------------------------
def every(
    schedule: str,
    job: str,
    *,
    name: str | None = None,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    timezone: str | None = None,
    enabled: bool = True,
    tags: list[str] | tuple[str, ...] = (),
    run_on_start: bool = False,
    missed: str = "latest",
    max_delay: float | timedelta | None = None,
    overlap: bool = True,
) -> dict[str, Any]:
    """A PERIODIC entry for ``job`` (dotted path or job name) on ``schedule``.

    Returns the plain dict the setting takes, so ``PERIODIC`` stays data; the
    system checks validate it. Only options that differ from the defaults are set.
    """
    entry: dict[str, Any] = {"job": job, "schedule": schedule}
    options: dict[str, tuple[Any, Any]] = {
        "name": (name, None),
        "args": (list(args) if isinstance(args, tuple) else args, []),
        "kwargs": (kwargs, None),
        "queue": (queue, None),
        "priority": (priority, None),
        "timezone": (timezone, None),
        "enabled": (enabled, True),
        "tags": (list(tags) if isinstance(tags, tuple) else tags, []),
        "run_on_start": (run_on_start, False),
        "missed": (missed, "latest"),
        "max_delay": (max_delay, None),
        "overlap": (overlap, True),
    }
    for key, (value, default) in options.items():
        if value != default or type(value) is not type(default):
            entry[key] = value
    return entry


def every_minute(job: str, **options: Any) -> dict[str, Any]:
    """Every minute, at second 0."""
    return every("every_minute", job, **options)


def hourly(job: str, **options: Any) -> dict[str, Any]:
    """Every hour, at minute 0."""
    return every("hourly", job, **options)


def daily(job: str, **options: Any) -> dict[str, Any]:
    """Every day at midnight in the entry's zone."""
    return every("daily", job, **options)


def weekly(job: str, **options: Any) -> dict[str, Any]:
    """Every Sunday at midnight in the entry's zone."""
    return every("weekly", job, **options)


def monthly(job: str, **options: Any) -> dict[str, Any]:
    """On the first day of every month at midnight in the entry's zone."""
    return every("monthly", job, **options)


def cron(expression: str, job: str, **options: Any) -> dict[str, Any]:
    """A cron expression: 5 fields, or 6 with the seconds first."""
    return every(expression, job, **options)
