"""What ``manage.py jobs schedule`` and the admin's schedules page do: list, run now, enable.

Plain functions over the PERIODIC setting, the database entries
(``schedule_entries``), the tick ledger and the operator overrides of settings
entries (``ScheduleState``); ``django_durable_jobs.scheduler`` re-exports them.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from .conf import app_settings
from .exceptions import DurableJobsError
from .ledger import DatabaseClock, TickOutcome, enqueue_tick, last_run
from .models import Job, ScheduleEntry, ScheduleState
from .periodic import LATEST, PeriodicConfigError, PeriodicEntry, load_entries, raw_entries

if TYPE_CHECKING:
    from django.db.models import QuerySet

logger = logging.getLogger("django_durable_jobs.scheduler")


class UnknownSchedule(DurableJobsError, LookupError):
    """No PERIODIC entry has this name."""


class ScheduleBusy(DurableJobsError):
    """An ``overlap=False`` entry cannot run now: its previous run is still pending."""


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """One PERIODIC entry as an operator sees it. Times are aware UTC instants.

    ``problems`` is non-empty for a broken entry (then most other fields are empty).
    """

    name: str
    job: str
    schedule: str
    description: str
    timezone: str
    next_fire_times: list[datetime]
    last_fire_time: datetime | None
    last_job_id: int | None
    last_status: str | None  # None: never ran, or its job was pruned
    tags: tuple[str, ...]
    enabled: bool  # what the scheduler does now
    enabled_in_settings: bool
    enabled_override: bool | None  # set from the admin or CLI; None: follow the settings
    missed: str = LATEST
    overlap: bool = True
    entry: PeriodicEntry | None = None
    problems: tuple[str, ...] = ()
    source: str = "settings"  # or "database" (a ScheduleEntry, editable)
    description_text: str = ""  # a database entry's description

    @property
    def enabled_source(self) -> str:
        if self.source == "database":
            return "database"
        return "settings" if self.enabled_override is None else "override"


def describe_schedules(
    now: datetime | None = None,
    *,
    count: int = 3,
    tag: str | None = None,
    database_rows: QuerySet[ScheduleEntry] | None = None,
) -> list[ScheduleInfo]:
    """Every PERIODIC entry (broken ones too), by name, with its next ``count`` fire times.

    Database entries too: all of them, or only ``database_rows`` (a page of them,
    for the admin: each described entry is parsed and validated, ~1 ms apiece).
    """
    alias = app_settings.DATABASE
    now = now or DatabaseClock(alias).now()
    entries, problems = load_entries()
    overrides = dict(ScheduleState.objects.using(alias).values_list("name", "enabled"))
    infos: list[ScheduleInfo] = []
    last = {entry.name: last_run(entry.name, alias) for entry in entries}
    statuses = dict(
        Job.objects.using(alias)
        .filter(id__in=[run[1] for run in last.values() if run])
        .values_list("id", "status")
    )
    for entry in entries:
        run = last[entry.name]
        override = overrides.get(entry.name)
        infos.append(
            ScheduleInfo(
                name=entry.name,
                job=entry.job,
                schedule=entry.schedule.text,
                description=entry.schedule.describe(),
                timezone=entry.zone_name,
                next_fire_times=entry.schedule.upcoming(now, count),
                last_fire_time=run[0] if run else None,
                last_job_id=run[1] if run else None,
                last_status=statuses.get(run[1]) if run else None,
                tags=entry.tags,
                enabled=entry.enabled if override is None else override,
                enabled_in_settings=entry.enabled,
                enabled_override=override,
                missed=entry.missed,
                overlap=entry.overlap,
                entry=entry,
            )
        )
    for name in sorted({problem.entry for problem in problems}):
        spec = dict(raw_entries(app_settings.PERIODIC)).get(name)
        spec = spec if isinstance(spec, dict) else {}
        infos.append(
            ScheduleInfo(
                name=name,
                job=str(spec.get("job", "")),
                schedule=str(spec.get("schedule", "")),
                description="",
                timezone=str(spec.get("timezone", "")),
                next_fire_times=[],
                last_fire_time=None,
                last_job_id=None,
                last_status=None,
                tags=tuple(spec.get("tags", ()) or ()),
                enabled=False,
                enabled_in_settings=bool(spec.get("enabled", True)),
                enabled_override=overrides.get(name),
                problems=tuple(p.message for p in problems if p.entry == name),
            )
        )
    infos += _database_infos(alias, now, count, {info.name for info in infos}, database_rows)
    if tag is not None:
        infos = [info for info in infos if tag in info.tags]
    return sorted(infos, key=lambda info: (info.name, info.source != "settings"))


def _database_infos(
    alias: str,
    now: datetime,
    count: int,
    shadowed: set[str],
    selected: QuerySet[ScheduleEntry] | None = None,
) -> list[ScheduleInfo]:
    """The database entries as ScheduleInfo (``source="database"``): two queries in all."""
    from django.db.models import OuterRef, Subquery

    from .models import ScheduleTick
    from .schedule_entries import aware, load_row

    runs = ScheduleTick.objects.filter(schedule=OuterRef("name"), job_id__isnull=False).order_by(
        "-fire_time"
    )
    chosen = ScheduleEntry.objects.using(alias) if selected is None else selected
    rows = list(
        chosen.annotate(
            last_fire=Subquery(runs.values("fire_time")[:1]),
            last_job=Subquery(runs.values("job_id")[:1]),
        ).order_by("name")
    )
    statuses = dict(
        Job.objects.using(alias)
        .filter(id__in=[row.last_job for row in rows if row.last_job is not None])
        .values_list("id", "status")
    )
    infos: list[ScheduleInfo] = []
    for row in rows:
        entry, problems = load_row(row)
        notes = [p.message for p in problems]
        if row.name in shadowed:
            notes = ["a settings entry has this name: it runs, this one is ignored (W030)."]
            entry = None
        infos.append(
            ScheduleInfo(
                name=row.name,
                job=entry.job if entry else row.job,
                schedule=row.schedule,
                description=entry.schedule.describe() if entry else "",
                timezone=entry.zone_name if entry else row.timezone,
                next_fire_times=entry.schedule.upcoming(now, count) if entry else [],
                last_fire_time=aware(row.last_fire) if row.last_fire else None,
                last_job_id=row.last_job,
                last_status=statuses.get(row.last_job),
                tags=tuple(row.tags) if isinstance(row.tags, list) else (),
                enabled=row.enabled and entry is not None,
                enabled_in_settings=row.enabled,
                enabled_override=None,
                missed=row.missed,
                overlap=row.overlap,
                entry=entry,
                problems=tuple(notes),
                source="database",
                description_text=row.description,
            )
        )
    return infos


def _entry(name: str) -> PeriodicEntry:
    from .schedule_entries import InvalidScheduleEntry, load_row, settings_names

    entries, problems = load_entries()
    for entry in entries:
        if entry.name == name:
            return entry
    broken = [problem for problem in problems if problem.entry == name]
    if broken:
        raise PeriodicConfigError(broken)
    row = ScheduleEntry.objects.using(app_settings.DATABASE).filter(name=name).first()
    if row is not None and name not in settings_names():
        found, row_problems = load_row(row)
        if found is None:
            raise InvalidScheduleEntry(name, row_problems)
        return found
    known = ", ".join(sorted(entry.name for entry in entries)) or "none"
    raise UnknownSchedule(f"no PERIODIC entry is named {name!r} (entries: {known}).")


def run_schedule_now(name: str) -> int:
    """Enqueue one run of entry ``name`` now, whatever its schedule; return the job id.

    The run is recorded in the ledger at the current time (its ``fire_time``),
    with ``"manual": true`` in the job's meta. It runs even if the entry is
    disabled, but an ``overlap=False`` entry whose previous run is still
    pending raises ``ScheduleBusy``.
    """
    entry = _entry(name)
    alias = app_settings.DATABASE
    clock = DatabaseClock(alias)
    for _ in range(5):
        result = enqueue_tick(entry, clock.now(), alias, manual=True)
        if result.outcome is TickOutcome.ENQUEUED:
            assert result.job_id is not None
            logger.info("schedule %r: run now: enqueued job #%s", name, result.job_id)
            return result.job_id
        if result.outcome is TickOutcome.OVERLAP:
            raise ScheduleBusy(
                f"schedule {name!r} has overlap=False and its previous run (job "
                f"#{result.blocking_job_id}) is still pending; wait for it or cancel it."
            )
    raise ScheduleBusy(f"schedule {name!r}: could not record a run now; try again.")


def set_schedule_enabled(name: str, enabled: bool | None) -> None:
    """Enable or disable entry ``name`` for every scheduler; None: follow the settings again.

    For a database entry, this sets its own ``enabled`` (a new version: every
    scheduler picks it up within ``RELOAD_INTERVAL``); None is refused.
    """
    declared = {entry_name for entry_name, _ in raw_entries(app_settings.PERIODIC)}
    in_database = ScheduleEntry.objects.using(app_settings.DATABASE).filter(name=name).exists()
    if name not in declared and in_database:
        from .schedule_entries import UnknownEntry, set_entry_enabled

        if enabled is None:
            raise UnknownEntry(
                f"schedule {name!r} is a database entry: it has no settings to follow; "
                "enable or disable it."
            )
        set_entry_enabled(name, enabled)
        logger.info("schedule %r: %s", name, "enabled" if enabled else "disabled")
        return
    if name not in declared:
        known = ", ".join(sorted(str(n) for n in declared)) or "none"
        raise UnknownSchedule(f"no PERIODIC entry is named {name!r} (entries: {known}).")
    alias = app_settings.DATABASE
    ScheduleState.objects.using(alias).update_or_create(
        name=name, defaults={"enabled": enabled, "changed_at": DatabaseClock(alias).now()}
    )
    logger.info(
        "schedule %r: %s",
        name,
        {True: "enabled", False: "disabled", None: "follows the settings"}[enabled],
    )
