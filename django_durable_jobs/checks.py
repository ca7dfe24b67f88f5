"""System checks for the ``DURABLE_JOBS`` setting; ids are stable and listed in the docs.

A bad setting is an error at startup (``manage.py check``, ``runserver``,
``runworker``), not a surprise at the first job.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from datetime import timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections
from django.utils.module_loading import import_string

from .conf import DEFAULTS
from .constants import QUEUE_NAME_PATTERN, JobStatus

_QUEUE_RE = re.compile(QUEUE_NAME_PATTERN)

ID = "django_durable_jobs.{}"


def _error(code: str, msg: str, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, obj="settings.DURABLE_JOBS", id=ID.format(code))


def _number(value: Any, *, minimum: float, strict: bool = False, integer: bool = False) -> bool:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return False
    return value > minimum if strict else value >= minimum


_NUMBERS: dict[str, dict[str, Any]] = {
    "CONCURRENCY": {"minimum": 1, "integer": True},
    "DEFAULT_MAX_ATTEMPTS": {"minimum": 1, "integer": True},
    "MAX_PAYLOAD_BYTES": {"minimum": 0, "integer": True},
    "POLL_INTERVAL": {"minimum": 0, "strict": True},
    "LEASE_SECONDS": {"minimum": 0, "strict": True},
    "HEARTBEAT_INTERVAL": {"minimum": 0, "strict": True},
    "SHUTDOWN_TIMEOUT": {"minimum": 0},
    "RETRY_BASE_DELAY": {"minimum": 0},
    "RETRY_MAX_DELAY": {"minimum": 0},
    "RETRY_JITTER": {"minimum": 0},
}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    user = getattr(settings, "DURABLE_JOBS", {})
    if not isinstance(user, dict):
        return [_error("E001", f"DURABLE_JOBS must be a dict, not {type(user).__name__}.")]
    errors: list[CheckMessage] = []
    for key in sorted(set(user) - set(DEFAULTS)):
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        errors.append(
            _error(
                "E002",
                f"DURABLE_JOBS has an unknown key {key!r}.",
                f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}.",
            )
        )
    values = {**DEFAULTS, **user}
    for key, rules in _NUMBERS.items():
        if not _number(values[key], **rules):
            kind = "an integer" if rules.get("integer") else "a number"
            bound = ">" if rules.get("strict") else ">="
            errors.append(
                _error(
                    "E003",
                    f"DURABLE_JOBS[{key!r}] is {values[key]!r}; it must be {kind} "
                    f"{bound} {rules['minimum']}.",
                    f"Remove it to use the default ({DEFAULTS[key]!r}).",
                )
            )
    prefetch = values["PREFETCH"]
    if prefetch is not None and not _number(prefetch, minimum=0, integer=True):
        errors.append(
            _error(
                "E003", f"DURABLE_JOBS['PREFETCH'] is {prefetch!r}; use an integer >= 0 or None."
            )
        )
    timeout = values["DEFAULT_TIMEOUT"]
    if timeout is not None and not _number(timeout, minimum=0, strict=True):
        errors.append(
            _error(
                "E003", f"DURABLE_JOBS['DEFAULT_TIMEOUT'] is {timeout!r}; use seconds > 0 or None."
            )
        )
    lease, beat = values["LEASE_SECONDS"], values["HEARTBEAT_INTERVAL"]
    if (
        _number(lease, minimum=0, strict=True)
        and _number(beat, minimum=0, strict=True)
        and lease < 2 * beat
    ):
        errors.append(
            _error(
                "E004",
                "DURABLE_JOBS['LEASE_SECONDS'] must be at least twice HEARTBEAT_INTERVAL, or "
                "one late heartbeat makes a healthy worker look dead and its jobs run twice.",
                f"LEASE_SECONDS is {lease}, HEARTBEAT_INTERVAL is {beat}.",
            )
        )
    age = values["HEALTH_MAX_READY_AGE"]
    if age is not None and not _number(age, minimum=0, strict=True):
        errors.append(
            _error(
                "E003",
                f"DURABLE_JOBS['HEALTH_MAX_READY_AGE'] is {age!r}; use seconds > 0, or None to "
                "turn the backlog check off.",
            )
        )
    errors += _check_backoff(values)
    errors += _check_retention(values["RETENTION"])
    errors += _check_queues(values)
    errors += _check_database(values["DATABASE"])
    for key in ("LISTEN_NOTIFY", "IMMEDIATE", "OPENTELEMETRY"):
        if not isinstance(values[key], bool):
            errors.append(_error("E003", f"DURABLE_JOBS[{key!r}] must be True or False."))
    if values["OPENTELEMETRY"] is True and importlib.util.find_spec("opentelemetry") is None:
        errors.append(
            _error(
                "E011",
                "DURABLE_JOBS['OPENTELEMETRY'] is True, but opentelemetry-api is not installed.",
                hint='pip install "django-durable-jobs[opentelemetry]", or set it to False.',
            )
        )
    errors += _check_middleware(values["MIDDLEWARE"])
    if isinstance(values["PERIODIC"], dict | list | tuple):
        errors += _check_periodic(values["PERIODIC"])
    else:
        errors.append(
            _error(
                "E003",
                "DURABLE_JOBS['PERIODIC'] must be a dict keyed by name (or a list of entries "
                "with name=).",
            )
        )
    return errors


def _check_periodic(config: Any) -> list[CheckMessage]:
    """One error per problem of each PERIODIC entry (ids E101-E108), naming the entry."""
    from .periodic import load_entries

    _, problems = load_entries(config)
    return [
        Error(
            problem.message,
            hint=problem.hint,
            obj=f"DURABLE_JOBS['PERIODIC'][{problem.entry!r}]",
            id=ID.format(problem.code),
        )
        for problem in problems
    ]


def _check_middleware(paths: Any) -> list[CheckMessage]:
    """Each MIDDLEWARE entry imports and is a plain callable (E012), as a worker will need it."""
    if not isinstance(paths, list | tuple):
        return [
            _error(
                "E012",
                f"DURABLE_JOBS['MIDDLEWARE'] is {paths!r}; it must be a list of dotted paths.",
                'For example ["myproject.jobs_middleware.tenant"].',
            )
        ]
    errors: list[CheckMessage] = []
    for path in paths:
        if not isinstance(path, str):
            errors.append(
                _error(
                    "E012",
                    f"DURABLE_JOBS['MIDDLEWARE'] has {path!r}, which is not a dotted path.",
                    "List the factories' import paths as strings, not the factories.",
                )
            )
            continue
        try:
            factory = import_string(path)
        except Exception as exc:  # ImportError, or the module itself raising
            errors.append(
                _error(
                    "E012",
                    f"DURABLE_JOBS['MIDDLEWARE'] has {path!r}, which cannot be imported: "
                    f"{type(exc).__name__}: {exc}",
                    "Check the module and the name; a worker could run no job without it.",
                )
            )
            continue
        if not callable(factory) or iscoroutinefunction(factory):
            errors.append(
                _error(
                    "E012",
                    f"DURABLE_JOBS['MIDDLEWARE'] has {path!r}, which is not a plain callable "
                    f"({factory!r}).",
                    "A job middleware is a (not async) factory: called with call_job, it "
                    "returns the function that runs each job.",
                )
            )
    return errors


@register(Tags.database)
def check_database_entries(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """The periodic entries stored in the database (with ``check --database`` and migrate).

    W030: a name in both settings and the database (the settings entry runs).
    W031: an enabled database entry that no longer validates (the code changed
    since it was saved); the schedulers leave it out and log it.
    """
    from django.db import DatabaseError

    from .conf import app_settings
    from .models import ScheduleEntry
    from .schedule_entries import load_row, settings_names

    alias = app_settings.DATABASE
    if not databases or alias not in databases:
        return []
    try:
        rows = list(ScheduleEntry.objects.using(alias).order_by("name"))
    except DatabaseError:  # not migrated yet: migrate reports that itself
        return []
    declared = settings_names()
    warnings: list[CheckMessage] = []
    for row in rows:
        obj = f"ScheduleEntry({row.name!r})"
        if row.name in declared:
            warnings.append(
                Warning(
                    f"schedule {row.name!r} is both in DURABLE_JOBS['PERIODIC'] and in the "
                    "database: the settings entry runs, the database entry is ignored.",
                    hint="Delete or rename the database entry "
                    f"('manage.py jobs schedule remove {row.name}').",
                    obj=obj,
                    id=ID.format("W030"),
                )
            )
        elif row.enabled:
            _, problems = load_row(row)
            for problem in problems:
                warnings.append(
                    Warning(
                        f"database schedule {row.name!r} is broken and not scheduled: "
                        f"{problem.message}",
                        hint=problem.hint
                        or f"Fix it with 'manage.py jobs schedule edit {row.name}', or disable it.",
                        obj=obj,
                        id=ID.format("W031"),
                    )
                )
    return warnings


def _check_backoff(values: dict[str, Any]) -> list[CheckMessage]:
    """The default retry backoff: a jitter fraction, and a cap not below the base."""
    errors: list[CheckMessage] = []
    jitter = values["RETRY_JITTER"]
    if _number(jitter, minimum=0) and jitter > 1:
        errors.append(
            _error(
                "E010",
                f"DURABLE_JOBS['RETRY_JITTER'] is {jitter!r}; it is a fraction of each delay, "
                "from 0 (none) to 1 (anywhere from 0 to twice the delay).",
                "0.2 (the default) spreads retries by +/- 20%.",
            )
        )
    base, cap = values["RETRY_BASE_DELAY"], values["RETRY_MAX_DELAY"]
    if _number(base, minimum=0) and _number(cap, minimum=0) and cap < base:
        errors.append(
            _error(
                "E010",
                f"DURABLE_JOBS['RETRY_MAX_DELAY'] ({cap!r}) is below RETRY_BASE_DELAY "
                f"({base!r}): every retry would wait the cap, and the backoff would not grow.",
                "Raise RETRY_MAX_DELAY, or lower RETRY_BASE_DELAY.",
            )
        )
    return errors


def _check_retention(retention: Any) -> list[CheckMessage]:
    finished = sorted(JobStatus.finished())
    if not isinstance(retention, dict):
        return [
            _error(
                "E009",
                f"DURABLE_JOBS['RETENTION'] is {retention!r}; it must be a dict keyed by final "
                "status.",
                "For example {'SUCCESSFUL': 86400, 'FAILED': None} "
                f"(keys: {', '.join(finished)}).",
            )
        ]
    errors: list[CheckMessage] = []
    for key, value in retention.items():
        if key not in finished:
            errors.append(
                _error(
                    "E009",
                    f"DURABLE_JOBS['RETENTION'] has the key {key!r}, which is not a final status.",
                    f"Use {', '.join(finished)}: only finished jobs are pruned.",
                )
            )
            continue
        if value is None:
            continue
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        if not _number(seconds, minimum=0, strict=True):
            errors.append(
                _error(
                    "E009",
                    f"DURABLE_JOBS['RETENTION'][{key!r}] is {value!r}; use seconds > 0, a "
                    "timedelta, or None to keep these jobs forever.",
                )
            )
    return errors


def _check_queue_limits(queues: dict[Any, Any]) -> list[CheckMessage]:
    """Each queue's options: ``{"rate_limit": "20/s", "concurrency": 2}`` or None."""
    from .exceptions import InvalidJobOptions
    from .rates import parse_queue_options

    errors: list[CheckMessage] = []
    for name, options in queues.items():
        try:
            parse_queue_options(str(name), options)
        except InvalidJobOptions as exc:
            errors.append(_error("E005", str(exc), "See docs/howto/flow-control.md."))
    return errors


