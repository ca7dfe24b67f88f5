"""What an operation did, what it refused and why: one object for the admin and the CLI."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Refusal:
    """Jobs left alone for one reason. ``at_least``: the count was capped (a large filter)."""

    reason: str
    count: int
    at_least: bool = False

    def __str__(self) -> str:
        count = f"{self.count:,}{'+' if self.at_least else ''}"
        return f"{count} {self.reason}"


@dataclasses.dataclass
class OperationResult:
    """The answer of every job operation.

    ``done``: rows changed. ``refused``: by status (or ``NOT_FOUND``), with the
    reason. ``remaining``: the operation stopped at its ``limit`` and more jobs
    match. ``dry_run``: nothing was changed; ``done`` is what would have been.
    """

    action: str
    target: str
    done: int = 0
    refused: dict[str, Refusal] = dataclasses.field(default_factory=dict)
    remaining: bool = False
    dry_run: bool = False
    done_at_least: bool = False

    NOT_FOUND = "NOT_FOUND"

    def refuse(self, key: str, reason: str, count: int, *, at_least: bool = False) -> None:
        if count > 0:
            self.refused[key] = Refusal(reason, count, at_least)

    @property
    def refused_count(self) -> int:
        return sum(refusal.count for refusal in self.refused.values())

    @property
    def complete(self) -> bool:
        """Everything asked for was done: nothing refused, nothing left over."""
        return not self.refused and not self.remaining

    def count_text(self) -> str:
        """``1,234 jobs`` (``+`` when capped): how many a dry run found it would change."""
        plus = "+" if self.done_at_least or self.remaining else ""
        return f"{self.done:,}{plus} job{'' if self.done == 1 and not plus else 's'}"

    def summary(self) -> str:
        """One sentence for a message or a terminal."""
        verb = {
            "retry": "retried",
            "cancel": "cancelled",
            "run_now": "made due now",
            "delete": "deleted",
            "purge": "deleted",
        }.get(self.action, self.action)
        would = "would be " if self.dry_run else ""
        jobs = "job" if self.done == 1 else "jobs"
        plus = "+" if self.done_at_least else ""
        text = f"{self.done:,}{plus} {jobs} {would}{verb} ({self.target})."
        if self.refused:
            text += " Left alone: " + "; ".join(str(r) for r in self.refused.values()) + "."
        if self.remaining:
            text += " More jobs match: stopped at the limit; run it again to go on."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "done": self.done,
            "done_at_least": self.done_at_least,
            "dry_run": self.dry_run,
            "remaining": self.remaining,
            "refused": {
                key: {"count": r.count, "at_least": r.at_least, "reason": r.reason}
                for key, r in self.refused.items()
            },
        }
