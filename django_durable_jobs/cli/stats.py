"""``jobs stats``: per-queue counts and backlog, workers, and the last hour's throughput."""

from __future__ import annotations

from typing import Any

from .. import operations
from ..constants import JobStatus
from ..db import get_backend
from ..operations.selection import jobs
from .common import EXIT_OK, add_json_argument, format_age, table, write_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="queues, workers and throughput",
        description="Counts per queue and status (exact up to 1,000, estimated above: ~N), the "
        "due backlog and its oldest job, workers and their heartbeats, jobs finished in the last "
        "hour.",
    )
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def handle(command: Any, options: dict[str, Any]) -> int:
    now = get_backend(jobs().db).db_now()
    queues = operations.queue_stats(now=now)
    workers = operations.worker_stats(now=now)
    series = operations.throughput(now=now)
    if options["json"]:
        write_json(
            command,
            {
                "at": now.isoformat(),
                "queues": [queue.as_dict() for queue in queues],
                "workers": [worker.as_dict() for worker in workers],
                "throughput": series.as_dict(),
            },
        )
        return EXIT_OK
    out = command.stdout.write
    out(
        table(
            ("QUEUE", "STATE", "DUE", "OLDEST DUE", *JobStatus.values),
            [
                (
                    queue.name,
                    "paused" if queue.paused else "active",
                    f"{queue.due:,}",
                    format_age(queue.oldest_due_age),
                    *(str(queue.counts[status]) for status in JobStatus.values),
                )
                for queue in queues
            ],
        )
    )
    out("")
    if workers:
        out(
            table(
                ("WORKER", "PID", "QUEUES", "THREADS", "RUNNING", "HEARTBEAT", "STATE"),
                [
                    (
                        worker.worker.hostname,
                        worker.worker.pid,
                        ",".join(worker.worker.queue_labels) or "all",
                        worker.worker.concurrency,
                        worker.running,
                        f"{format_age(worker.heartbeat_age)} ago",
                        "alive" if worker.alive else "stale",
                    )
                    for worker in workers
                ],
            )
        )
    else:
        out("No workers.")
    succeeded, failed = series.totals
    out("")
    out(
        f"Last hour: {succeeded:,} succeeded, {failed:,} failed attempts; last minute: "
        f"{series.succeeded[-1]:,} succeeded, {series.failed[-1]:,} failed attempts."
    )
    return EXIT_OK
