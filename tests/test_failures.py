"""Errors are always storable: cleaned, truncated, never raising while being described."""

from __future__ import annotations

import json

from django_durable_jobs.failures import (
    MAX_MESSAGE_CHARS,
    clean_text,
    history_entry,
    safe_message,
)


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no")


class BadBoth(Exception):
    def __str__(self):
        raise RuntimeError("no")

    def __repr__(self):
        raise RuntimeError("no")


class NotText(Exception):
    def __str__(self):
        return 42  # type: ignore[return-value]


def test_nul_and_lone_surrogates_become_storable_text():
    raw = b"caf\xe9 \x00 end".decode("utf-8", "surrogateescape")
    cleaned = clean_text(raw, 100)
    cleaned.encode("utf-8")  # valid UTF-8 now
    assert "\x00" not in cleaned
    assert cleaned.startswith("caf")
    assert cleaned.endswith("end")


def test_megabyte_message_keeps_head_and_tail():
    text = "HEAD" + "x" * 10_000_000 + "TAIL"
    cleaned = clean_text(text, MAX_MESSAGE_CHARS)
    assert len(cleaned) < MAX_MESSAGE_CHARS + 100
    assert cleaned.startswith("HEAD")
    assert cleaned.endswith("TAIL")
    assert "characters truncated" in cleaned


def test_exceptions_that_cannot_print_themselves():
    assert "BadStr" in safe_message(BadStr())
    assert "str() and repr() both raised" in safe_message(BadBoth())
    assert safe_message(NotText()) == "NotText()"  # str() refused a non-text __str__


def test_history_entry_is_json_storable_for_any_exception():
    try:
        raise BadBoth()
    except BadBoth as exc:
        entry = history_entry(attempt=1, outcome="error", message=safe_message(exc), exception=exc)
    json.dumps(entry)
    assert entry["exception_class"].endswith("BadBoth")
    assert "raise BadBoth()" in entry["traceback"]
