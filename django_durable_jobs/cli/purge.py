"""``jobs purge``: delete finished jobs, by the retention settings or by a filter."""

from __future__ import annotations

from typing import Any

from .. import operations
from ..db import get_backend
from ..operations.batches import COUNT_CAP, capped_count
from ..operations.selection import jobs
from .common import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_confirmation_argument,
    add_filter_arguments,
    add_json_argument,
    confirm,
    filter_from_options,
    format_age,
    usage_error,
    write_json,
)
from .job_action import actor


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "purge",
        help="delete finished jobs",
        description="Without filters: delete finished jobs past DURABLE_JOBS['RETENTION'] now "
        "(what workers do in the background). With filters: delete the finished jobs that match, "
        "e.g. jobs purge --status SUCCESSFUL --older-than 7d. READY and RUNNING jobs are never "
        "purged.",
    )
    add_filter_arguments(parser)
    parser.add_argument("--limit", type=int, metavar="N", help="delete at most N jobs")
    parser.add_argument("--dry-run", action="store_true", help="count; delete nothing")
    add_confirmation_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def handle(command: Any, options: dict[str, Any]) -> int:
    job_filter = filter_from_options(options)
    limit = options.get("limit")
    if limit is not None and limit < 1:
        raise usage_error("--limit must be at least 1")
    if job_filter.is_empty:
        return _by_retention(command, options)
    if not options["dry_run"]:
        preview = operations.purge(job_filter, limit=limit, dry_run=True)
        confirm(command, options, f"delete {preview.count_text()} ({job_filter.describe()})")
    result = operations.purge(job_filter, actor=actor(), limit=limit, dry_run=options["dry_run"])
    if options["json"]:
        write_json(command, result.as_dict())
    else:
        command.stdout.write(result.summary())
    return EXIT_OK if result.complete else EXIT_INCOMPLETE


def _by_retention(command: Any, options: dict[str, Any]) -> int:
    if options.get("limit") is not None:
        raise usage_error("--limit needs a filter; retention purges everything it allows")
    periods = operations.retention_periods()
    now = get_backend(jobs().db).db_now()
    report: dict[str, Any] = {}
    for status, period in periods.items():
        if period is None:
            report[status] = {"retention_seconds": None, "deleted": 0}
            continue
        entry: dict[str, Any] = {"retention_seconds": period.total_seconds()}
        if options["dry_run"]:
            expired = jobs().filter(status=status, finished_at__lt=now - period)
            count, exact = capped_count(expired, COUNT_CAP)
            entry.update(would_delete=count, at_least=not exact)
        report[status] = entry
    if not options["dry_run"]:
        confirm(command, options, "delete the finished jobs past DURABLE_JOBS['RETENTION']")
        result = operations.prune_expired(now=now, periods=periods)
        for status, count in result.deleted.items():
            report[status]["deleted"] = count
    if options["json"]:
        write_json(command, {"dry_run": options["dry_run"], "by_status": report})
        return EXIT_OK
    for status, entry in report.items():
        seconds = entry["retention_seconds"]
        kept = "kept forever" if seconds is None else f"kept {format_age(seconds)}"
        if options["dry_run"] and seconds is not None:
            plus = "+" if entry["at_least"] else ""
            command.stdout.write(
                f"{status}: {kept}; {entry['would_delete']:,}{plus} would be deleted"
            )
        else:
            command.stdout.write(f"{status}: {kept}; {entry.get('deleted', 0):,} deleted")
    return EXIT_OK
