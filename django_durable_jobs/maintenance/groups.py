"""Release group callbacks whose members ended some other way than by their own outcome.

Each member that ends lowers its callback's ``waiting_for`` in its outcome's
transaction; a member rescued to FAILED, cancelled or deleted by an operator
does not, so this sweep releases callbacks with no READY or RUNNING member left.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef

from ..constants import JobStatus
from ..models import Job


def release_finished_groups(alias: str) -> int:
    """Release callbacks whose group has no READY or RUNNING member left; how many."""
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
