"""``jobs show ID``: one job in full: arguments, result, and every attempt."""

from __future__ import annotations

import json
from typing import Any

from .. import operations
from ..models import Job
from ..operations.selection import jobs
from .common import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    add_json_argument,
    format_time,
    printable,
    write_json,
)
from .list import job_summary

CLIP = 2000


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show", help="show one job in full", description="Show a job: arguments, result, history."
    )
    parser.add_argument("id", type=int, metavar="ID")
    parser.add_argument("--full", action="store_true", help="do not shorten long values")
    add_json_argument(parser)
    parser.set_defaults(handler=handle)


def job_details(job: Job) -> dict[str, Any]:
    data = job_summary(job)
    data.pop("last_error")
    data.update(
        args=job.args,
        kwargs=job.kwargs,
        result=job.result,
        history=operations.history(job),
        meta=job.meta,
        timeout=job.timeout,
        expires_at=job.expires_at,
        lease_expires_at=job.lease_expires_at,
        cancel_requested_at=job.cancel_requested_at,
        unique_key=job.unique_key,
        concurrency_key=job.concurrency_key,
        run_id=str(job.run_id) if job.run_id else None,
        parent_id=job.parent_id,
        waiting_for=job.waiting_for,
    )
    return data


def _clip(text: str, full: bool) -> str:
    if full or len(text) <= CLIP:
        return text
    return f"{text[:CLIP]}\n… ({len(text) - CLIP:,} more characters: --full shows them)"


#: Job ids are 64-bit: a larger number names no job (and would not fit in a query).
MAX_ID = 2**63 - 1


def handle(command: Any, options: dict[str, Any]) -> int:
    job = jobs().filter(id=options["id"]).first() if 0 < options["id"] <= MAX_ID else None
    if job is None:
        command.stderr.write(f"No job #{options['id']}.")
        return EXIT_INCOMPLETE
    if options["json"]:
        write_json(command, job_details(job))
        return EXIT_OK
    full = options["full"]

    def out(text: str) -> None:
        command.stdout.write(printable(text))

    out(f"Job #{job.id}  {job.name}  [{job.status}]")
    facts = [
        ("queue", job.queue),
        ("priority", job.priority),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("run at", format_time(job.run_at)),
        ("enqueued", format_time(job.enqueued_at)),
        ("started", format_time(job.started_at)),
        ("finished", format_time(job.finished_at)),
        ("duration", f"{job.duration:.3f}s" if job.duration is not None else "-"),
        ("worker", job.worker_id or "-"),
    ]
    if job.expires_at:
        facts.append(("expires", format_time(job.expires_at)))
    if job.cancel_requested_at:
        facts.append(("cancel requested", format_time(job.cancel_requested_at)))
    for label, key in (("unique key", "unique_key"), ("run", "run_id"), ("parent", "parent_id")):
        if getattr(job, key):
            facts.append((label, getattr(job, key)))
    for label, value in facts:
        out(f"  {label + ':':<18}{value}")
    for label, value in (("args", job.args), ("kwargs", job.kwargs), ("result", job.result)):
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
        out(f"{label}:\n" + _indent(_clip(text, full)))
    if job.meta:
        out("meta:\n" + _indent(json.dumps(job.meta, indent=2, ensure_ascii=False, default=str)))
    entries = operations.history(job)
    out(f"history ({len(entries)} entr{'y' if len(entries) == 1 else 'ies'}):")
    for entry in entries:
        by = f" by {entry['by']}" if entry.get("by") else ""
        out(
            f"  attempt {entry.get('attempt')}: {entry.get('outcome')}{by} at {entry.get('at')}"
            + (f" on worker {entry['worker']}" if entry.get("worker") else "")
        )
        if entry.get("exception_class"):
            out(f"    {entry['exception_class']}: {_clip(str(entry.get('message')), full)}")
        else:
            out(f"    {_clip(str(entry.get('message')), full)}")
        if entry.get("traceback"):
            out(_indent(_clip(entry["traceback"].rstrip(), full), "    | "))
    return EXIT_OK


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
