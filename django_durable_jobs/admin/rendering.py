"""Showing job data safely: escaped, pretty JSON, clipped when large, statuses as badges.

Everything user-supplied (arguments, results, error messages, tracebacks) goes
through ``format_html``/``escape``; nothing here marks raw input as safe.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..constants import JobStatus

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

#: Characters of a value shown before "show all".
CLIP_CHARS = 20_000


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@dataclasses.dataclass
class Clipped:
    """A long text cut for display; ``hidden`` characters are left out."""

    text: str
    total: int
    hidden: int

    @property
    def clipped(self) -> bool:
        return self.hidden > 0


def clip(text: str, limit: int = CLIP_CHARS, *, full: bool = False) -> Clipped:
    if full or len(text) <= limit:
        return Clipped(text, len(text), 0)
    return Clipped(text[:limit], len(text), len(text) - limit)


def size_label(characters: int) -> str:
    if characters < 1000:
        return f"{characters} characters"
    if characters < 1_000_000:
        return f"{characters / 1000:.1f} k characters"
    return f"{characters / 1_000_000:.1f} M characters"


STATUS_CLASSES: dict[str, str] = {
    JobStatus.READY: "ready",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCESSFUL: "successful",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def status_badge(status: str, label: StrOrPromise | None = None) -> SafeString:
    css = STATUS_CLASSES.get(status, "unknown")
    shown: StrOrPromise = label or dict(JobStatus.choices).get(status) or status
    return format_html('<span class="ddj-badge ddj-{}">{}</span>', css, shown)


OUTCOME_CLASSES = {
    "error": "failed",
    "timeout": "failed",
    "unknown_job": "failed",
    "decode_error": "failed",
    "unstorable_result": "failed",
    "left_transaction_open": "failed",
    "import_error": "failed",
    "definition_error": "failed",
    "internal_error": "failed",
    "worker_lost": "cancelled",
    "interrupted": "cancelled",
    "retry": "ready",
    "cancelled": "cancelled",
    "success": "successful",
    "running": "running",
    "operator_retry": "operator",
    "operator_cancel": "operator",
}


def outcome_badge(outcome: str | None) -> SafeString:
    from ..constants import AttemptOutcome

    labels = dict(AttemptOutcome.choices)
    outcome = outcome or "unknown"
    css = OUTCOME_CLASSES.get(outcome, "unknown")
    return format_html(
        '<span class="ddj-badge ddj-{}">{}</span>', css, labels.get(outcome, outcome)
    )


def when(value: datetime | None, now: datetime | None = None) -> str | None:
    """``2026-01-31 12:00:05 UTC (3 min ago)``, in the current time zone."""
    if value is None:
        return None
    now = now or timezone.now()
    local = timezone.localtime(value)
    seconds = (now - value).total_seconds()
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''} ({relative(seconds)})".replace(
        "  ", " "
    )


def relative(seconds: float) -> str:
    """``3 min ago`` / ``in 2 h``."""
    amount = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if amount >= size:
            text = f"{amount / size:.0f} {unit}"
            break
    else:
        text = f"{amount:.0f} s"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def parse_when(value: Any) -> datetime | None:
    """A history timestamp (ISO text from Python or the database) as a datetime."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return parse_datetime(value.replace(" ", "T", 1))
    except ValueError:
        return None


def worker_label(value: Any) -> str:
    """Worker ids are stored with or without dashes depending on the database."""
    if not value:
        return ""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def dotted(name: str) -> SafeString:
    """A dotted name (``shop.jobs.send``) free to wrap after each dot, escaped."""
    return format_html_join(mark_safe(".<wbr>"), "{}", ((part,) for part in name.split(".")))


def progress_bar(value: Any, *, with_message: bool = True, compact: bool = False) -> SafeString:
    """A job's progress as a ``<progress>`` bar and "done / total (n%)", escaped; "" if none.

    No total: an indeterminate bar and the count. ``with_message``: the job's
    message too (it may hold data: shown with the payload permission only).
    ``compact``: the bar and the percentage only, on a line of its own (the job list).
    """
    from ..progress import Progress

    progress = Progress.from_value(value)
    if progress is None:
        return mark_safe("")  # (a constant: nothing of the job in it)
    done = _number(progress.done)
    if progress.total is None:
        bar = format_html('<progress class="ddj-progress" title="{}"></progress>', done)
        label = short = done
    else:
        empty = progress.total == 0  # 0 of 0: nothing to do, so complete
        label = f"{done} / {_number(progress.total)} ({progress.percent}%)"
        short = f"{progress.percent}%"
        bar = format_html(
            '<progress class="ddj-progress" max="{}" value="{}" title="{}">{}</progress>',
            1 if empty else progress.total,
            1 if empty else progress.done,
            label,
            short,
        )
    if compact:
        return format_html(
            '<span class="ddj-progress-line">{} <span class="ddj-progress-label">{}</span></span>',
            bar,
            short,
        )
    message = progress.message if with_message and progress.message else ""
    return format_html(
        '<span class="ddj-progress-cell">{} <span class="ddj-progress-label">{}{}{}</span></span>',
        bar,
        label,
        " · " if message else "",
        message,
    )


def _number(value: float) -> str:
    """``1,234`` for whole numbers, ``12.5`` otherwise."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.6g}"
