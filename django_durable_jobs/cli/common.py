"""What the ``manage.py jobs`` subcommands share: exit codes, filters, durations, tables.

Exit codes (documented in docs/howto/operate-from-the-cli.md):

* ``0``: done: everything asked for was done (or the system is healthy);
* ``1``: not everything: some jobs were refused or not found, more remain
  past ``--limit``, ``show`` found no such job, or ``health`` found a problem;
* ``2``: the command line is wrong (unknown option, bad duration, no target).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

from ..constants import JobStatus
from ..operations import JobFilter

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_USAGE)


#: The longest duration a command takes (a century): beyond it, datetime arithmetic fails.
_MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` or combinations like ``1h30m``.

    Positive and finite only: ``--older-than -5`` would otherwise mean "finished
    before 5 seconds from now", which is every finished job.
    """
    value = text.strip().lower()
    parts = _DURATION_PART.findall(value)
    if parts and "".join(number + unit for number, unit in parts) == value:
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    else:
        try:
            seconds = float(value) if _PLAIN_NUMBER.fullmatch(value) else float("nan")
        except ValueError:
            seconds = float("nan")
    if not (0 < seconds <= _MAX_SECONDS):  # also false for NaN
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a positive amount such as 90s, 15m, 12h, 7d, "
            "2w or 1h30m (at most 100 years)"
        )
    return timedelta(seconds=seconds)


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (``--max-ready-age``)."""
    return parse_duration(text).total_seconds()


def _statuses(text: str) -> list[str]:
    values = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [value for value in values if value not in JobStatus.values]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown status {', '.join(unknown)}; use {', '.join(JobStatus.values)}"
        )
    return values


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """``--status``, ``--queue``, ``--name`` (repeatable or comma-separated) and time ranges."""
    group = parser.add_argument_group("filters (a job must match all of them)")
    group.add_argument("--status", type=_statuses, action="append", default=[], metavar="S")
    group.add_argument("--queue", type=_names, action="append", default=[], metavar="Q")
    group.add_argument("--name", type=_names, action="append", default=[], metavar="JOB")
    group.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="AGE",
        help="finished more than AGE ago (e.g. 7d)",
    )
    group.add_argument(
        "--finished-within", type=parse_duration, metavar="AGE", help="finished in the last AGE"
    )
    group.add_argument(
        "--enqueued-within", type=parse_duration, metavar="AGE", help="enqueued in the last AGE"
    )


def _flatten(lists: Sequence[Sequence[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for values in lists for value in values))


def filter_from_options(options: dict[str, Any], *, now: datetime | None = None) -> JobFilter:
    now = now or timezone.now()

    def ago(key: str) -> datetime | None:
        value = options.get(key)
        return now - value if value is not None else None

    return JobFilter(
        statuses=_flatten(options.get("status") or []),
        queues=_flatten(options.get("queue") or []),
        names=_flatten(options.get("name") or []),
        finished_before=ago("older_than"),
        finished_after=ago("finished_within"),
        enqueued_after=ago("enqueued_within"),
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def write_json(command: Any, data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    # json escapes C0 controls; escape C1 and the bidi overrides as well (valid JSON).
    command.stdout.write(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


#: Characters in job data that a terminal would act on (escape sequences, cursor and
#: bidirectional controls): shown as escapes, never written raw.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: Any) -> str:
    """``text`` safe to print on a terminal: control characters as ``\\x1b``-style escapes.

    Job names, errors and tracebacks come from job code and arguments: an error
    message must not be able to retitle, clear or rewrite the operator's terminal.
    Newlines and tabs are kept.
    """
    return _UNSAFE.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def format_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m 3s``, ``2h 10m``, ``3d 4h``."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    for size, unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "m"),
        (60, "m", 1, "s"),
    ):
        if seconds >= size:
            rest = (seconds % size) // small
            return (
                f"{seconds // size}{unit} {rest}{small_unit}"
                if rest
                else f"{seconds // size}{unit}"
            )
    return f"{seconds}s"


def clip(text: str | None, width: int) -> str:
    text = printable(" ".join((text or "").split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def add_confirmation_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--yes",
        "--no-input",
        "--noinput",
        dest="yes",
        action="store_true",
        help="do not ask for confirmation (needed without a terminal)",
    )


def confirm(command: Any, options: dict[str, Any], what: str) -> None:
    """Ask before a destructive change, as Django's ``flush`` does; raise unless confirmed.

    Without a terminal (a script, cron) nothing is asked and nothing is done
    unless ``--yes`` (``--no-input``) was given: a mistyped command in a script
    must not act by itself.
    """
    if options.get("yes"):
        return
    try:
        on_a_terminal = sys.stdin.isatty()
    except (AttributeError, OSError, ValueError):  # replaced or closed stdin
        on_a_terminal = False
    if not on_a_terminal:
        raise usage_error(
            f"this would {what}; nothing was done. Add --yes (or --no-input) to do it "
            "without a terminal, or --dry-run to look first."
        )
    command.stdout.write(f"This will {what}.")
    answer = input("Type 'yes' to continue, or anything else to cancel: ")
    if answer.strip().lower() != "yes":
        raise CommandError("Cancelled: nothing was done.", returncode=EXIT_INCOMPLETE)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cells = [[printable(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [
        all(_is_number(row[i]) for row in cells) and bool(cells) for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(row) for row in cells)])


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[~]?[\d,]+\+?|-", text))
