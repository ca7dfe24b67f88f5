"""``jobs retry``: FAILED or CANCELLED jobs back to READY with fresh attempts."""

from __future__ import annotations

from typing import Any

from .. import operations
from .job_action import register_job_action


def register(subparsers: Any) -> None:
    register_job_action(
        subparsers,
        "retry",
        operations.retry,
        help="retry FAILED or CANCELLED jobs",
        description="Put FAILED or CANCELLED jobs back to READY, due now, with fresh attempts; "
        "their attempt history is kept. Example: jobs retry --status FAILED --queue emails",
    )
