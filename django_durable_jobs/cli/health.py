"""``jobs health``: exit 0 when healthy, 1 when not; for container health checks."""

from __future__ import annotations

import socket
from typing import Any

from django.db import DatabaseError

from .. import operations
from .common import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_json_argument,
    format_age,
    positive_seconds,
    usage_error,
    write_json,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "health",
        help="exit 1 unless workers are alive and backlogs are fresh",
        description="Healthy (exit 0) when at least --min-workers workers have a heartbeat "
        "within LEASE_SECONDS and no active queue's oldest due job has waited longer than "
        "--max-ready-age seconds (default DURABLE_JOBS['HEALTH_MAX_READY_AGE']). Paused queues "
        "never fail the check. Exit 1 otherwise, or when the database cannot be reached.",
    )
    parser.add_argument("--min-workers", type=int, default=1, metavar="N")
    parser.add_argument("--max-ready-age", type=positive_seconds, metavar="SECONDS")
    parser.add_argument("--queue", action="append", default=[], metavar="Q")
    hosts = parser.add_mutually_exclusive_group()
    hosts.add_argument("--host", metavar="NAME", help="count only workers on this host")
    hosts.add_argument(
        "--this-host", action="store_true", help="count only workers on this machine/container"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing; use the exit code")
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def handle(command: Any, options: dict[str, Any]) -> int:
    if options["min_workers"] < 0:
        raise usage_error("--min-workers must be 0 or more")
    age = options["max_ready_age"]
    if age is not None and age <= 0:
        raise usage_error("--max-ready-age must be more than 0 seconds")
    host = socket.gethostname()[:255] if options["this_host"] else options["host"]
    try:
        report = operations.check_health(
            min_workers=options["min_workers"],
            max_ready_age=age,
            queues=options["queue"] or None,
            host=host,
        )
    except DatabaseError as exc:
        if not options["quiet"]:
            command.stderr.write(f"UNHEALTHY: the jobs' database cannot be reached: {exc}")
        return EXIT_INCOMPLETE
    if options["quiet"]:
        return EXIT_OK if report.healthy else EXIT_INCOMPLETE
    if options["json"]:
        write_json(command, report.as_dict())
    else:
        head = "OK" if report.healthy else "UNHEALTHY"
        command.stdout.write(
            f"{head}: {report.workers_alive} worker(s) alive, {report.workers_stale} stale"
        )
        for problem in report.problems:
            command.stdout.write(f"  - {problem}")
        for queue in report.queues:
            state = " (paused)" if queue["paused"] else ""
            command.stdout.write(
                f"  queue {queue['name']}{state}: {queue['due']:,} due, oldest waiting "
                f"{format_age(queue['oldest_due_age'])}"
            )
    return EXIT_OK if report.healthy else EXIT_INCOMPLETE
