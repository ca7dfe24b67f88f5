"""The ``PERIODIC`` setting, read and validated into ``PeriodicEntry`` objects.

One reader for three users: the system checks (every problem, each naming its
entry), the scheduler (which refuses to start while any entry is broken) and
the schedule operations (list, run now). Settings are read when called, never
at import.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .conf import app_settings
from .constants import docs_url
from .exceptions import DurableJobsError, InvalidJobArguments, InvalidJobOptions
from .schedules import InvalidSchedule, Schedule, UnknownTimeZone, get_zone, parse_schedule
from .validation import check_priority, check_queue

SKIP = "skip"
LATEST = "latest"
CATCH_UP = "catch_up"
MISSED_POLICIES = (SKIP, LATEST, CATCH_UP)

#: With ``missed="skip"``, a tick first seen later than this (seconds) is not enqueued.
SKIP_GRACE = 60.0
MAX_NAME_LENGTH = 200  # ScheduleTick.schedule and ScheduleState.name

ENTRY_KEYS = (
    "job",
    "schedule",
    "name",
    "args",
    "kwargs",
    "queue",
    "priority",
    "timezone",
    "enabled",
    "tags",
    "run_on_start",
    "missed",
    "max_delay",
    "overlap",
)

# Stable check ids, one per kind of problem (docs/reference/checks.md).
BAD_NAME = "E101"
DUPLICATE_NAME = "E102"
BAD_ENTRY = "E103"
BAD_SCHEDULE = "E104"
BAD_TIMEZONE = "E105"
BAD_JOB = "E106"
BAD_ARGUMENTS = "E107"
BAD_OPTION = "E108"


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is wrong with one entry: a check id, the entry's name, a message and a fix."""

    code: str
    entry: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        hint = f" HINT: {self.hint}" if self.hint else ""
        return f"[django_durable_jobs.{self.code}] {self.message}{hint}"


