"""Periodic entries stored in the database (``ScheduleEntry``): validate, write, load, move.

A database entry speaks the ``PERIODIC`` vocabulary and is validated by the
same code as the settings (``periodic._load_entry``), so an operator reads the
system checks' messages. Settings stay authoritative: a name declared there
cannot be saved here; if one appears in settings later, the settings entry
wins and check W030 warns.

Live reload without a scan: every write takes the writers' lock
(``db.entries``) and gives the row a version above every earlier one and above
the clock in microseconds, so versions grow in commit order and never repeat,
even after a delete. A scheduler polls ``count(*), max(version)`` (one indexed
query) every ``RELOAD_INTERVAL`` seconds; only when that changed does it read
the ``(id, version)`` pairs, and it validates only the rows that changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from .conf import app_settings
from .exceptions import DurableJobsError
from .models import ScheduleEntry
from .periodic import (
    BAD_ARGUMENTS,
    BAD_JOB,
    BAD_NAME,
    BAD_OPTION,
    BAD_SCHEDULE,
    BAD_TIMEZONE,
    PeriodicEntry,
    Problem,
    _load_entry,
    _name_problem,
    raw_entries,
)
from .schedules import every

logger = logging.getLogger("django_durable_jobs.scheduler")

#: Seconds between two polls of the change marker by a running scheduler: a created,
#: edited, disabled or deleted entry takes effect within this (plus one pass).
RELOAD_INTERVAL = 2.0

#: The check id of a database entry whose name a settings entry already has.
IN_SETTINGS = "E030"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 500  # rows fetched per query when many changed
_OPTION_FIELDS = (
    *("timezone", "args", "kwargs", "queue", "priority", "missed", "max_delay"),
    *("overlap", "run_on_start", "enabled", "tags"),
)


class InvalidScheduleEntry(DurableJobsError, ValueError):
    """A database entry is broken; ``problems`` holds each problem (the checks' messages)."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"schedule {name!r} is not saved: {len(problems)} problem(s):\n{lines}")


class UnknownEntry(DurableJobsError, LookupError):
    """No database entry has this name."""


# -- validation ------------------------------------------------------------------------
def settings_names() -> set[str]:
    return {name for name, _ in raw_entries(app_settings.PERIODIC) if isinstance(name, str)}


def row_spec(row: ScheduleEntry) -> dict[str, Any]:
    """The row as a PERIODIC spec (what the validator reads)."""
    spec: dict[str, Any] = {
        "job": row.job,
        "schedule": row.schedule,
        "args": row.args if row.args is not None else [],
        "kwargs": row.kwargs if row.kwargs is not None else {},
        "enabled": row.enabled,
        "tags": row.tags if row.tags is not None else [],
        "run_on_start": row.run_on_start,
        "missed": row.missed,
        "overlap": row.overlap,
    }
    for key in ("timezone", "queue"):
        if getattr(row, key):
            spec[key] = getattr(row, key)
    for key in ("priority", "max_delay"):
        if getattr(row, key) is not None:
            spec[key] = getattr(row, key)
    return spec


def spec_problems(name: Any, spec: Any) -> tuple[PeriodicEntry | None, list[Problem]]:
    """The entry, or every problem, of a database entry called ``name`` with ``spec``."""
    label = name if isinstance(name, str) else repr(name)
    message = _name_problem(name, spec, in_dict=True)
    if message is not None:
        return None, [Problem(BAD_NAME, label, message)]
    if name in settings_names():
        return None, [
            Problem(
                IN_SETTINGS,
                name,
                f"schedule {name!r} is declared in DURABLE_JOBS['PERIODIC']; settings entries "
                "are authoritative for their names and read-only here.",
                "Pick another name, or remove the entry from settings first.",
            )
        ]
    return _load_entry(name, spec)


def load_row(row: ScheduleEntry) -> tuple[PeriodicEntry | None, list[Problem]]:
    return spec_problems(row.name, row_spec(row))


def _field(problem: Problem) -> str:
    """The form field a problem belongs to (the non-field errors when none)."""
    fields = {
        BAD_NAME: "name",
        IN_SETTINGS: "name",
        BAD_SCHEDULE: "schedule",
        BAD_TIMEZONE: "timezone",
        BAD_JOB: "job",
    }
    if problem.code in fields:
        return fields[problem.code]
    text = problem.message.split(": ", 1)[-1]
    if problem.code == BAD_ARGUMENTS:
        return "kwargs" if text.startswith("kwargs") else "args"
    if problem.code == BAD_OPTION:
        for key in ("max_delay", "missed", "queue", "priority", "tags", "overlap", "enabled"):
            if key in text:
                return key
    return NON_FIELD_ERRORS


def clean_row(row: ScheduleEntry) -> None:
    """``ValidationError`` with each problem on its field (``Model.clean``, the admin form)."""
    _, problems = load_row(row)
    errors: dict[str, list[ValidationError]] = {}
    for problem in problems:
        text = f"{problem.message} {problem.hint}" if problem.hint else problem.message
        errors.setdefault(_field(problem), []).append(ValidationError(text, code=problem.code))
    if errors:
        raise ValidationError(errors)


# -- writing ---------------------------------------------------------------------------
def _db_time(value: datetime) -> datetime:
    return value if settings.USE_TZ else timezone.make_naive(value)


def save_row(row: ScheduleEntry, save: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """``ScheduleEntry.save()``: validate, lock, version, write; one transaction."""
    from .db.entries import entries_transaction

    _, problems = load_row(row)
    if problems:
        raise InvalidScheduleEntry(str(row.name), problems)
    using = kwargs.pop("using", None) or row._state.db or app_settings.DATABASE
    with entries_transaction(using) as now:
        top = ScheduleEntry.objects.using(using).aggregate(top=Max("version"))["top"] or 0
        row.version = max(top + 1, (now - _EPOCH) // timedelta(microseconds=1))
        row.updated_at = _db_time(now)
        if row._state.adding:
            row.created_at = _db_time(now)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "version", "updated_at"}
        save(*args, using=using, **kwargs)


def _alias() -> str:
    return app_settings.DATABASE


def _apply(row: ScheduleEntry, spec: dict[str, Any]) -> None:
    for key, value in spec.items():
        if key == "max_delay" and isinstance(value, timedelta):
            value = value.total_seconds()
        elif key in ("args", "tags") and isinstance(value, tuple):
            value = list(value)
        elif key in ("timezone", "queue") and value is None:
            value = ""
        elif key == "kwargs" and value is None:
            value = {}
        setattr(row, key, value)


def _checked(name: str, spec: dict[str, Any]) -> None:
    _, problems = spec_problems(name, spec)
    if problems:
        raise InvalidScheduleEntry(str(name), problems)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """A transaction that holds the writers' lock from its first statement.

    Read-modify-write under it: two concurrent edits of one entry cannot lose
    one another, and on SQLite the write lock comes before any read (a
    transaction that read first could be refused with "database is locked").
    """
    from .db.entries import entries_transaction

    with entries_transaction(_alias()):
        yield


def get_entry(name: str) -> ScheduleEntry:
    try:
        return ScheduleEntry.objects.using(_alias()).get(name=name)
    except ScheduleEntry.DoesNotExist:
        if name in settings_names():
            raise UnknownEntry(
                f"schedule {name!r} is declared in DURABLE_JOBS['PERIODIC'] (read-only here): "
                "change it in settings."
            ) from None
        raise UnknownEntry(f"no database schedule is named {name!r}.") from None


def add_entry(name: str, spec: dict[str, Any], *, description: str = "") -> ScheduleEntry:
    """Create a database entry from a PERIODIC spec; ``InvalidScheduleEntry`` if broken."""
    spec = {key: value for key, value in spec.items() if key != "name"}
    _checked(name, spec)
    with _locked():
        return _create(name, spec, description)


def _create(name: str, spec: dict[str, Any], description: str) -> ScheduleEntry:
    if ScheduleEntry.objects.using(_alias()).filter(name=name).exists():
        raise InvalidScheduleEntry(
            name,
            [
                Problem(
                    BAD_NAME,
                    name,
                    f"a database schedule is already named {name!r}.",
                    "Edit it ('jobs schedule edit'), or pick another name.",
                )
            ],
        )
    row = ScheduleEntry(name=name, description=description)
    _apply(row, spec)
    row.save(using=_alias())
    logger.info("schedule %r: created (version %s)", name, row.version)
    return row


def edit_entry(
    name: str, changes: dict[str, Any], *, description: str | None = None
) -> ScheduleEntry:
    """Change some options of a database entry (the others stay); validated as a whole."""
    with _locked():
        row = get_entry(name)
        spec = {**row_spec(row), **changes}
        for key in ("timezone", "queue", "priority", "max_delay"):
            if key in spec and spec[key] in (None, ""):
                del spec[key]  # back to the default
        _checked(name, spec)
        _apply(row, changes)
        if description is not None:
            row.description = description
        row.save(using=_alias())
    logger.info("schedule %r: changed (version %s)", name, row.version)
    return row


def remove_entry(name: str) -> None:
    """Delete a database entry; its ledger rows (its history) stay."""
    with _locked():
        get_entry(name).delete(using=_alias())
    logger.info("schedule %r: deleted", name)


def set_entry_enabled(name: str, enabled: bool) -> ScheduleEntry:
    with _locked():
        row = get_entry(name)
        if row.enabled != enabled:
            row.enabled = enabled
            row.save(using=_alias())
    return row


def export_entry(row: ScheduleEntry) -> dict[str, Any]:
    """The entry in the PERIODIC list form (defaults left out), with its description."""
    spec = row_spec(row)
    data = every(spec.pop("schedule"), spec.pop("job"), name=row.name, **spec)
    data = {"name": data.pop("name"), **data}
    if row.description:
        data["description"] = row.description
    return data


def export_entries(tag: str | None = None) -> list[dict[str, Any]]:
    rows = ScheduleEntry.objects.using(_alias()).order_by("name")
    return [export_entry(row) for row in rows if tag is None or tag in (row.tags or [])]


@dataclasses.dataclass
class ImportResult:
    created: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)


def _import_items(data: Any) -> list[tuple[Any, Any]]:
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        return raw_entries(data)
    raise InvalidScheduleEntry(
        "(import)",
        [
            Problem(
                BAD_NAME,
                "(import)",
                f"the file holds {type(data).__name__}: import a list of entries with name=, "
                "or a dict keyed by name (the PERIODIC setting's two forms).",
            )
        ],
    )


def import_entries(data: Any, *, dry_run: bool = False) -> ImportResult:
    """Create or update database entries by name; all of them or, if one is broken, none."""
    result = ImportResult()
    problems: list[Problem] = []
    planned: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()
    for name, item in _import_items(data):
        if not isinstance(item, dict):
            _, item_problems = spec_problems(name, item)
            problems += item_problems
            continue
        spec = {key: value for key, value in item.items() if key not in ("name", "description")}
        description = item.get("description") or ""
        if not isinstance(description, str):
            problems.append(
                Problem(BAD_OPTION, str(name), f"schedule {name!r}: description must be text.")
            )
            continue
        if name in seen:
            problems.append(
                Problem(BAD_NAME, str(name), f"schedule {name!r} is in the file more than once.")
            )
            continue
        seen.add(name)
        _, item_problems = spec_problems(name, spec)
        problems += item_problems
        planned.append((name, spec, description))
    if problems:
        raise InvalidScheduleEntry("(import)", problems)
    alias = _alias()
    with _locked():
        existing = {
            row.name: row for row in ScheduleEntry.objects.using(alias).filter(name__in=seen)
        }
        for name, spec, description in planned:
            row = existing.get(name)
            if row is None:
                row = ScheduleEntry(name=name)
                result.created.append(name)
            else:
                before = export_entry(row)
                defaults = ScheduleEntry(name=name)  # options left out go back to defaults
                for key in _OPTION_FIELDS:
                    setattr(row, key, getattr(defaults, key))
            _apply(row, spec)
            row.description = description
            if name in existing:
                if export_entry(row) == before:
                    result.unchanged.append(name)
                    continue
                result.updated.append(name)
            if not dry_run:
                row.save(using=alias)
        if dry_run:
            transaction.set_rollback(True, using=alias)
    return result


# -- what the schedulers read ----------------------------------------------------------
def change_marker(alias: str) -> tuple[int, int]:
    """``(count, max(version))``: changes with every create, edit and delete."""
    found = ScheduleEntry.objects.using(alias).aggregate(count=Count("id"), top=Max("version"))
    return found["count"], found["top"] or 0


def aware(value: datetime) -> datetime:
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value.astimezone(UTC)


@dataclasses.dataclass(frozen=True)
class LoadedEntry:
    """A database row as a scheduler holds it: its entry (None: idle) and since when."""

    version: int
    name: str
    entry: PeriodicEntry | None  # None: disabled, broken, or shadowed by settings
    since: datetime  # when it was last saved (the database clock)


class DatabaseEntries:
    """One scheduler's copy of the database entries, refreshed when the marker moves."""

    def __init__(self, alias: str, settings_names: Iterable[str]) -> None:
        self.alias = alias
        self.settings_names = frozenset(settings_names)
        self.marker: tuple[int, int] | None = None
        self.rows: dict[int, LoadedEntry] = {}

    def refresh(self) -> bool:
        """Re-read what changed; True if anything did. One query when nothing did."""
        marker = change_marker(self.alias)
        if marker == self.marker:
            return False
        queryset = ScheduleEntry.objects.using(self.alias)
        versions = dict(queryset.values_list("id", "version"))
        for row_id in set(self.rows) - set(versions):
            del self.rows[row_id]
        stale = [i for i, v in versions.items() if i not in self.rows or self.rows[i].version != v]
        # Few changes: fetch those rows; many (the first load): read them all, skip the others.
        self._load(queryset if len(stale) > _CHUNK else queryset.filter(id__in=stale))
        self.marker = marker
        return True

    def _load(self, queryset: Any) -> None:
        for row in queryset.iterator(chunk_size=_CHUNK):
            known = self.rows.get(row.id)
            if known is not None and known.version == row.version:
                continue
            entry: PeriodicEntry | None = None
            if row.name in self.settings_names:
                logger.warning(
                    "schedule %r is both in settings and in the database: the settings entry "
                    "runs, the database one is ignored (rename or delete it)",
                    row.name,
                )
            elif row.enabled:
                entry, problems = load_row(row)
                if problems:
                    logger.error(
                        "database schedule %r (version %s) is broken and not scheduled: %s",
                        row.name,
                        row.version,
                        "; ".join(str(problem) for problem in problems),
                    )
            self.rows[row.id] = LoadedEntry(row.version, row.name, entry, aware(row.updated_at))

    def active(self) -> dict[str, LoadedEntry]:
        """The entries to schedule, by name."""
        return {row.name: row for row in self.rows.values() if row.entry is not None}
