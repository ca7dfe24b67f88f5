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
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_USAGE)


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` or combinations like ``1h30m``."""
    value = text.strip().lower()
    try:
        return timedelta(seconds=float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use e.g. 90s, 15m, 12h, 7d, 2w or 1h30m"
        )
    return timedelta(seconds=sum(float(number) * _UNITS[unit] for number, unit in parts))


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
    command.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))


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
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cells = [[str(value) for value in row] for row in rows]
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
