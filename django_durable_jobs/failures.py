"""Turn any exception into a history entry that is always safe to store and show.

Exceptions whose ``str()`` raises, megabyte messages, NUL characters and text
that is not valid UTF-8 must never stop a worker from recording an attempt;
they are stored truncated, with what could not be shown replaced.
"""

from __future__ import annotations

import traceback
import uuid
from typing import Any

from django.utils import timezone

MAX_MESSAGE_CHARS = 10_000
MAX_TRACEBACK_CHARS = 100_000


def clean_text(text: str, limit: int) -> str:
    """Valid UTF-8 without NUL, at most ``limit`` characters (head and tail kept)."""
    text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8", "replace")
    if len(text) > limit:
        keep = limit // 2
        skipped = len(text) - 2 * keep
        text = f"{text[:keep]}\n[... {skipped:,} characters truncated ...]\n{text[-keep:]}"
    return text


def class_path(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_message(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:
        try:
            message = repr(exc)
        except Exception:
            message = f"<{class_path(exc)} whose str() and repr() both raised>"
    return clean_text(message, MAX_MESSAGE_CHARS)


def safe_traceback(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = f"<the traceback of {class_path(exc)} could not be formatted>"
    return clean_text(text, MAX_TRACEBACK_CHARS)


def history_entry(
    *,
    attempt: int,
    outcome: str,
    message: str,
    exception: BaseException | None = None,
    worker_id: uuid.UUID | None = None,
    started_at: str | None = None,
    with_traceback: bool = True,
) -> dict[str, Any]:
    """One attempt of the job's history (the ``errors`` list)."""
    return {
        "attempt": attempt,
        "outcome": outcome,
        "exception_class": class_path(exception) if exception is not None else None,
        "message": clean_text(message, MAX_MESSAGE_CHARS),
        "traceback": safe_traceback(exception) if exception and with_traceback else None,
        "worker": str(worker_id) if worker_id else None,
        "started_at": started_at,
        "at": timezone.now().isoformat(),
    }
