"""``jobs list``: the newest jobs matching filters, as a table or JSON."""

from __future__ import annotations

from typing import Any

from ..db.expressions import LastHistoryMessage
from ..models import Job
from ..operations import select
from .common import (
    EXIT_OK,
    add_filter_arguments,
    add_json_argument,
    clip,
    filter_from_options,
    format_time,
    table,
    usage_error,
    write_json,
)

MAX_LIMIT = 10_000
_COLUMNS = (
    "id",
    "name",
    "queue",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "run_at",
    "enqueued_at",
    "started_at",
    "finished_at",
    "worker_id",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list jobs, newest first",
        description="List jobs, newest first, without their arguments (see 'jobs show ID'). "
        "Example: jobs list --status FAILED --queue emails --limit 20",
    )
    add_filter_arguments(parser)
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def job_summary(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {column: getattr(job, column) for column in _COLUMNS}
    data["worker_id"] = str(job.worker_id) if job.worker_id else None
    data["duration"] = job.duration
    data["last_error"] = getattr(job, "last_message", None)
    return data


def handle(command: Any, options: dict[str, Any]) -> int:
    limit = options["limit"]
    if not 1 <= limit <= MAX_LIMIT:
        raise usage_error(f"--limit must be between 1 and {MAX_LIMIT:,}")
    selection = select(filter_from_options(options))
    rows = list(
        selection.queryset.only(*_COLUMNS)
        .annotate(last_message=LastHistoryMessage(300))
        .order_by("-id")[:limit]
    )
    if options["json"]:
        write_json(command, [job_summary(job) for job in rows])
        return EXIT_OK
    if not rows:
        command.stdout.write(f"No jobs ({selection.description}).")
        return EXIT_OK
    command.stdout.write(
        table(
            (
                "ID",
                "NAME",
                "QUEUE",
                "STATUS",
                "ATTEMPTS",
                "RUN AT",
                "FINISHED",
                "SECONDS",
                "LAST ERROR",
            ),
            [
                (
                    job.id,
                    clip(job.name, 40),
                    job.queue,
                    job.status,
                    f"{job.attempts}/{job.max_attempts}",
                    format_time(job.run_at),
                    format_time(job.finished_at),
                    f"{job.duration:.3f}" if job.duration is not None else "-",
                    clip(job.last_message, 50) if job.status != "SUCCESSFUL" else "",
                )
                for job in rows
            ],
        )
    )
    if len(rows) == limit:
        command.stdout.write(f"(the newest {limit}; --limit shows more)")
    return EXIT_OK
