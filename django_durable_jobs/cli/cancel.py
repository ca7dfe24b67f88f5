"""``jobs cancel``: READY jobs to CANCELLED; RUNNING jobs cancelled and fenced."""

from __future__ import annotations

from typing import Any

from .. import operations
from .job_action import register_job_action


def register(subparsers: Any) -> None:
    register_job_action(
        subparsers,
        "cancel",
        operations.cancel,
        help="cancel READY or RUNNING jobs",
        description="Cancel READY jobs, and RUNNING ones: a running job is marked CANCELLED "
        "at once and whatever it reports later is ignored. Use --status READY to spare running "
        "jobs. Example: jobs cancel --name shop.jobs.sync --status READY",
    )
