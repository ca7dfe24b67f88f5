"""Rate limits under real workers: is the limit kept, and does the drain take what it implies?

    python bench/rate_limits.py                    # PostgreSQL, 1,000 jobs per run
    python bench/rate_limits.py --db sqlite
    python bench/rate_limits.py --jobs 200 --only job

Two runs, each 3 ``runworker`` processes x 8 threads on one database:

* ``job``: 1,000 jobs of ``@job(rate_limit="50/10s")`` (one key, the job's name);
* ``queue``: 1,000 plain jobs in a queue limited by the workers' settings
  (``QUEUES = {"bench_queue": {"rate_limit": "50/10s"}}``).

Each job writes its own start time (the host clock) before it "calls an API"
for 50 ms. Printed per run: the most starts in any 10-second window (the limit
is 50; the sliding window allows no burst beyond it), and in windows 0.1 s and
0.25 s shorter: the window is exact on the claims (the database clock), and a
claimed job starts a few milliseconds later, a lag that differs from job to
job, so a job-observed 10-second window can hold a few more than 50 when the
lag of its first job was longer than the lag of its last. Then the drain time against
the shortest the limit allows (the first 50 start at once, then 50 per 10 s:
``(jobs / 50 - 1) x 10 s``), and the lateness. Uses its own database
(``test_ddj_bench_rates``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SUFFIX = "bench_rates"
LIMIT, PERIOD = 50, 10.0


def most_in_window(starts: list[float], period: float) -> int:
    starts = sorted(starts)
    most, low = 0, 0
    for high, at in enumerate(starts):
        while at - starts[low] >= period:
            low += 1
        most = max(most, high - low + 1)
    return most


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--only", choices=["job", "queue"])
    options = parser.parse_args()
    env = {
        **os.environ,
        "TEST_DB": options.db,
        "DDJ_TEST_DB_SUFFIX": SUFFIX,
        "DDJ_USE_TEST_DB": "1",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection

    from django_durable_jobs import enqueue_many
    from django_durable_jobs.models import Job
    from django_durable_jobs.registry import all_definitions
    from tests.testapp import jobs

    creation = connection.creation
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    used = {definition.resolved_queue() for definition in all_definitions().values()}
    queues = {**dict.fromkeys(used), "bench_queue": {"rate_limit": f"{LIMIT}/{PERIOD:g}s"}}
    worker_env = {**env, "DDJ_TEST_SETTINGS": json.dumps({"QUEUES": queues})}
    print(f"{options.db}: 3 workers x 8 threads, {options.jobs} jobs per run, limit 50 per 10 s")
    print(
        f"{'run':<7}{'most in 10 s':>14}{'in 9.9 s':>10}{'in 9.75 s':>11}"
        f"{'drain s':>10}{'shortest s':>12}{'late s':>9}"
    )
    try:
        runs = [options.only] if options.only else ["job", "queue"]
        for run in runs:
            Job.objects.all().delete()
            log = Path(tempfile.mkdtemp()) / "starts"
            definition = jobs.rate_probe if run == "job" else jobs.queue_probe
            enqueue_many([definition.prepare(str(log), i) for i in range(options.jobs)])
            workers = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "django",
                        "runworker",
                        "--concurrency",
                        "8",
                        "--queues",
                        definition.resolved_queue(),
                        "--log-level",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=worker_env,
                )
                for _ in range(3)
            ]
            try:
                while Job.objects.filter(status="SUCCESSFUL").count() < options.jobs:
                    if any(worker.poll() is not None for worker in workers):
                        print("a worker exited early")
                        return 1
                    time.sleep(0.2)
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=60)
            starts = [float(line) for line in log.read_text().split()]
            drain = max(starts) - min(starts)
            shortest = (options.jobs / LIMIT - 1) * PERIOD
            print(
                f"{run:<7}{most_in_window(starts, PERIOD):>14}"
                f"{most_in_window(starts, PERIOD - 0.1):>10}"
                f"{most_in_window(starts, PERIOD - 0.25):>11}{drain:>10.1f}{shortest:>12.1f}"
                f"{drain - shortest:>9.1f}"
                + ("" if len(starts) == options.jobs else f"  ({len(starts)} starts logged!)")
            )
    finally:
        connection.close()
        creation.destroy_test_db(creation.connection.settings_dict["NAME"], verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
