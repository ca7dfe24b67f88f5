"""Jobs the test suite enqueues; found by autodiscovery like a project's own."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

from django.db.models import F

from django_durable_jobs import (
    Cancel,
    ExponentialBackoff,
    FixedDelay,
    JobStatus,
    Retry,
    Unique,
    current_job,
    job,
)

from .models import Counter


@job
def add(a, b):
    return a + b


@job
def echo(*args, **kwargs):
    """Returns what it was given, to prove arguments round-trip."""
    return {"args": list(args), "kwargs": kwargs, "types": [type(a).__name__ for a in args]}


@job
def noop():
    return None


@job
def bump(key: str) -> int:
    """Increment a counter; the counter proves how many times the body ran."""
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    return 1


@job(atomic=True)
def bump_atomic(key: str, sleep: float = 0.0) -> None:
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if sleep:
        time.sleep(sleep)


@job(max_attempts=3, retry=FixedDelay(0.2))
def always_fails(message: str = "boom"):
    raise ValueError(message)


@job(max_attempts=4)
def flaky(fail_times: int, key: str) -> str:
    """Fails ``fail_times`` times, then succeeds."""
    context = current_job()
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if context.attempt <= fail_times:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return f"succeeded on attempt {context.attempt}"


@job(max_attempts=3)
def asks_retry(delay: float) -> str:
    context = current_job()
    if context.attempt == 1:
        raise Retry("not yet", delay=delay)
    return "done"


@job
def cancels_itself(reason: str):
    raise Cancel(reason)


@job
def sleeper(seconds: float, marker: str = "") -> str:
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@job(takes_context=True)
def with_context(context, label: str) -> dict:
    return {"label": label, "job_id": context.job_id, "attempt": context.attempt}


@job
def returns_unstorable():
    return {1, 2, 3}


@job(name="stable.name")
def renamed_function():
    return "stable"


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("cannot print me")


@job(max_attempts=1)
def raises_unprintable():
    raise Unprintable()


@job(max_attempts=1)
def raises_huge():
    raise ValueError("x" * 10_000_000)


@job
async def async_add(a, b):
    return a + b


@job(max_attempts=3, retry=ExponentialBackoff(base=0.3, factor=2, jitter=0))
def fails_with_backoff():
    raise ValueError("still broken")


@job
def record_order(label: str) -> str:
    """Appends to a counter key so tests can see the order jobs ran in."""
    Counter.objects.create(key=f"order-{label}-{time.monotonic_ns()}")
    return label


# -- jobs for the fault-injection suite ------------------------------------------


def _mark(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))


@job(max_attempts=3)
def slow_first_attempt(marker: str, key: str = "") -> str:
    """Attempt 1 announces itself and hangs (to be killed or paused); later ones finish."""
    attempt = current_job().attempt
    if key:
        Counter.objects.filter(key=key).update(value=F("value") + 1)
    if attempt == 1:
        _mark(marker)
        time.sleep(4 if "pause" in marker else 60)
    return f"attempt {attempt}"


@job(atomic=True, max_attempts=3)
def atomic_slow_first_attempt(key: str, marker: str) -> str:
    """Writes inside its transaction, then hangs on attempt 1: a kill must roll it back."""
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if current_job().attempt == 1:
        _mark(marker)
        time.sleep(60)
    return "committed"


@job(atomic=True, max_attempts=3)
def writes_then_waits(key: str, marker: str, go: str) -> str:
    """Attempt 1 reports its backend pid, then waits for the test before its next query."""
    from django.db import connection

    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if current_job().attempt == 1:
        if connection.vendor == "postgresql":
            session = connection.connection.info.backend_pid
        else:
            session = connection.connection.thread_id()  # MySQL: the connection id
        Path(marker).write_text(str(session))
        deadline = time.monotonic() + 30
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        Counter.objects.filter(key=key).update(value=F("value") + 1)  # on a killed backend
    return "done"


@job(max_attempts=3, retry=ExponentialBackoff(base=0.3, factor=2, jitter=0, max_delay=1.0))
def always_fails_counted(key: str):
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    raise RuntimeError("fails every time")


@job(max_attempts=2)
def kills_its_worker():
    """A poison pill: takes its whole worker process down, every time.

    It dies a moment after it starts, as real poison does (an OOM kill, a segfault
    deep in a C call): long enough for the worker to claim the jobs behind it ahead,
    so that the crash tests always have bystanders to protect.
    """
    time.sleep(0.3)
    os._exit(1)


@job(max_attempts=1)
def spin(seconds: float) -> str:
    """Burns CPU in pure Python without ever blocking."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return "spun"


@job(max_attempts=1)
def deep_recursion(depth: int = 0):
    if depth > 600:
        raise RecursionError("deep enough: " + "frame " * 50)
    return deep_recursion.func(depth + 1)


@job
def slow_db_job(key: str, seconds: float) -> str:
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    time.sleep(seconds)
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    return "ok"


@job(takes_context=True)
def periodic_probe(context, label: str = "") -> dict:
    """A periodic job that reports the tick it was enqueued for (not "now")."""
    return {
        "label": label,
        "schedule": context.schedule,
        "fire_time": context.fire_time.isoformat() if context.fire_time else None,
    }


@job
def report(kind: str, limit: int = 10) -> str:
    return f"{kind}:{limit}"


def not_a_job():
    """A plain function: a PERIODIC entry naming it is refused."""


