"""The shape shared by ``retry``, ``cancel`` and ``run-now``: ids or a filter, then a report."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from typing import Any

from ..operations import OperationResult
from .common import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_confirmation_argument,
    add_filter_arguments,
    add_json_argument,
    confirm,
    filter_from_options,
    usage_error,
    write_json,
)

Operation = Callable[..., OperationResult]


def register_job_action(
    subparsers: Any, name: str, operation: Operation, *, help: str, description: str
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument("ids", nargs="*", metavar="ID", help="job ids (or use the filters)")
    add_filter_arguments(parser)
    parser.add_argument(
        "--limit", type=int, metavar="N", help="act on at most N jobs (exit 1 if more match)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count the jobs it would act on; change nothing"
    )
    add_confirmation_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(
        handler=lambda command, options: run_job_action(command, options, operation)
    )
    return parser


def actor() -> str:
    """Who is acting, for the job's history: the shell user."""
    try:
        return f"{getpass.getuser()} (cli)"
    except Exception:  # no user name in some containers
        return "cli"


def run_job_action(command: Any, options: dict[str, Any], operation: Operation) -> int:
    ids = options["ids"]
    job_filter = filter_from_options(options)
    if ids and not job_filter.is_empty:
        raise usage_error("give job ids or filters, not both")
    if not ids and job_filter.is_empty:
        raise usage_error(
            "name the jobs: give ids, or at least one filter (--status, --queue, --name, ...)"
        )
    limit = options.get("limit")
    if limit is not None and limit < 1:
        raise usage_error("--limit must be at least 1")
    try:
        if not ids and not options["dry_run"]:  # a filter: say what it matches, and ask
            preview = operation(job_filter, limit=limit, dry_run=True)
            verb = options["subcommand"].replace("-", " ")
            confirm(command, options, f"{verb} {preview.count_text()} ({job_filter.describe()})")
        result = operation(
            ids or job_filter, actor=actor(), limit=limit, dry_run=options["dry_run"]
        )
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if options["json"]:
        write_json(command, result.as_dict())
    else:
        command.stdout.write(result.summary())
    return EXIT_OK if result.complete else EXIT_INCOMPLETE
