"""Jobs that follow jobs: chained jobs, the steps of a run, group callbacks.

One mechanism serves all three. An outcome carries *follow-up* jobs, which are
inserted in the same transaction as the outcome's fenced write and only if
that write happened: a crash before the commit loses neither (the attempt runs
again, and so does the hand-off), and a stale worker's late report enqueues
nothing. A group's callback waits with ``waiting_for`` = number of members;
each member that ends lowers it by one in its own outcome's transaction, and a
maintenance sweep releases callbacks whose members ended some other way
(rescued to FAILED, cancelled or deleted by an operator).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.models import Exists, OuterRef
from django.utils.dateparse import parse_datetime

from .constants import JobStatus

if TYPE_CHECKING:  # the db layer imports models: never at package import
    from .db import Backend, Outcome

#: Keys of ``Job.meta``.
THEN = "then"
CALLBACK = "callback"


def serialize(prepared: Any) -> dict[str, Any]:
    """A prepared job as JSON, to be stored in another job's meta until it is due."""
    data = dataclasses.asdict(prepared)
    if isinstance(data["run_at"], datetime):
        data["run_at"] = data["run_at"].isoformat()
    if data["run_id"] is not None:
        data["run_id"] = str(data["run_id"])
    return data


def deserialize(data: dict[str, Any]) -> Any:
    from .enqueue import PreparedJob

    data = dict(data)
    if data.get("run_at"):
        data["run_at"] = parse_datetime(data["run_at"])
    if data.get("run_id"):
        data["run_id"] = uuid.UUID(data["run_id"])
    return PreparedJob(**data)


def attach(outcome: Outcome) -> Outcome:
    """Add what the job's meta asks for: chained jobs on success, group releases when final."""
    meta = outcome.job.meta_dict
    if not meta:
        return outcome
    if outcome.status == JobStatus.SUCCESSFUL and meta.get(THEN):
        for data in meta[THEN]:
            follow = deserialize(data)
            follow.parent_id = outcome.job.id
            follow.run_id = follow.run_id or outcome.job.run_id
            outcome.follow_ups.append(follow)
    if outcome.is_final and meta.get(CALLBACK):
        outcome.releases.append(int(meta[CALLBACK]))
    return outcome


def write(backend: Backend, outcomes: list[Outcome]) -> set[int]:
    """Write outcomes; with follow-ups, in one transaction with them. Returns ids written."""
    if not any(outcome.follow_ups or outcome.releases for outcome in outcomes):
        return backend.record(outcomes)
    from .enqueue import insert_now

    in_transaction = connections[backend.alias].in_atomic_block
    with transaction.atomic(using=backend.alias, savepoint=not in_transaction):
        written = backend.record(outcomes)
        follow_ups = [
            follow
            for outcome in outcomes
            if outcome.job.id in written
            for follow in outcome.follow_ups
        ]
        if follow_ups:
            insert_now(follow_ups, backend.alias)
        releases = Counter(
            callback
            for outcome in outcomes
            if outcome.job.id in written and outcome.is_final
            for callback in outcome.releases
        )
        if releases:
            backend.release_waiting(dict(releases))
    return written


def release_finished_groups(alias: str) -> int:
    """Release callbacks whose group has no READY or RUNNING member left (maintenance)."""
    from .models import Job

    pending = (
        Job.objects.using(alias)
        .filter(
            run_id=OuterRef("run_id"),
            status__in=[JobStatus.READY, JobStatus.RUNNING],
            waiting_for=0,
        )
        .exclude(id=OuterRef("id"))
    )
    return (
        Job.objects.using(alias)
        .filter(waiting_for__gt=0, status=JobStatus.READY)
        .exclude(Exists(pending))
        .update(waiting_for=0)
    )


def meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
