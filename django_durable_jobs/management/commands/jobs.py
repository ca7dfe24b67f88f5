"""``manage.py jobs <subcommand>``: operate jobs, queues and schedules from the shell."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_durable_jobs.cli import SUBCOMMANDS


class Command(BaseCommand):
    help = "Inspect and operate jobs, queues and schedules (see 'jobs <subcommand> --help')."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="subcommand", metavar="subcommand")
        for name in SUBCOMMANDS:
            importlib.import_module(f"django_durable_jobs.cli.{name}").register(subparsers)

    def handle(self, *args: Any, **options: Any) -> None:
        handler = options.get("handler")
        if handler is None:
            self.print_help("manage.py", "jobs")
            sys.exit(2)
        status = handler(self, options)
        if status:
            sys.exit(status)
