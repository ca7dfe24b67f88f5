"""py-spy stacks of a worker, sorted into the places a job's time goes.

``classify`` puts one sample (frames from root to leaf) in a thread role and a
category by the worker's landmark functions in it (claim, dispatch, execute,
record, logging, connection handling...); the rules go from the most specific
landmark to the most general, and the first match wins. ``_leaf_layer`` says
which layer the innermost frame belongs to (ours, Django, psycopg, logging...).
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

#: One frame of py-spy's raw output: "Class.function (path/file.py:line)".
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _has(frames, func, file_part=""):
    return any(f == func and file_part in p for f, p in frames)


def _below(frames, func, file_part=""):
    """Frames under the first ``func`` frame (exclusive)."""
    for i, (f, p) in enumerate(frames):
        if f == func and file_part in p:
            return frames[i + 1 :]
    return []


def _leaf_layer(frames) -> str:
    func, path = frames[-1]
    path = "/" + path
    if "django_durable_jobs" in path:
        return "django-durable-jobs"
    if "/psycopg/" in path or "psycopg_binary" in path or "psycopg_c" in path:
        return "psycopg"
    if "/django/" in path:
        return "Django"
    if "logging/" in path:
        return "logging"
    if path.endswith(("threading.py", "queue.py")) or "_thread" in func:
        return "threading/queue"
    if "uuid.py" in path or "json/" in path or "datetime" in path or "zoneinfo" in path:
        return "stdlib (json, uuid, datetime)"
    return "other: " + Path(path).name


def _db_part(sub) -> str:
    """Inside a claim or record: time in psycopg vs Django's cursor wrapper vs our code."""
    if any(p.startswith("psycopg") for _, p in sub):
        return "psycopg (send, wait, fetch)"
    if any(p.startswith("django/db/") for _, p in sub):
        return "Django connection/cursor"
    return "building the statement / rows"


def classify(frames: list[tuple[str, str]]) -> tuple[str, str]:
    """(role of the thread, category) of one stack sample."""
    worker, pool = "django_durable_jobs/worker/process.py", "django_durable_jobs/worker/pool.py"
    completer = "django_durable_jobs/worker/completer.py"
    execution = "django_durable_jobs/worker/execution.py"
    if _has(frames, "_thread_main", pool):
        role = "executor"
        if _has(frames, "execute", execution):
            sub = _below(frames, "execute", "execution.py")
            if _has(sub, "_call", "execution.py"):
                return role, "execute: the job's own call"
            if _has(sub, "succeeded", "outcomes.py"):
                return role, "execute: encode result"
            if _has(sub, "discard_leaked_transactions"):
                return role, "execute: leaked-transaction check"
            if _has(sub, "load_payload"):
                return role, "execute: decode arguments"
            if any("django/utils/timezone" in p for _, p in sub):
                return role, "execute: timestamps"
            return role, "execute: other (context, registry, signals)"
        if _has(frames, "log_outcome"):
            return role, "logging the outcome (atomic jobs)"
        if _has(frames, "submit", completer):
            return role, "handing the outcome to the completer"
        if _has(frames, "tidy_connections"):
            return role, "connection tidy between jobs"
        if _has(frames, "_free", pool) or _has(frames, "_leave", pool):
            return role, "bookkeeping (lock, counters, wake)"
        if _has(frames, "get", "queue.py") or _below(frames, "_thread_main", pool) == []:
            return role, "waiting for a job (inbox)"
        return role, "executor: other"
    if _has(frames, "_run", completer):
        role = "completer"
        if _has(frames, "log_outcome"):
            return role, "logging the outcomes (INFO line per job)"
        if _has(frames, "record", "db/postgresql.py"):
            return role, "record outcomes: " + _db_part(
                _below(frames, "record", "db/postgresql.py")
            )
        if _has(frames, "get", "queue.py"):
            return role, "waiting for outcomes"
        return role, "completer: other (bookkeeping, wake-ups)"
    if _has(frames, "_claim_loop", worker):
        role = "claimer"
        if _has(frames, "claim", "db/postgresql.py"):
            return role, "claim: " + _db_part(_below(frames, "claim", "db/postgresql.py"))
        if _has(frames, "submit", pool):
            return role, "dispatch (inbox put)"
        if _has(frames, "wait", "threading.py"):
            return role, "waiting for a free slot / wake-up"
        return role, "claim loop: other"
    if _has(frames, "_run", "django_durable_jobs/worker/watchdog.py"):
        return "watchdog", "timeout checks, start marks"
    if _has(frames, "run", "django_durable_jobs/worker/heartbeat.py"):
        return "heartbeat", "heartbeat and maintenance"
    if _has(frames, "run", "django_durable_jobs/worker/listener.py"):
        return "listener", "LISTEN connection"
    if _has(frames, "_shutdown", worker):
        return "claimer", "shutdown"
    if _has(frames, "run", worker) and _has(frames, "join", "threading.py"):
        return "main", "waiting for the body thread"
    return "startup/other", "start-up (Django setup, checks, registration) and other"


def parse_raw(path: Path):
    """py-spy --format raw --threads: 'thread (tid): name;frame;frame... count' lines."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        parts = stack.split(";")
        frames = []
        for part in parts[1:]:
            m = FRAME.match(part.strip())
            if m:  # "Worker._run" -> "_run": the rules name functions, not classes
                frames.append((m["func"].rsplit(".", 1)[-1], m["file"]))
        if frames:
            yield frames, int(count)


def summarize(path: Path) -> dict:
    categories: collections.Counter = collections.Counter()
    layers: collections.Counter = collections.Counter()
    roles: collections.Counter = collections.Counter()
    for frames, count in parse_raw(path):
        role, category = classify(frames)
        roles[role] += count
        categories[(role, category)] += count
        if role != "startup/other":
            layers[_leaf_layer(frames)] += count
    return {
        "roles": dict(roles),
        "categories": {f"{r}|{c}": n for (r, c), n in categories.items()},
        "layers": dict(layers),
    }
