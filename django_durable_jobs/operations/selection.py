"""Which jobs an operation applies to: explicit ids, a filter spec, or a queryset.

Explicit ids get exact answers (each id is done, refused with a reason, or
not found). A filter can match millions of rows, so it is never loaded: the
operations walk it in bounded batches and count what they refuse with a cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from ..conf import app_settings
from ..constants import JobStatus
from ..models import Job


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """Conditions on jobs, each optional; a job must meet all of them.

    Every condition is served by an index (status, queue, name, and the
    finished-at time within a status); ``enqueued_*`` follows the primary key
    order closely, so recent ranges stay cheap.
    """

    statuses: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    finished_before: datetime | None = None
    finished_after: datetime | None = None
    enqueued_before: datetime | None = None
    enqueued_after: datetime | None = None

    def __post_init__(self) -> None:
        unknown = [status for status in self.statuses if status not in JobStatus.values]
        if unknown:
            raise ValueError(
                f"unknown status {', '.join(unknown)}; use one of {', '.join(JobStatus.values)}"
            )

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, field.name) for field in dataclasses.fields(self))

    def q(self) -> Q:
        condition = Q()
        if self.statuses:
            condition &= Q(status__in=self.statuses)
        if self.queues:
            condition &= Q(queue__in=self.queues)
        if self.names:
            condition &= Q(name__in=self.names)
        if self.finished_before is not None:
            condition &= Q(finished_at__lt=self.finished_before)
        if self.finished_after is not None:
            condition &= Q(finished_at__gte=self.finished_after)
        if self.enqueued_before is not None:
            condition &= Q(enqueued_at__lt=self.enqueued_before)
        if self.enqueued_after is not None:
            condition &= Q(enqueued_at__gte=self.enqueued_after)
        return condition

    def describe(self) -> str:
        parts = []
        for label, values in (
            ("status", self.statuses),
            ("queue", self.queues),
            ("name", self.names),
        ):
            if values:
                parts.append(f"{label} {' or '.join(values)}")
        for label, value in (
            ("finished before", self.finished_before),
            ("finished since", self.finished_after),
            ("enqueued before", self.enqueued_before),
            ("enqueued since", self.enqueued_after),
        ):
            if value is not None:
                parts.append(f"{label} {value.isoformat(timespec='seconds')}")
        return ", ".join(parts) or "every job"


@dataclasses.dataclass(frozen=True)
class Selection:
    """The jobs to act on. ``ids`` is set when they were named one by one."""

    queryset: QuerySet[Job]
    ids: tuple[int, ...] | None = None
    description: str = ""

    @property
    def alias(self) -> str:
        return self.queryset.db


Target = Selection | JobFilter | QuerySet | Iterable[int]

#: The largest job id (the primary key is a 64-bit integer).
MAX_ID = 2**63 - 1


def jobs(database: str | None = None) -> QuerySet[Job]:
    """All jobs, on the jobs' database."""
    return Job.objects.using(database or app_settings.DATABASE).all()


def select(target: Target, *, database: str | None = None) -> Selection:
    """Turn ids, a ``JobFilter`` or a queryset of jobs into a ``Selection``."""
    if isinstance(target, Selection):
        return target
    if isinstance(target, JobFilter):
        return Selection(
            jobs(database).filter(target.q()).order_by(), description=target.describe()
        )
    if isinstance(target, QuerySet):
        if target.model is not Job:
            raise TypeError(f"expected a queryset of jobs, not of {target.model.__name__}")
        queryset: QuerySet[Job] = target.order_by()
        if database:
            queryset = queryset.using(database)
        return Selection(queryset, description="the jobs matching the filter")
    ids = tuple(dict.fromkeys(_as_id(value) for value in target))
    # An id past 64 bits names no job (and would not fit in the query): not found.
    return Selection(
        jobs(database).filter(id__in=[job_id for job_id in ids if job_id <= MAX_ID]).order_by(),
        ids=ids,
        description=_describe_ids(ids),
    )


def _as_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().removeprefix("#")
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"{value!r} is not a job id (a positive integer)")


def _describe_ids(ids: tuple[int, ...]) -> str:
    shown = ", ".join(f"#{job_id}" for job_id in ids[:5])
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return f"job{'s' if len(ids) != 1 else ''} {shown}{more}"