@job(max_attempts=1)
def cooperative(marker: str) -> str:
    """Works in small steps and stops when an operator cancels it."""
    context = current_job()
    _mark(marker)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if context.cancel_requested:
            Path(marker + ".stopped").write_text("stopped")
            return "stopped early"
        time.sleep(0.05)
    return "ran to the end"


@job
async def async_bump(key: str) -> dict:
    """Uses the async ORM; reports the attempt and whether current_job() is visible."""
    await Counter.objects.filter(key=key).aupdate(value=F("value") + 1)
    context = current_job()
    return {"attempt": context.attempt if context else None}


@job(atomic=True, max_attempts=1)
async def async_atomic_fails(key: str) -> None:
    """Writes through the async ORM, then fails: the write must be rolled back with it."""
    await Counter.objects.filter(key=key).aupdate(value=F("value") + 1)
    raise ValueError("roll it back")


@job
def chain(remaining: int, key: str) -> int:
    """Bumps a counter and enqueues itself until ``remaining`` reaches 0."""
    Counter.objects.filter(key=key).update(value=F("value") + 1)
    if remaining:
        chain.enqueue(remaining - 1, key)
    return remaining


@job
def logs_a_line(message: str) -> None:
    logging.getLogger(__name__).info(message)


# -- flow control ---------------------------------------------------------------


@job(unique=True)
def unique_by_args(value: int) -> int:
    return value


@job(unique=Unique(key=lambda account_id, **_: f"account:{account_id}"))
def refresh_account(account_id: int, reason: str = "") -> int:
    return account_id


@job(unique=Unique(states=[JobStatus.READY]))
def unique_while_waiting(value: int) -> int:
    return value


@job(unique=Unique(period=timedelta(hours=1)))
def once_an_hour(report: str) -> str:
    return report


@job(concurrency_key="customer:{customer_id}", concurrency_limit=1, max_attempts=1)
def per_customer(customer_id: int, seconds: float = 0.05) -> int:
    """Checks, while running, that no other job of its customer runs."""
    from django_durable_jobs.models import Job

    context = current_job()
    running = Job.objects.filter(
        status=JobStatus.RUNNING, concurrency_key=f"customer:{customer_id}"
    ).count()
    Counter.objects.get_or_create(key="flow-started")
    Counter.objects.filter(key="flow-started").update(value=F("value") + 1)
    if running > 1:
        Counter.objects.create(key=f"violation-{context.job_id}", value=running)
    time.sleep(seconds)
    return running


@job(concurrency_key=lambda *args, **kwargs: f"pair:{kwargs['pair']}", concurrency_limit=2)
def per_pair(pair: str) -> str:
    return pair


@job
def collect(label: str) -> list:
    """A group callback: reports its group's members as it sees them."""
    from django_durable_jobs.models import Job

    run_id = current_job().run_id
    members = Job.objects.filter(run_id=run_id).exclude(id=current_job().job_id)
    Counter.objects.create(key=f"collected-{label}", value=members.count())
    return sorted(members.values_list("status", flat=True))


# -- recycling ------------------------------------------------------------------

_hoard: list[bytearray] = []


@job(max_attempts=1)
def hoards_memory(megabytes: int, then_sleep: float = 1.5) -> int:
    """Leaks ``megabytes`` MB for good (touched, so resident), as a leaky job does."""
    block = bytearray(megabytes * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    _hoard.append(block)
    time.sleep(then_sleep)  # past the worker's once-a-second memory reading
    return len(_hoard)


@job
def enqueues_an_add(a: int, b: int) -> int:
    """Enqueues a job from inside a job (tracing: the trace goes on into it)."""
    return add.enqueue(a, b).id


# Steps classes with a custom name must be imported at startup, like @job(name=...):
# importing them from the app's jobs module does that.
from . import pipelines  # noqa: E402, F401


@job(rate_limit="3/10s")
def rated(n: int = 0) -> int:
    return n


@job(rate_limit="1/10s", rate_key="acct:{account_id}")
def rated_per_account(account_id: int) -> int:
    return account_id


@job(rate_limit="5/2s", queue="rated")
def rated_start(log: str, i: int, seconds: float = 0.02) -> int:
    """Appends its start time to ``log`` (one line, O_APPEND: safe across processes)."""
    with open(log, "a") as out:
        out.write(f"{time.time()}\n")
    time.sleep(seconds)
    return i


@job(queue="gated")
def in_gated_queue(log: str, i: int, seconds: float = 0.02) -> int:
    """Logs its start and how many jobs of its queue run with it."""
    from django_durable_jobs.models import Job

    running = Job.objects.filter(status=JobStatus.RUNNING, queue="gated").count()
    with open(log, "a") as out:
        out.write(f"{time.time()} {running}\n")
    time.sleep(seconds)
    return i


@job(rate_limit="50/10s", queue="bench_rated")
def rate_probe(log: str, i: int, seconds: float = 0.05) -> int:
    """bench/rate_limits.py's job: logs its start, then "calls an API" for ``seconds``."""
    with open(log, "a") as out:
        out.write(f"{time.time()}\n")
    time.sleep(seconds)
    return i


@job(queue="bench_queue")
def queue_probe(log: str, i: int, seconds: float = 0.05) -> int:
    """The same, in a queue that bench/rate_limits.py limits in its workers' settings."""
    with open(log, "a") as out:
        out.write(f"{time.time()}\n")
    time.sleep(seconds)
    return i
