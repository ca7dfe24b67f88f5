"""``jobs resume``: workers claim from these queues again."""

from __future__ import annotations

from typing import Any

from .common import add_json_argument
from .pause import set_paused


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "resume", help="resume paused queues", description="Let workers claim from these queues."
    )
    parser.add_argument("queues", nargs="+", metavar="QUEUE")
    add_json_argument(parser)
    parser.set_defaults(handler=lambda command, options: set_paused(command, options, False))
