"""The codec of a job's ``meta``: jobs that follow it (``then``) and the group it belongs to.

A chained job (``using(then=...)``) is stored as JSON in the first job's meta
until that job succeeds; a group member stores the id of its group's
callback. This module only encodes and decodes; ``worker.outcomes`` decides
what an outcome starts, and ``worker.recorder`` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from .rows import PreparedJob

#: Keys of ``Job.meta``.
THEN = "then"
CALLBACK = "callback"
#: Times the job was on a worker that was lost before the job was known to have started.
ORPHANED = "orphaned"


def serialize(prepared: PreparedJob) -> dict[str, Any]:
    """A prepared job as JSON, to be stored in another job's meta until it is due."""
    data = dataclasses.asdict(prepared)
    for key in ("run_at", "expires_at"):
        if isinstance(data[key], datetime):
            data[key] = data[key].isoformat()
    if data["run_id"] is not None:
        data["run_id"] = str(data["run_id"])
    return data


def deserialize(data: dict[str, Any]) -> PreparedJob:
    """The prepared job ``serialize`` stored; raises on anything else."""
    data = dict(data)
    for key in ("run_at", "expires_at"):
        if data.get(key):
            data[key] = parse_datetime(data[key])
    if data.get("run_id"):
        data["run_id"] = uuid.UUID(data["run_id"])
    return PreparedJob(**data)


def chained(meta: dict[str, Any]) -> list[PreparedJob]:
    """The jobs to enqueue when the job with this meta succeeds."""
    return [deserialize(data) for data in meta.get(THEN) or ()]


def callback(meta: dict[str, Any]) -> int | None:
    """The id of the group callback waiting for the job with this meta, if any."""
    value = meta.get(CALLBACK)
    return None if value is None else int(value)


def meta_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":"))


def with_meta(meta_json_text: str, extra: dict[str, Any]) -> str:
    """``meta_json_text`` with ``extra``'s keys added (or replaced)."""
    return meta_json({**json.loads(meta_json_text), **extra})
