"""Names and limits shared by every module: statuses, priority bounds, the NOTIFY channel."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

PRIORITY_MIN = -100
PRIORITY_MAX = 100
DEFAULT_PRIORITY = 0

#: PostgreSQL NOTIFY channel that wakes idle workers; the payload is the queue name.
NOTIFY_CHANNEL = "durable_jobs"

#: Queue names: short, printable, safe in URLs, logs and NOTIFY payloads.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,100}$"
MAX_JOB_NAME_LENGTH = 255

#: The published documentation: messages and check hints link here, not to files of
#: the repository that a ``pip install`` does not have.
DOCS_URL = "https://github.com/django-durable-jobs/django-durable-jobs/blob/main/docs"


def docs_url(page: str) -> str:
    """The published address of a docs page: ``docs_url("howto/periodic-jobs.md")``."""
    return f"{DOCS_URL}/{page}"


class JobStatus(models.TextChoices):
    """Where a job is in its life.

    The names follow Django's ``django.tasks`` where the meaning matches, plus
    ``CANCELLED``. "Waiting to retry" is ``READY`` with ``attempts > 0`` and a
    future ``run_at``.
    """

    READY = "READY", _("Ready")
    RUNNING = "RUNNING", _("Running")
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")

    @classmethod
    def finished(cls) -> frozenset[JobStatus]:
        """Statuses a job never leaves by itself."""
        return frozenset({cls.SUCCESSFUL, cls.FAILED, cls.CANCELLED})


class AttemptOutcome(models.TextChoices):
    """Why an attempt ended, as recorded in a job's attempt history."""

    ERROR = "error", _("Raised an exception")
    RETRY = "retry", _("Asked for a retry")
    SNOOZED = "snoozed", _("Snoozed")
    CANCELLED = "cancelled", _("Cancelled itself")
    EXPIRED = "expired", _("Expired before it started")
    TIMEOUT = "timeout", _("Timed out")
    UNSTORABLE_RESULT = "unstorable_result", _("Result could not be stored")
    LEFT_TRANSACTION_OPEN = "left_transaction_open", _("Left a transaction open")
    WORKER_LOST = "worker_lost", _("Worker lost")
    INTERRUPTED = "interrupted", _("Interrupted")
    IMPORT_ERROR = "import_error", _("Job code could not be imported")
    DEFINITION_ERROR = "definition_error", _("Job code failed to load")
    UNKNOWN_JOB = "unknown_job", _("Unknown job")
    DECODE_ERROR = "decode_error", _("Payload could not be decoded")
    INTERNAL_ERROR = "internal_error", _("Internal error of the worker")
    # Shown in the history, derived from the row (never stored as an entry).
    SUCCEEDED = "success", _("Succeeded")
    RUNNING = "running", _("Running")
    # Operator actions, recorded in the same history so it reads as one story.
    OPERATOR_RETRY = "operator_retry", _("Retried by an operator")
    OPERATOR_CANCEL = "operator_cancel", _("Cancelled by an operator")


#: Attempts that were charged and went wrong: what the dashboard counts as failed
#: (``models.FailedAttempts``). Not a job's own retry request, cancellation or a
#: shutdown's interruption.
FAILED_ATTEMPT_OUTCOMES: frozenset[str] = frozenset(
    {
        AttemptOutcome.ERROR,
        AttemptOutcome.TIMEOUT,
        AttemptOutcome.UNSTORABLE_RESULT,
        AttemptOutcome.LEFT_TRANSACTION_OPEN,
        AttemptOutcome.WORKER_LOST,
        AttemptOutcome.IMPORT_ERROR,
        AttemptOutcome.DEFINITION_ERROR,
        AttemptOutcome.UNKNOWN_JOB,
        AttemptOutcome.DECODE_ERROR,
        AttemptOutcome.INTERNAL_ERROR,
    }
)

#: One bit per status, for ``Job.unique_states``: a job keeps its unique key only
#: while its status's bit is set.
STATUS_BITS: dict[str, int] = {
    JobStatus.READY: 1,
    JobStatus.RUNNING: 2,
    JobStatus.SUCCESSFUL: 4,
    JobStatus.FAILED: 8,
    JobStatus.CANCELLED: 16,
}
