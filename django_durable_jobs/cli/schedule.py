"""``manage.py jobs schedule``: list the periodic entries, run one now, enable or disable one;
add, edit, remove, export and import the database entries (settings entries are read-only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand

from django_durable_jobs import schedule_entries
from django_durable_jobs.exceptions import DurableJobsError
from django_durable_jobs.scheduler import (
    ScheduleInfo,
    describe_schedules,
    run_schedule_now,
    set_schedule_enabled,
)

from .common import EXIT_INCOMPLETE, EXIT_OK, parse_duration, usage_error


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="List the periodic entries, run, enable or disable one; add, edit, remove, export "
        "and import database entries.",
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
        ("enable", True, "Enable an entry for every scheduler (a settings entry: an override)."),
        ("disable", False, "Disable an entry for every scheduler (a settings entry: an override)."),
        ("reset", None, "Forget a settings entry's enable/disable override: follow the settings."),
    ):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.set_defaults(handler=_set_enabled, enabled=enabled)

    add = actions.add_parser("add", help="Create a database entry (live: no restart needed).")
    add.add_argument("name")
    _entry_options(add, required=True)
    add.set_defaults(handler=_add)

    edit = actions.add_parser(
        "edit", help="Change options of a database entry; the others stay. '' resets one."
    )
    edit.add_argument("name")
    _entry_options(edit, required=False)
    edit.set_defaults(handler=_edit)

    remove = actions.add_parser("remove", help="Delete a database entry (its history stays).")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)

    export = actions.add_parser("export", help="Print the database entries as JSON or YAML.")
    export.add_argument("--format", choices=("json", "yaml"), default="json")
    export.add_argument("--tag", help="Only entries with this tag.")
    export.add_argument("--output", "-o", help="Write to this file instead of the output.")
    export.set_defaults(handler=_export)

    load = actions.add_parser(
        "import",
        help="Create or update database entries from a JSON or YAML file (all or none).",
    )
    load.add_argument("file", help="A file, or - for the standard input.")
    load.add_argument(
        "--format", choices=("json", "yaml"), help="Default: from the extension (else JSON)."
    )
    load.add_argument("--dry-run", action="store_true", help="Validate and report only.")
    load.set_defaults(handler=_import)


def _json(option: str, kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise usage_error(f"{option} {text!r} is not JSON: {exc}.") from None
        if not isinstance(value, kind):
            raise usage_error(f"{option} must be a JSON {kind.__name__}, not {text!r}.")
        return value

    return parse


def _entry_options(parser: Any, *, required: bool) -> None:
    parser.add_argument("--job", required=required, help="Dotted path of a @job.")
    parser.add_argument(
        "--schedule", required=required, help="'every 5 minutes', 'hourly', '30 2 * * *'..."
    )
    parser.add_argument("--timezone", help="IANA zone (default: TIME_ZONE).")
    # dest: Django's call_command passes its own "args" to handle().
    parser.add_argument("--args", dest="job_args", type=_json("--args", list), help="A JSON list.")
    parser.add_argument(
        "--kwargs", dest="job_kwargs", type=_json("--kwargs", dict), help="A JSON object."
    )
    parser.add_argument("--queue")
    parser.add_argument("--priority", type=int)
    parser.add_argument("--missed", choices=("latest", "skip", "catch_up"))
    parser.add_argument(
        "--max-delay", type=lambda text: parse_duration(text).total_seconds(), help="90s, 30m..."
    )
    parser.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--run-on-start", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--disabled", dest="enabled", action="store_false", default=None, help="Create it idle."
    )
    parser.add_argument(
        "--tag", action="append", dest="tags", help="A tag (repeat it; replaces the tags)."
    )
    if not required:
        parser.add_argument("--no-tags", action="store_true", help="Remove every tag.")
    parser.add_argument("--description")


_SPEC_OPTIONS = {
    **{key: key for key in ("job", "schedule", "timezone", "queue", "priority", "missed")},
    **{key: key for key in ("max_delay", "overlap", "run_on_start", "enabled", "tags")},
    "args": "job_args",
    "kwargs": "job_kwargs",
}


def _spec(options: dict[str, Any]) -> dict[str, Any]:
    spec = {
        key: options[dest] for key, dest in _SPEC_OPTIONS.items() if options.get(dest) is not None
    }
    if options.get("no_tags"):
        spec["tags"] = []
    return spec


def _problems(command: BaseCommand, exc: DurableJobsError) -> int:
    command.stderr.write(str(exc))
    return EXIT_INCOMPLETE


def _add(command: BaseCommand, options: dict[str, Any]) -> int:
    try:
        row = schedule_entries.add_entry(
            options["name"], _spec(options), description=options["description"] or ""
        )
    except DurableJobsError as exc:
        return _problems(command, exc)
    command.stdout.write(
        f"Schedule {row.name!r} created (version {row.version}); every running scheduler "
        f"picks it up within {schedule_entries.RELOAD_INTERVAL:g}s."
    )
    return EXIT_OK


def _edit(command: BaseCommand, options: dict[str, Any]) -> int:
    changes = _spec(options)
    for key in ("timezone", "queue"):  # '' resets to the default
        if options.get(key) == "":
            changes[key] = None
    if not changes and options["description"] is None:
        raise usage_error("jobs schedule edit: give at least one option to change.")
    try:
        row = schedule_entries.edit_entry(
            options["name"], changes, description=options["description"]
        )
    except DurableJobsError as exc:
        return _problems(command, exc)
    command.stdout.write(f"Schedule {row.name!r} changed (version {row.version}).")
    return EXIT_OK


def _remove(command: BaseCommand, options: dict[str, Any]) -> int:
    try:
        schedule_entries.remove_entry(options["name"])
    except DurableJobsError as exc:
        return _problems(command, exc)
    command.stdout.write(f"Schedule {options['name']!r} removed (its ticks stay in the ledger).")
    return EXIT_OK


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise usage_error(
            "YAML needs PyYAML, which is not installed: pip install pyyaml, or use --format json."
        ) from None
    return yaml


def _export(command: BaseCommand, options: dict[str, Any]) -> int:
    entries = schedule_entries.export_entries(tag=options["tag"])
    if options["format"] == "yaml":
        text = _yaml().safe_dump(entries, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
    if options["output"]:
        Path(options["output"]).write_text(text, encoding="utf-8")
        command.stdout.write(f"Wrote {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}.")
    else:
        command.stdout.write(text, ending="")
    return EXIT_OK


def _import(command: BaseCommand, options: dict[str, Any]) -> int:
    name = options["file"]
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise usage_error(f"cannot read {name}: {exc.strerror or exc}.") from None
    kind = options["format"] or ("yaml" if name.endswith((".yaml", ".yml")) else "json")
    try:
        data = _yaml().safe_load(text) if kind == "yaml" else json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise usage_error(f"{name} is not valid {kind.upper()}: {exc}") from None
    except Exception as exc:
        raise usage_error(f"{name} is not valid {kind.upper()}: {exc}") from None
    try:
        result = schedule_entries.import_entries(data, dry_run=options["dry_run"])
    except DurableJobsError as exc:
        return _problems(command, exc)
    verb = "would " if options["dry_run"] else ""
    command.stdout.write(
        f"{verb}create {len(result.created)}, {verb}update {len(result.updated)}, "
        f"{len(result.unchanged)} unchanged."
    )
    for label, names in (("created", result.created), ("updated", result.updated)):
        for entry in names:
            command.stdout.write(f"  {label}: {entry}")
    return EXIT_OK


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
        "source": info.source,
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
        if info.source == "database":
            title += "  [database]"
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
