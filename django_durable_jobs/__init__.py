"""Durable background jobs and a scheduler for Django, on the database you already have.

from django_durable_jobs import job

@job
def send_welcome(user_id: int) -> None: ...

send_welcome.enqueue(user_id=1)
"""

from .constants import JobStatus
from .context import JobContext, current_job
from .definitions import JobDefinition, job
from .enqueue import GroupHandle, aenqueue_many, enqueue_many, group
from .exceptions import (
    Cancel,
    DurableJobsError,
    InvalidJobArguments,
    InvalidJobDefinition,
    InvalidJobOptions,
    InvalidProgress,
    JobFailed,
    JobNotFinished,
    PayloadTooLarge,
    Retry,
    Snooze,
    UnknownJob,
    UnknownQueue,
)
from .handle import JobHandle
from .progress import Progress
from .registry import get as get_job
from .retry import ExponentialBackoff, FixedDelay, RetryPolicy
from .steps import Done, Next, RunHandle, Steps, step
from .uniqueness import Unique

__version__ = "0.1.0"

__all__ = [
    "Cancel",
    "Done",
    "DurableJobsError",
    "ExponentialBackoff",
    "FixedDelay",
    "GroupHandle",
    "InvalidJobArguments",
    "InvalidJobDefinition",
    "InvalidJobOptions",
    "InvalidProgress",
    "JobContext",
    "JobDefinition",
    "JobFailed",
    "JobHandle",
    "JobNotFinished",
    "JobStatus",
    "Next",
    "PayloadTooLarge",
    "Progress",
    "Retry",
    "RetryPolicy",
    "RunHandle",
    "Snooze",
    "Steps",
    "Unique",
    "UnknownJob",
    "UnknownQueue",
    "aenqueue_many",
    "current_job",
    "enqueue_many",
    "get_job",
    "group",
    "job",
    "step",
]
