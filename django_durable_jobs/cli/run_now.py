"""``jobs run-now``: READY jobs scheduled for later become due now."""

from __future__ import annotations

from typing import Any

from .. import operations
from .job_action import register_job_action


def register(subparsers: Any) -> None:
    register_job_action(
        subparsers,
        "run-now",
        operations.run_now,
        help="make scheduled READY jobs due now",
        description="READY jobs whose run time is in the future (scheduled, or waiting to "
        "retry) become due now. Example: jobs run-now 42 43",
    )
