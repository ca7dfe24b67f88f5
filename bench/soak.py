"""Worker memory over a long run: RSS of ``runworker --concurrency 8`` draining 100,000 jobs.

    python bench/soak.py             # 100,000 no-op jobs
    python bench/soak.py --smoke     # 5,000

Private PostgreSQL server (fsync on). The backlog is written in one statement,
then one worker drains it; its RSS (psutil, whole process tree) and the number of
jobs done are sampled every 0.5 s. Flat means: the RSS after the first 10 % of the
jobs (imports, connections and thread stacks are in place by then) does not rise
with the number of jobs run; the slope is a least-squares fit over the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import BACKLOG_SQL, JOB_TABLE, log

DB = "bench_ddj_soak"


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    n = int(os.environ.get("BENCH_SOAK_JOBS", "5000" if smoke else "100000"))
    python = common.ensure_venv("durable_jobs")
    if not common.running_in(python):
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    import psutil
    import psycopg

    args = ["--concurrency", "8", *os.environ.get("BENCH_DDJ_ARGS", "").split()]
    out = common.RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    with common.private_server() as pg_url:
        env = common.fresh_ddj_database(pg_url, DB)
        with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as conn:
            conn.execute(BACKLOG_SQL, [n])
            conn.execute("CHECKPOINT")
            log(f"{n:,} jobs enqueued; draining with runworker {' '.join(args)}")
            with open(out / "worker.log", "wb") as worker_log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "django", "runworker", *args],
                    env=env,
                    stdout=worker_log,
                    stderr=subprocess.STDOUT,
                )
                worker = psutil.Process(proc.pid)
                t0 = time.perf_counter()
                try:
                    while proc.poll() is None:
                        left = conn.execute(
                            f"SELECT count(*) FROM {JOB_TABLE} WHERE status IN ('READY','RUNNING')"
                        ).fetchone()[0]
                        procs = [worker, *worker.children(recursive=True)]
                        rss = sum(p.memory_info().rss for p in procs) / 2**20
                        samples.append(
                            (time.perf_counter() - t0, n - left, rss, worker.num_threads())
                        )
                        if left == 0:
                            break
                        time.sleep(0.5)
                finally:
                    proc.terminate()
                    proc.wait(60)
    (out / "soak.json").write_text(json.dumps({"n": n, "args": args, "samples": samples}))
    text = report(n, args, samples)
    (out / "soak.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


def report(n: int, args: list[str], samples: list[tuple]) -> str:
    warm = [s for s in samples if s[1] >= n * 0.1]
    xs, ys = [s[1] for s in warm], [s[2] for s in warm]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs) or 1
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    elapsed = samples[-1][0]
    lines = [
        f"runworker {' '.join(args)}: {n:,} no-op jobs in {elapsed:.0f} s "
        f"({n / elapsed:,.0f} jobs/s including start-up); threads: {samples[-1][3]}.",
        "",
        "| jobs done | RSS MB |",
        "|---|---|",
    ]
    for frac in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0):
        s = min(samples, key=lambda s, f=frac: abs(s[1] - n * f))
        lines.append(f"| {s[1]:,} | {s[2]:.1f} |")
    lines += [
        "",
        f"Peak RSS {max(s[2] for s in samples):.1f} MB; after the first 10 %: "
        f"{min(ys):.1f}–{max(ys):.1f} MB, slope {slope * 10_000:+.2f} MB per 10,000 jobs.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