def _check_queues(values: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    queues = values["QUEUES"]
    if queues is not None:
        if not isinstance(queues, list | tuple | set | frozenset | dict) or not queues:
            return [
                _error(
                    "E005",
                    "DURABLE_JOBS['QUEUES'] must be None (any queue), a non-empty list of "
                    "names, or a dict of names to their limits.",
                )
            ]
        if isinstance(queues, dict):
            errors += _check_queue_limits(queues)
        for name in queues:
            if not isinstance(name, str) or not _QUEUE_RE.match(name):
                errors.append(
                    _error(
                        "E005",
                        f"DURABLE_JOBS['QUEUES'] has an invalid queue name {name!r}.",
                        "Use 1 to 100 letters, digits or the characters _ . : -",
                    )
                )
    default = values["DEFAULT_QUEUE"]
    if not isinstance(default, str) or not _QUEUE_RE.match(default):
        errors.append(_error("E005", f"DURABLE_JOBS['DEFAULT_QUEUE'] {default!r} is not valid."))
    elif queues is not None and default not in queues:
        errors.append(
            _error(
                "E005",
                f"DURABLE_JOBS['DEFAULT_QUEUE'] {default!r} is not in DURABLE_JOBS['QUEUES'].",
                "Add it to QUEUES.",
            )
        )
    if queues is not None:
        from .registry import all_definitions

        for definition in all_definitions().values():
            queue = definition.resolved_queue()
            if queue not in queues:
                errors.append(
                    Error(
                        f"Job {definition.name!r} uses the queue {queue!r}, which "
                        "DURABLE_JOBS['QUEUES'] does not list.",
                        hint="Add the queue to QUEUES or change @job(queue=...).",
                        obj=definition.path,
                        id=ID.format("E006"),
                    )
                )
    return errors


def _check_mysql_settings(alias: str) -> list[CheckMessage]:
    """E040: READ COMMITTED; E041: USE_TZ (the claims count and compare in UTC, on the
    database clock). See docs/topics/databases.md."""
    errors: list[CheckMessage] = []
    options = connections[alias].settings_dict.get("OPTIONS") or {}
    level = str(options.get("isolation_level") or "read committed").lower()
    if level != "read committed":
        errors.append(
            _error(
                "E040",
                f"The jobs' database {alias!r} runs at isolation level {level!r}; on "
                "MariaDB/MySQL django-durable-jobs needs READ COMMITTED (its claims count a "
                "gate's running jobs under a lock, and must see what other workers committed).",
                "Remove OPTIONS['isolation_level'] (Django's default is 'read committed') or set "
                "it to 'read committed'.",
            )
        )
    if not settings.USE_TZ:
        errors.append(
            _error(
                "E041",
                "USE_TZ is False; on MariaDB/MySQL django-durable-jobs keeps every time in UTC "
                "on the database clock, as Django does under USE_TZ = True.",
                "Set USE_TZ = True (Django's default since 5.0).",
            )
        )
    return errors


def _check_database(alias: Any) -> list[CheckMessage]:
    if alias not in settings.DATABASES:
        return [
            _error(
                "E007",
                f"DURABLE_JOBS['DATABASE'] is {alias!r}, which is not in DATABASES.",
                f"Use one of: {', '.join(settings.DATABASES)}.",
            )
        ]
    vendor = connections[alias].vendor
    if vendor not in ("postgresql", "sqlite", "mysql"):
        return [
            _error(
                "E008",
                f"The jobs' database {alias!r} is {vendor}; django-durable-jobs runs on "
                "PostgreSQL, MariaDB/MySQL and SQLite.",
            )
        ]
    if vendor == "mysql":
        return _check_mysql_settings(alias)
    if vendor == "sqlite":
        name = str(connections[alias].settings_dict.get("NAME") or "")
        if name == ":memory:" or "mode=memory" in name:
            return [
                Warning(
                    f"The jobs' database {alias!r} is an in-memory SQLite database: a worker in "
                    "another process cannot see its jobs.",
                    hint="Use a SQLite file (or PostgreSQL) for the jobs.",
                    obj="settings.DURABLE_JOBS",
                    id=ID.format("W001"),
                )
            ]
    return []
