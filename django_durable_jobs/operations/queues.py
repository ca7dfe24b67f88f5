"""Queues: which exist, and pausing and resuming them.

A paused queue keeps its jobs and its running jobs finish, but workers claim
nothing from it: the claim statement skips queues marked paused, so a pause
takes effect at each worker's next claim (within a poll interval).
"""

from __future__ import annotations

import dataclasses
import re

from django.db.models.functions import Now

from ..conf import app_settings
from ..constants import QUEUE_NAME_PATTERN
from ..db import get_backend
from ..models import QueueState

_QUEUE_RE = re.compile(QUEUE_NAME_PATTERN)


@dataclasses.dataclass
class QueueChange:
    """What ``pause`` or ``resume`` did to each named queue."""

    action: str
    changed: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        verb = "paused" if self.action == "pause" else "resumed"
        parts = []
        if self.changed:
            parts.append(f"{verb}: {', '.join(self.changed)}")
        if self.unchanged:
            parts.append(f"{verb} already: {', '.join(self.unchanged)}")
        text = "; ".join(parts) or "nothing to do"
        return text[0].upper() + text[1:] + "."

    def as_dict(self) -> dict[str, object]:
        return {"action": self.action, "changed": self.changed, "unchanged": self.unchanged}


def queue_names(database: str | None = None) -> list[str]:
    """Queues worth showing: those with jobs, those paused, and those the settings name."""
    alias = database or app_settings.DATABASE
    names = set(get_backend(alias).distinct_queues())
    names.update(QueueState.objects.using(alias).values_list("name", flat=True))
    names.add(app_settings.DEFAULT_QUEUE)
    if app_settings.QUEUES:
        names.update(app_settings.QUEUES)
    return sorted(names)


def paused_queues(database: str | None = None) -> set[str]:
    alias = database or app_settings.DATABASE
    return set(QueueState.objects.using(alias).filter(paused=True).values_list("name", flat=True))


def validate_queue_name(name: str) -> str:
    """Return ``name`` if it can be a queue, or raise ``ValueError`` saying why not."""
    if not isinstance(name, str) or not _QUEUE_RE.match(name):
        raise ValueError(
            f"{name!r} is not a valid queue name: use 1 to 100 letters, digits or _ . : -"
        )
    allowed = app_settings.QUEUES
    if allowed and name not in allowed:
        raise ValueError(
            f"there is no queue {name!r}: DURABLE_JOBS['QUEUES'] lists {', '.join(allowed)}"
        )
    return name


def _set_paused(names: list[str], paused: bool, database: str | None) -> QueueChange:
    alias = database or app_settings.DATABASE
    for name in names:
        validate_queue_name(name)
    change = QueueChange("pause" if paused else "resume")
    for name in dict.fromkeys(names):
        updated = (
            QueueState.objects.using(alias)
            .filter(name=name)
            .exclude(paused=paused)
            .update(paused=paused, changed_at=Now())
        )
        if not updated:
            exists = QueueState.objects.using(alias).filter(name=name).exists()
            if exists or not paused:
                change.unchanged.append(name)
                continue
            _, created = QueueState.objects.using(alias).get_or_create(
                name=name, defaults={"paused": True}
            )
            (change.changed if created else change.unchanged).append(name)
            continue
        change.changed.append(name)
    return change


def pause(names: list[str], *, database: str | None = None) -> QueueChange:
    """Stop workers claiming from these queues; running jobs go on and finish."""
    return _set_paused(names, True, database)


def resume(names: list[str], *, database: str | None = None) -> QueueChange:
    """Let workers claim from these queues again, and wake them up."""
    change = _set_paused(names, False, database)
    if change.changed and app_settings.LISTEN_NOTIFY:
        get_backend(database or app_settings.DATABASE).notify(set(change.changed))
    return change
