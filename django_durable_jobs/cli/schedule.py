"""``manage.py jobs schedule``: list the periodic entries, run one now, enable or disable one."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand

from django_durable_jobs.exceptions import DurableJobsError
from django_durable_jobs.scheduler import (
    ScheduleInfo,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schedule", help="List the periodic entries, run one now, enable or disable one."
    )
    actions = parser.add_subparsers(dest="action", metavar="action")
    parser.set_defaults(handler=_help(parser))

    listing = actions.add_parser(
        "list", help="Each entry: schedule in words, zone, next fire times, last run, tags."
    )
    listing.add_argument("--tag", help="Only entries with this tag.")
    listing.add_argument(
        "--count", type=int, default=3, help="How many next fire times to show (default 3)."
    )
    listing.add_argument("--json", action="store_true", help="Print JSON, for scripts.")
    listing.set_defaults(handler=_list)

    run = actions.add_parser("run", help="Enqueue one run of an entry now.")
    run.add_argument("name")
    run.set_defaults(handler=_run)

    for action, enabled, text in (
        ("enable", True, "Enable an entry for every scheduler (overrides the settings)."),
        ("disable", False, "Disable an entry for every scheduler (overrides the settings)."),
        ("reset", None, "Forget the enable/disable override: follow the settings again."),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.set_defaults(handler=_set_enabled, enabled=enabled)


def _help(parser: Any):
    def show(command: BaseCommand, options: dict[str, Any]) -> int:
        parser.print_help(command.stdout)
        return 2

    return show


def _local(instant: datetime | None, zone: str) -> str:
    if instant is None:
        return "-"
    with contextlib.suppress(ValueError, KeyError):
        instant = instant.astimezone(ZoneInfo(zone))
    return instant.strftime("%Y-%m-%d %H:%M:%S %Z")


def _as_json(info: ScheduleInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "job": info.job,
        "schedule": info.schedule,
        "description": info.description,
        "timezone": info.timezone,
        "next_fire_times": [instant.isoformat() for instant in info.next_fire_times],
        "last_fire_time": info.last_fire_time.isoformat() if info.last_fire_time else None,
        "last_job_id": info.last_job_id,
        "last_status": info.last_status,
        "tags": list(info.tags),
        "enabled": info.enabled,
        "enabled_source": info.enabled_source,
        "missed": info.missed,
        "overlap": info.overlap,
        "problems": list(info.problems),
    }


def _list(command: BaseCommand, options: dict[str, Any]) -> int:
    infos = describe_schedules(count=max(options["count"], 0), tag=options["tag"])
    if options["json"]:
        command.stdout.write(json.dumps([_as_json(info) for info in infos], indent=2))
        return 0
    if not infos:
        command.stdout.write(
            "No periodic entries" + (f" tagged {options['tag']!r}." if options["tag"] else ".")
        )
        return 0
    style = command.style
    for info in infos:
        if info.problems:
            command.stdout.write(style.ERROR(f"{info.name}  BROKEN"))
            for problem in info.problems:
                command.stdout.write(f"  {problem}")
            continue
        state = "enabled" if info.enabled else "DISABLED"
        if info.enabled_override is not None:
            state += " (override; settings say " + (
                "enabled)" if info.enabled_in_settings else "disabled)"
            )
        title = f"{info.name}  {info.description} ({info.timezone})  {state}"
        command.stdout.write(style.SUCCESS(title) if info.enabled else style.WARNING(title))
        command.stdout.write(f"  job:  {info.job}")
        if info.tags:
            command.stdout.write(f"  tags: {', '.join(info.tags)}")
        nexts = ", ".join(_local(instant, info.timezone) for instant in info.next_fire_times)
        command.stdout.write(f"  next: {nexts or '-'}")
        if info.last_fire_time is None:
            command.stdout.write("  last: never ran")
        else:
            status = info.last_status or "job removed"
            command.stdout.write(
                f"  last: {_local(info.last_fire_time, info.timezone)}, job "
                f"#{info.last_job_id} {status}"
            )
    return 1 if any(info.problems for info in infos) else 0


def _run(command: BaseCommand, options: dict[str, Any]) -> int:
    try:
        job_id = run_schedule_now(options["name"])
    except DurableJobsError as exc:
        command.stderr.write(str(exc))
        return 1
    command.stdout.write(f"Enqueued job #{job_id} for schedule {options['name']!r}.")
    return 0


def _set_enabled(command: BaseCommand, options: dict[str, Any]) -> int:
    enabled = options["enabled"]
    try:
        set_schedule_enabled(options["name"], enabled)
    except DurableJobsError as exc:
        command.stderr.write(str(exc))
        return 1
    what = {True: "enabled", False: "disabled", None: "follows the settings again"}[enabled]
    command.stdout.write(f"Schedule {options['name']!r} {what} (for every scheduler).")
    return 0
