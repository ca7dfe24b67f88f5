"""``jobs pause``: workers stop claiming from these queues (running jobs finish)."""

from __future__ import annotations

from typing import Any

from .. import operations
from .common import EXIT_OK, add_json_argument, usage_error, write_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pause",
        help="pause queues",
        description="Workers stop claiming jobs from these queues at their next poll; running "
        "jobs finish and new jobs are still accepted.",
    )
    parser.add_argument("queues", nargs="+", metavar="QUEUE")
    add_json_argument(parser)
    parser.set_defaults(handler=lambda command, options: set_paused(command, options, True))


def set_paused(command: Any, options: dict[str, Any], paused: bool) -> int:
    operation = operations.pause if paused else operations.resume
    try:
        change = operation(options["queues"])
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if options["json"]:
        write_json(command, change.as_dict())
    else:
        command.stdout.write(change.summary())
    return EXIT_OK
