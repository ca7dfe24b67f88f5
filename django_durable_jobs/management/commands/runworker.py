"""``manage.py runworker``: parse options, then hand over to ``Worker`` or ``Supervisor``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from typing import Any

from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_durable_jobs.conf import app_settings
from django_durable_jobs.db import get_backend
from django_durable_jobs.logutil import JobContextFilter, JsonLogFormatter
from django_durable_jobs.periodic import PeriodicConfigError
from django_durable_jobs.scheduler import Scheduler
from django_durable_jobs.worker import Worker
from django_durable_jobs.worker.fairness import QueueSelection, parse_queues


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _megabytes(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(text)
    return value


#: Options passed on from a supervisor to its children, with their argparse destinations.
_CHILD_OPTIONS = {
    "--queues": "queues",
    "--concurrency": "concurrency",
    "--max-jobs": "max_jobs",
    "--max-memory": "max_memory",
    "--shutdown-timeout": "shutdown_timeout",
    "--poll-interval": "poll_interval",
    "--log-level": "log_level",
    "--log-format": "log_format",
    "--settings": "settings",
    "--pythonpath": "pythonpath",
}


class Command(BaseCommand):
    help = "Run background jobs until stopped (SIGTERM/SIGINT: finish running jobs, then exit)."
    # The checks a worker depends on: the models, and the settings (ours are
    # tagged compatibility). The URL, template and admin checks import the whole
    # URLconf and admin for nothing a worker runs: 50 ms of start-up and 0.7 MB of
    # memory in every worker process. `manage.py check` and runserver still run them.
    requires_system_checks = [Tags.models, Tags.compatibility]

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            default="",
            metavar="QUEUE[:WEIGHT],...",
            help="Comma-separated queues to take jobs from (default: all queues), by priority "
            "then age across them. With weights (emails:3,reports:1; a queue without one has "
            "weight 1), each claim is shared among the queues by weight, so a busy queue "
            "cannot starve another.",
        )
        parser.add_argument(
            "--concurrency",
            type=_positive_int,
            default=None,
            help="Jobs run at once, one thread each (default: DURABLE_JOBS['CONCURRENCY']).",
        )
        parser.add_argument(
            "--processes",
            type=_positive_int,
            default=None,
            help="Run this many worker processes under a supervisor that restarts them, "
            "gives a crashed one's jobs back at once, and kills one stuck at shutdown.",
        )
        parser.add_argument(
            "--burst", action="store_true", help="Exit (status 0) once no job is ready."
        )
        parser.add_argument(
            "--max-jobs",
            type=_positive_int,
            default=None,
            help="Exit after running this many jobs (with --processes: restart the process).",
        )
        parser.add_argument(
            "--max-memory",
            type=_megabytes,
            default=None,
            metavar="MB",
            help="Recycle the process once it holds more than this many MB of resident "
            "memory: it stops claiming, lets its running jobs finish, then re-executes "
            "itself (with --processes: each child, restarted by the supervisor).",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=_seconds,
            default=None,
            help="Seconds running jobs get to finish after SIGTERM before they are released "
            "(default: DURABLE_JOBS['SHUTDOWN_TIMEOUT']).",
        )
        parser.add_argument(
            "--poll-interval",
            type=_seconds,
            default=None,
            help="Seconds between looks for jobs when idle "
            "(default: DURABLE_JOBS['POLL_INTERVAL']).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="For development: restart the worker when a Python file changes, as "
            "runserver does; running jobs finish first (up to --shutdown-timeout).",
        )
        parser.add_argument(
            "--no-listen",
            action="store_true",
            help="Do not use LISTEN/NOTIFY (for example behind a transaction-pooling PgBouncer).",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_true",
            help="Do not run the periodic scheduler in this worker (it runs by default; any "
            "number of workers may run it, each tick is enqueued once).",
        )
        parser.add_argument(
            "--log-level",
            default="INFO",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="Level of the worker's own log lines when LOGGING does not configure them.",
        )
        parser.add_argument(
            "--log-format",
            default="text",
            choices=["text", "json"],
            help="Format of those lines: text, or json (one object per line, with the job's "
            "id, name, queue, attempt, duration and outcome on the lines about a job).",
        )
        # Set by a supervisor for its children.
        parser.add_argument("--worker-id", type=uuid.UUID, help=argparse.SUPPRESS)
        parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            queues = parse_queues(options["queues"])
        except ValueError as exc:
            raise CommandError(f"--queues {options['queues']}: {exc}") from exc
        self._configure_logging(options["log_level"], options["log_format"])
        if options["reload"]:
            if options["processes"]:
                raise CommandError("--reload runs one worker process: drop --processes.")
            from django_durable_jobs.worker import reloading  # the autoreloader: only here

            reloading.run_with_reloader(lambda **kw: self._worker(queues, options, **kw))
            return
        if options["processes"]:
            self._check_schedules(options)  # before any child, not in each child
            code = self._supervise(options)
        else:
            code = self._worker(queues, options).run()
        if code:
            sys.exit(code)

    def _worker(
        self,
        queues: QueueSelection,
        options: dict[str, Any],
        *,
        install_signal_handlers: bool = True,
    ) -> Worker:
        supervised = options["supervisor_pid"] is not None
        try:
            return Worker(
                queues=queues.weights or queues.names,
                concurrency=options["concurrency"],
                burst=options["burst"],
                max_jobs=options["max_jobs"],
                max_memory=options["max_memory"],
                shutdown_timeout=options["shutdown_timeout"],
                poll_interval=options["poll_interval"],
                listen=False if options["no_listen"] else None,
                worker_id=options["worker_id"],
                recycle="exit" if supervised else "exec",
                parent_pid=options["supervisor_pid"],
                scheduler=not options["no_scheduler"],
                install_signal_handlers=install_signal_handlers,
            )
        except PeriodicConfigError as exc:
            raise CommandError(f"{exc}\n(Or start with --no-scheduler.)") from exc

    def _check_schedules(self, options: dict[str, Any]) -> None:
        if options["no_scheduler"] or not app_settings.PERIODIC:
            return
        try:
            Scheduler(database=app_settings.DATABASE)
        except PeriodicConfigError as exc:
            raise CommandError(f"{exc}\n(Or start with --no-scheduler.)") from exc

    def _supervise(self, options: dict[str, Any]) -> int:
        from django_durable_jobs.worker.supervisor import Supervisor  # only with --processes

        prefix = self._command_prefix()
        flags = []
        for flag, dest in _CHILD_OPTIONS.items():
            if options.get(dest) not in (None, ""):
                flags += [flag, str(options[dest])]
        flags += ["--burst"] if options["burst"] else []
        flags += ["--no-listen"] if options["no_listen"] else []
        flags += ["--no-scheduler"] if options["no_scheduler"] else []

        def child_argv(worker_id: uuid.UUID) -> list[str]:
            return [
                *prefix,
                *flags,
                "--worker-id",
                str(worker_id),
                "--supervisor-pid",
                str(os.getpid()),
            ]

        shutdown_timeout = options["shutdown_timeout"]
        return Supervisor(
            processes=options["processes"],
            child_argv=child_argv,
            backend=get_backend(app_settings.DATABASE),
            shutdown_timeout=(
                app_settings.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
            ),
            burst=options["burst"],
        ).run()

    @staticmethod
    def _command_prefix() -> list[str]:
        """How this command was started, up to ``runworker`` (interpreter options included)."""
        argv = list(sys.orig_argv)
        if "runworker" in argv:
            return [sys.executable, *argv[1 : argv.index("runworker") + 1]]
        return [sys.executable, "-m", "django", "runworker"]

    def _configure_logging(self, level: str, log_format: str) -> None:
        """Show the worker's log lines unless the project's LOGGING already routes them."""
        package_logger = logging.getLogger("django_durable_jobs")
        if package_logger.handlers or logging.getLogger().handlers:
            return
        handler = logging.StreamHandler(self.stderr._out)  # type: ignore[call-overload]
        if log_format == "json":
            handler.setFormatter(JsonLogFormatter())
            handler.addFilter(JobContextFilter())
        else:
            handler.setFormatter(
                logging.Formatter(
                    "%(asctime)s %(levelname)s [%(process)d %(threadName)s] %(name)s: %(message)s"
                )
            )
        package_logger.addHandler(handler)
        package_logger.setLevel(level)
