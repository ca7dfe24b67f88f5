"""Scheduler figures: fire-time math, cost of enqueueing a tick, contention, wake-up latency,
and the cost of database entries (10 and 10,000: load, idle CPU per minute, one edit).

    python bench/scheduler.py --db sqlite
    python bench/scheduler.py --db postgres [--url postgres://postgres@127.0.0.1:5432/postgres]

Uses its own database (a temporary SQLite file, or ``ddj_bench_scheduler`` on
PostgreSQL, dropped at the end). Prints figures; asserts nothing but exactly-once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(db: str, url: str) -> None:
    import django
    from django.conf import settings

    if db == "sqlite":
        path = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    else:
        parsed = urlparse(url)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "ddj_bench_scheduler",
            "USER": parsed.username or "postgres",
            "PASSWORD": parsed.password or "",
            "HOST": parsed.hostname or "127.0.0.1",
            "PORT": str(parsed.port or 5432),
        }
        import psycopg

        admin = psycopg.connect(
            host=database["HOST"],
            port=database["PORT"],
            user=database["USER"],
            password=database["PASSWORD"],
            dbname=(parsed.path or "/postgres").lstrip("/") or "postgres",
            autocommit=True,
        )
        admin.execute("DROP DATABASE IF EXISTS ddj_bench_scheduler")
        admin.execute("CREATE DATABASE ddj_bench_scheduler")
        admin.close()
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django_durable_jobs", "tests.testapp"],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DURABLE_JOBS={"LISTEN_NOTIFY": False},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def bench_math() -> None:
    from django_durable_jobs.schedules import parse_schedule

    print("fire-time math (America/New_York), microseconds per call")
    for text in ("every second", "every_minute", "30 2 * * *", "hourly"):
        schedule = parse_schedule(text, "America/New_York")
        for label, start in (
            ("ordinary day", datetime(2026, 5, 4, tzinfo=UTC)),
            ("autumn change", datetime(2026, 11, 1, 4, tzinfo=UTC)),
        ):
            instant, calls = start, 3000
            began = time.perf_counter()
            for _ in range(calls):
                instant = schedule.next_after(instant)
            per_next = (time.perf_counter() - began) / calls * 1e6
            began = time.perf_counter()
            for _ in range(calls):
                schedule.previous(instant)
            per_previous = (time.perf_counter() - began) / calls * 1e6
            print(
                f"  {text:<14} {label:<14} next_after {per_next:6.1f} us   "
                f"previous {per_previous:6.1f} us"
            )


def entry(name: str, text: str, **options):
    from django_durable_jobs.periodic import get_entries

    spec = {"job": "tests.testapp.jobs.noop", "schedule": text, **options}
    return get_entries({name: spec})[0]


def bench_enqueue(db: str) -> None:
    from django_durable_jobs.ledger import enqueue_tick
    from django_durable_jobs.models import Job

    ticks = 2000
    item = entry("enqueue", "every second")
    start = datetime(2026, 5, 4, tzinfo=UTC)
    times = [start + timedelta(seconds=i) for i in range(ticks)]
    began = time.perf_counter()
    for fire_time in times:
        enqueue_tick(item, fire_time, "default")
    elapsed = time.perf_counter() - began
    assert Job.objects.filter(meta__schedule="enqueue").count() == ticks
    print(
        f"\nenqueue one tick ({db}): {elapsed / ticks * 1000:.2f} ms per tick "
        f"(ledger row + job, one transaction), {ticks / elapsed:,.0f} ticks/s"
    )
    began = time.perf_counter()
    for fire_time in times[:1000]:
        enqueue_tick(item, fire_time, "default")
    lost = (time.perf_counter() - began) / 1000
    print(f"  a tick already taken: {lost * 1000:.2f} ms (the quiet ON CONFLICT DO NOTHING)")


def bench_contention(db: str, schedulers: int) -> None:
    from django.db import connections

    from django_durable_jobs.ledger import TickOutcome, enqueue_tick
    from django_durable_jobs.models import Job, ScheduleTick

    ticks = 600
    name = f"contended-{schedulers}"
    item = entry(name, "every second")
    start = datetime(2026, 6, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=i) for i in range(ticks)]
    wins = [0] * schedulers
    barrier = threading.Barrier(schedulers)

    def run(index: int) -> None:
        try:
            for fire_time in times:
                barrier.wait()  # all schedulers try the same tick at the same moment
                if enqueue_tick(item, fire_time, "default").outcome is TickOutcome.ENQUEUED:
                    wins[index] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(schedulers)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    rows = ScheduleTick.objects.filter(schedule=name).count()
    jobs = Job.objects.filter(meta__schedule=name).count()
    assert rows == jobs == sum(wins) == ticks, (rows, jobs, wins)
    print(
        f"\n{schedulers} schedulers racing for the same {ticks} ticks ({db}): "
        f"{elapsed / ticks * 1000:.2f} ms per tick for all of them; "
        f"wins per scheduler {wins}; exactly {jobs} jobs"
    )


def bench_latency(db: str, seconds: int) -> None:
    from django_durable_jobs.models import Job
    from django_durable_jobs.scheduler import Scheduler

    item = entry("latency", "every second")
    scheduler = Scheduler([item])
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    delays = sorted(
        (job.enqueued_at - datetime.fromisoformat(job.meta["fire_time"])).total_seconds() * 1000
        for job in Job.objects.filter(meta__schedule="latency")
    )
    print(
        f"\nreal clock, one every-second entry for {seconds} s ({db}): {len(delays)} ticks; "
        f"enqueued after the fire time by p50 {statistics.median(delays):.1f} ms, "
        f"p95 {delays[int(len(delays) * 0.95) - 1]:.1f} ms, max {delays[-1]:.1f} ms"
    )


def bench_database_entries(db: str, count: int, seconds: int) -> None:
    """A scheduler with ``count`` database entries: first load, idle CPU, one edit's reload."""
    from django.db import connections

    from django_durable_jobs.models import ScheduleEntry
    from django_durable_jobs.schedule_entries import edit_entry
    from django_durable_jobs.scheduler import Scheduler

    ScheduleEntry.objects.all().delete()
    now = datetime.now(UTC)
    # Daily, at minutes spread over the day but none within the run: the idle cost.
    ScheduleEntry.objects.bulk_create(
        ScheduleEntry(
            name=f"entry-{index}",
            job="tests.testapp.jobs.noop",
            schedule=f"{index % 60} {(now.hour + 2 + index % 20) % 24} * * *",
            timezone="UTC",
            created_at=now,
            updated_at=now,
            version=index + 1,
        )
        for index in range(count)
    )
    scheduler = Scheduler([], live=True)
    began = time.perf_counter()
    scheduler.run_pending()
    load = time.perf_counter() - began
    assert len(scheduler.entries) == count
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    cpu = time.process_time()
    thread.start()
    time.sleep(seconds)
    cpu = time.process_time() - cpu
    stop.set()
    thread.join()
    began = time.perf_counter()
    edit_entry(f"entry-{count // 2}", {"schedule": "0 0 1 1 *"})
    scheduler._reload_at = None
    scheduler._reload(datetime.now(UTC))
    edit = time.perf_counter() - began
    connections.close_all()
    print(
        f"\n{count:,} database entries ({db}): first load {load * 1000:,.0f} ms; idle, "
        f"{cpu / seconds * 60 * 1000:,.0f} ms CPU per minute (this process, measured over "
        f"{seconds} s); one edit saved and reloaded in {edit * 1000:,.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of the latency run")
    parser.add_argument("--only-entries", action="store_true", help="only the database entries")
    parser.add_argument(
        "--entries-seconds", type=int, default=30, help="length of each database-entries run"
    )
    options = parser.parse_args()
    configure(options.db, options.url)
    try:
        if not options.only_entries:
            bench_math()
            bench_enqueue(options.db)
            for schedulers in (2, 3):
                bench_contention(options.db, schedulers)
            bench_latency(options.db, options.seconds)
        for count in (10, 10_000):
            bench_database_entries(options.db, count, options.entries_seconds)
    finally:
        drop(options.db, options.url)


def drop(db: str, url: str) -> None:
    from django.db import connections

    name = connections["default"].settings_dict["NAME"]
    connections.close_all()
    if db == "sqlite":
        shutil.rmtree(Path(name).parent, ignore_errors=True)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS ddj_bench_scheduler")


if __name__ == "__main__":
    main()