class PeriodicConfigError(DurableJobsError, ImproperlyConfigured):
    """``PERIODIC`` has broken entries; the message lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"DURABLE_JOBS['PERIODIC'] has {len(problems)} problem(s); the scheduler does not "
            f"start until they are fixed (run 'manage.py check'):\n{lines}"
        )


@dataclasses.dataclass(frozen=True)
class PeriodicEntry:
    """One periodic job, as declared in settings, validated."""

    name: str
    job: str  # the registered job name
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    enabled: bool = True
    tags: tuple[str, ...] = ()
    run_on_start: bool = False
    missed: str = LATEST
    max_delay: float | None = None
    overlap: bool = True

    @property
    def zone_name(self) -> str:
        return self.schedule.zone.key

    @property
    def lateness_limit(self) -> float | None:
        """Seconds after its fire time a tick may still be enqueued (None: any time)."""
        if self.missed == SKIP:
            return self.max_delay if self.max_delay is not None else SKIP_GRACE
        return self.max_delay

    def prepare(self) -> Any:
        """A ``PreparedJob`` for one run (without the tick's meta), validated and encoded."""
        from .registry import get

        definition = get(self.job).using(queue=self.queue, priority=self.priority)
        return definition.prepare(*self.args, **self.kwargs)


def raw_entries(config: Any) -> list[tuple[Any, Any]]:
    """``(name, spec)`` pairs from the dict form, or from the list form (names inside)."""
    if isinstance(config, dict):
        return list(config.items())
    if isinstance(config, list | tuple):
        return [(spec.get("name") if isinstance(spec, dict) else None, spec) for spec in config]
    return []


def load_entries(config: Any = None) -> tuple[list[PeriodicEntry], list[Problem]]:
    """Every valid entry, and every problem of the broken ones."""
    if config is None:
        config = app_settings.PERIODIC
    entries: list[PeriodicEntry] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for position, (name, spec) in enumerate(raw_entries(config)):
        label = name if isinstance(name, str) else f"#{position + 1}"
        name_problem = _name_problem(name, spec, in_dict=isinstance(config, dict))
        if name_problem is not None:
            problems.append(Problem(BAD_NAME, label, name_problem))
            continue
        if name in seen:
            problems.append(
                Problem(
                    DUPLICATE_NAME,
                    name,
                    f"PERIODIC entry {name!r} is declared more than once.",
                    "Give every entry its own name: the name keys its ledger of ticks.",
                )
            )
            continue
        seen.add(name)
        entry, entry_problems = _load_entry(name, spec)
        problems += entry_problems
        if entry is not None:
            entries.append(entry)
    return entries, problems


def get_entries(config: Any = None) -> list[PeriodicEntry]:
    """Every entry; ``PeriodicConfigError`` if any is broken."""
    entries, problems = load_entries(config)
    if problems:
        raise PeriodicConfigError(problems)
    return entries


def _name_problem(name: Any, spec: Any, *, in_dict: bool) -> str | None:
    if not isinstance(name, str) or not name.strip():
        where = "a key of PERIODIC" if in_dict else "the name= of a PERIODIC entry"
        return f"{where} is {name!r}: every entry needs a non-empty name, such as 'nightly-report'."
    if name != name.strip():
        return f"PERIODIC entry name {name!r} has leading or trailing spaces; remove them."
    if len(name) > MAX_NAME_LENGTH:
        return f"PERIODIC entry name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} characters."
    if any(ord(char) < 32 or 0x7F <= ord(char) <= 0x9F for char in name):
        # NUL cannot be stored at all; the others would reach logs and terminals raw.
        return (
            f"PERIODIC entry name {name!r} contains a control character; use letters, digits, "
            "spaces and punctuation only."
        )
    if in_dict and isinstance(spec, dict) and spec.get("name", name) != name:
        return (
            f"PERIODIC entry {name!r} has name={spec['name']!r}; in the dict form the key is the "
            "name: remove name= or make it equal."
        )
    return None


def _load_entry(name: str, spec: Any) -> tuple[PeriodicEntry | None, list[Problem]]:
    def problem(code: str, message: str, hint: str | None = None) -> Problem:
        return Problem(code, name, f"PERIODIC entry {name!r}: {message}", hint)

    if not isinstance(spec, dict):
        return None, [
            problem(
                BAD_ENTRY,
                f"must be a dict such as {{'job': 'shop.jobs.report', 'schedule': 'hourly'}}, "
                f"not {type(spec).__name__}.",
            )
        ]
    problems: list[Problem] = []
    for key in sorted(set(spec) - set(ENTRY_KEYS), key=str):
        close = difflib.get_close_matches(str(key), ENTRY_KEYS, n=1)
        problems.append(
            problem(
                BAD_ENTRY,
                f"unknown option {key!r}.",
                f"Did you mean {close[0]!r}?" if close else f"Options: {', '.join(ENTRY_KEYS)}.",
            )
        )
    for key in ("job", "schedule"):
        if key not in spec:
            problems.append(problem(BAD_ENTRY, f"has no {key!r}."))

    zone = None
    try:
        zone = get_zone(spec.get("timezone") or settings.TIME_ZONE or "UTC")
    except UnknownTimeZone as exc:
        problems.append(problem(BAD_TIMEZONE, str(exc)))
    schedule = None
    if "schedule" in spec:
        try:
            schedule = parse_schedule(spec["schedule"], zone or get_zone("UTC"))
        except InvalidSchedule as exc:
            problems.append(
                problem(
                    BAD_SCHEDULE,
                    str(exc),
                    f"The grammar: {docs_url('howto/periodic-jobs.md')}",
                )
            )

    definition = None
    if "job" in spec:
        definition, job_problem = _resolve_job(spec["job"])
        if job_problem:
            problems.append(problem(BAD_JOB, job_problem))

    options, option_problems = _options(spec)
    problems += [problem(BAD_OPTION, message) for message in option_problems]

    args, kwargs = spec.get("args", ()), spec.get("kwargs") or {}
    arguments_ok = True
    if not isinstance(args, list | tuple):
        problems.append(problem(BAD_ARGUMENTS, f"args must be a list, not {type(args).__name__}."))
        arguments_ok = False
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        problems.append(problem(BAD_ARGUMENTS, "kwargs must be a dict with string keys."))
        arguments_ok = False
    if arguments_ok and definition is not None:
        message = _arguments_problem(definition, tuple(args), kwargs)
        if message:
            problems.append(problem(BAD_ARGUMENTS, message))

    if problems or schedule is None or zone is None or definition is None:
        return None, problems
    entry = PeriodicEntry(
        name=name,
        job=definition.name,
        schedule=schedule,
        args=tuple(args),
        kwargs=dict(kwargs),
        **options,
    )
    try:
        entry.prepare()
    except (InvalidJobOptions, InvalidJobArguments) as exc:
        return None, [problem(BAD_ARGUMENTS, str(exc))]
    return entry, []


def _resolve_job(path: Any) -> tuple[Any, str | None]:
    """The ``JobDefinition`` that ``path`` (a job name or dotted path) names, or a problem."""
    from . import registry
    from .definitions import JobDefinition

    if not isinstance(path, str) or not path.strip():
        return None, f"job={path!r} must be the dotted path of a @job function."
    known = registry.all_definitions()
    if path in known:
        return known[path], None
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        return None, (
            f"job={path!r} is neither a registered job name nor a dotted path such as "
            "'shop.jobs.send_report'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return None, f"job={path!r} does not import: {exc}."
    except Exception as exc:
        return None, f"job={path!r}: importing {module_name} raised {type(exc).__name__}: {exc}."
    target = getattr(module, attribute, None)
    if target is None:
        known = registry.all_definitions()
        if path in known:
            return known[path], None
        return None, f"job={path!r}: the module {module_name} has no {attribute!r}."
    if not isinstance(target, JobDefinition):
        return None, (
            f"job={path!r} is not a @job: decorate {attribute}() with @job (from "
            "django_durable_jobs import job) so a worker can run it."
        )
    return target, None


def _arguments_problem(definition: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Why ``definition`` cannot be called with these arguments ('' when it can)."""
    leading = (None,) if definition.takes_context else ()
    try:
        inspect.signature(definition.func).bind(*leading, *args, **kwargs)
    except TypeError as exc:
        return (
            f"args={list(args)!r}, kwargs={kwargs!r} do not fit "
            f"{definition.path}{inspect.signature(definition.func)}: {exc}."
        )
    return ""


def _options(spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    options: dict[str, Any] = {}
    problems: list[str] = []
    for key in ("enabled", "run_on_start", "overlap"):
        if key in spec:
            if isinstance(spec[key], bool):
                options[key] = spec[key]
            else:
                problems.append(f"{key}={spec[key]!r} must be True or False.")
    if spec.get("queue") is not None:
        try:
            options["queue"] = check_queue(spec["queue"])
        except InvalidJobOptions as exc:
            problems.append(str(exc))
    if spec.get("priority") is not None:
        try:
            options["priority"] = check_priority(spec["priority"])
        except InvalidJobOptions as exc:
            problems.append(str(exc))
    tags = spec.get("tags", ())
    if isinstance(tags, list | tuple) and all(isinstance(t, str) and t.strip() for t in tags):
        options["tags"] = tuple(tags)
    else:
        problems.append(f"tags={tags!r} must be a list of non-empty strings.")
    missed = spec.get("missed", LATEST)
    if missed in MISSED_POLICIES:
        options["missed"] = missed
    else:
        problems.append(
            f"missed={missed!r} must be one of {', '.join(map(repr, MISSED_POLICIES))}."
        )
    max_delay = spec.get("max_delay")
    if isinstance(max_delay, timedelta):
        max_delay = max_delay.total_seconds()
    if max_delay is not None and (
        isinstance(max_delay, bool) or not isinstance(max_delay, int | float) or max_delay <= 0
    ):
        problems.append(f"max_delay={spec.get('max_delay')!r} must be seconds > 0 or a timedelta.")
    elif max_delay is not None:
        options["max_delay"] = float(max_delay)
    elif missed == CATCH_UP:
        problems.append(
            "missed='catch_up' needs max_delay (seconds or a timedelta): only ticks at most that "
            "late are caught up, so a long outage cannot flood the queue."
        )
    return options, problems
