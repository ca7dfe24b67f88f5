"""The schedule grammar: keywords, cron macros, cron and English, to cron and back to words.

Pure Python, no Django: ``to_cron`` turns what a PERIODIC entry says into a
cron expression (5 fields, or 6 with the seconds first); ``describe_cron``
says it in words for ``manage.py jobs schedule list`` and the admin (the shapes
people write most; anything else is shown as the cron text).
"""

from __future__ import annotations

import re

from .constants import docs_url
from .exceptions import DurableJobsError


class InvalidSchedule(DurableJobsError, ValueError):
    """A schedule string is not in the grammar, or never fires."""


KEYWORDS = {
    "every_minute": "* * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
WEEKDAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

_AT = r"(?:\s+at\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
_EVERY_UNIT = re.compile(r"^every\s+(?:(?P<n>\d+)\s+)?(?P<unit>second|minute|hour)s?$")
_EVERY_HOUR_AT = re.compile(r"^every\s+hour\s+at\s+minute\s+(?P<minute>\d{1,2})$")
_EVERY_DAY = re.compile(r"^(?:every\s+day|daily)" + _AT + "$")
_EVERY_WEEKDAY = re.compile(
    r"^every\s+(?P<day>" + "|".join(WEEKDAYS) + r"|weekday|weekend\s+day)" + _AT + "$"
)
_EVERY_MONTH = re.compile(r"^every\s+month(?:\s+on\s+day\s+(?:(?P<dom>\d{1,2})))?" + _AT + "$")

_DIVISORS = {"second": 60, "minute": 60, "hour": 24}

_NUMBER = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/(\d+)$")
_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def _time_fields(match: re.Match[str]) -> tuple[int, int, int]:
    if match.group("hour") is None:
        return 0, 0, 0
    hour, minute = int(match.group("hour")), int(match.group("minute"))
    second = int(match.group("second") or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidSchedule(f"{match.string!r}: the time of day must be 00:00 to 23:59:59.")
    return hour, minute, second


def _cron_at(second: int, minute: int, hour: str, rest: str) -> str:
    """A cron expression, with a seconds field only when it is needed."""
    if second:
        return f"{second} {minute} {hour} {rest}"
    return f"{minute} {hour} {rest}"


def _from_english(text: str) -> str | None:
    """The cron expression for an English schedule, or None when ``text`` is not English."""
    if match := _EVERY_UNIT.match(text):
        unit, n = match.group("unit"), int(match.group("n") or 1)
        whole = _DIVISORS[unit]
        if not 1 <= n < whole or whole % n:
            period = {
                "second": "a minute (60 seconds)",
                "minute": "an hour (60 minutes)",
                "hour": "a day (24 hours)",
            }[unit]
            divisors = [str(d) for d in range(1, whole) if whole % d == 0]
            raise InvalidSchedule(
                f"schedule={text!r}: {n} does not divide {period}, so the ticks could not all "
                f"be {n} {unit}s apart. Use every {', '.join(divisors[:-1])} or {divisors[-1]} "
                f"{unit}s, or a cron expression if uneven gaps are fine."
            )
        step = "*" if n == 1 else f"*/{n}"
        return {
            "second": f"{step} * * * * *",
            "minute": f"{step} * * * *",
            "hour": f"0 {step} * * *",
        }[unit]
    if match := _EVERY_HOUR_AT.match(text):
        minute = int(match.group("minute"))
        if minute > 59:
            raise InvalidSchedule(f"{text!r}: the minute must be 0 to 59.")
        return f"{minute} * * * *"
    if match := _EVERY_DAY.match(text):
        hour, minute, second = _time_fields(match)
        return _cron_at(second, minute, str(hour), "* * *")
    if match := _EVERY_WEEKDAY.match(text):
        hour, minute, second = _time_fields(match)
        day = match.group("day")
        if day == "weekday":
            days = "1-5"
        elif day.startswith("weekend"):
            days = "0,6"
        else:
            days = str(WEEKDAYS.index(day))
        return _cron_at(second, minute, str(hour), f"* * {days}")
    if match := _EVERY_MONTH.match(text):
        hour, minute, second = _time_fields(match)
        dom = int(match.group("dom") or 1)
        if not 1 <= dom <= 31:
            raise InvalidSchedule(f"{text!r}: the day of the month must be 1 to 31.")
        return _cron_at(second, minute, str(hour), f"{dom} * *")
    return None


def to_cron(text: str) -> str:
    """The normalised cron expression (5 fields, or 6 with the seconds first) for ``text``."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchedule(f"schedule={text!r}: use a keyword, a cron expression or English.")
    normal = " ".join(text.strip().split())
    lowered = normal.lower()
    if lowered in KEYWORDS:
        return KEYWORDS[lowered]
    if lowered in MACROS:
        return MACROS[lowered]
    if lowered.startswith(("every", "daily ")):
        english = _from_english(lowered)
        if english is None:
            raise InvalidSchedule(
                f"schedule={text!r} is not in the English grammar: use for example "
                "'every 15 seconds', 'every 5 minutes', 'every 2 hours', 'every day at 04:30', "
                "'every monday at 09:00', 'every weekday at 08:00' or 'every month on day 1 "
                f"at 06:00' (see {docs_url('howto/periodic-jobs.md')})."
            )
        return english
    fields = normal.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"schedule={text!r} is not a schedule: use a keyword ({', '.join(KEYWORDS)}), a "
            "macro (@hourly...), a cron expression of 5 fields (minute hour day month weekday) "
            "or 6 fields (second first), or English such as 'every 5 minutes'."
        )
    return normal


def _numbers(field: str) -> list[int] | None:
    """The values of a field made of numbers and commas, else None."""
    parts = field.split(",")
    if all(_NUMBER.match(part) for part in parts):
        return sorted({int(part) for part in parts})
    return None


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _times(second: str, minute: str, hour: str) -> str | None:
    seconds, minutes, hours = _numbers(second), _numbers(minute), _numbers(hour)
    if seconds is None or minutes is None or hours is None or len(seconds) > 1:
        return None
    if len(minutes) * len(hours) > 6:
        return None
    pattern = "{:02d}:{:02d}" + (":{:02d}" if seconds[0] else "")
    return _join([pattern.format(h, m, seconds[0]) for h in hours for m in minutes])


def _days(dom: str, month: str, dow: str) -> str | None:
    if dom == "*" and month == "*" and dow == "*":
        return "every day"
    if dom == "*" and month == "*":
        if dow == "1-5":
            return "every weekday"
        days = _numbers(dow)
        if days is None or any(day > 7 for day in days):
            return None
        names = sorted({day % 7 for day in days})
        if names == [0, 6]:
            return "every Saturday and Sunday"
        return "every " + _join([_DAYS[day] for day in names])
    if dow != "*":
        return None
    days = _numbers(dom)
    if days is None or any(not 1 <= day <= 31 for day in days):
        return None
    ordinal = "day " + _join([str(day) for day in days])
    if month == "*":
        return f"on {ordinal} of every month"
    months = _numbers(month)
    if months is None or any(not 1 <= m <= 12 for m in months):
        return None
    return f"every year on {ordinal} of {_join([_MONTHS[m - 1] for m in months])}"


def describe_cron(expression: str) -> str:
    """``expression`` (5 fields, or 6 with seconds first) in words, or ``cron <expression>``."""
    fields = expression.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return f"cron {expression}"
    second, minute, hour, dom, month, dow = fields
    rest_any = dom == month == dow == "*"
    if rest_any and minute == hour == "*":
        if second == "*":
            return "every second"
        if step := _STEP.match(second):
            return f"every {step.group(1)} seconds"
        if second == "0":
            return "every minute"
    if rest_any and second == "0" and hour == "*":
        if step := _STEP.match(minute):
            return f"every {step.group(1)} minutes"
        if _NUMBER.match(minute):
            return "every hour" + (f" at minute {int(minute)}" if int(minute) else "")
    if rest_any and second == "0" and _NUMBER.match(minute) and (step := _STEP.match(hour)):
        at = f" at minute {int(minute)}" if int(minute) else ""
        return f"every {step.group(1)} hours{at}"
    times = _times(second, minute, hour)
    days = _days(dom, month, dow)
    if times is not None and days is not None:
        return f"{days} at {times}"
    return f"cron {expression}"
