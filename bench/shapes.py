"""Real job shapes: our worker against django-tasks-db, procrastinate, pgqueuer on jobs that work.

    python bench/shapes.py            # BENCH_REPEATS (3) interleaved rounds, ~15 min
    python bench/shapes.py --smoke    # one small round, ~1 min

On one private PostgreSQL 15 server (fsync on), each system in its own virtualenv
(common.SYSTEMS) and its own database, one worker at concurrency 8 drains:

* S1 "ORM write": 5,000 pre-enqueued jobs, each inserting one row into
  ``bench_shape_row`` in its own transaction (Django: ``ShapeRow.objects.create()``
  in ``transaction.atomic()``; procrastinate: an INSERT on the worker's own psycopg
  pool; pgqueuer: an INSERT on psycopg connections opened with the worker). Timed
  from the worker's spawn to the last row (``count(*)`` polled every 50 ms), steady
  from the first row to the last; exactly n rows, n distinct jobs, must exist after.
* S2 "50 ms I/O": 1,000 jobs that sleep 50 ms (``time.sleep`` in the Django
  systems' threads/processes, ``asyncio.sleep`` in the async ones). Ideal:
  1,000 x 0.05 / 8 = 6.25 s (160 jobs/s); the share of it is the steady rate / 160.
* S3 "1 MB JSON arguments": 200 jobs whose kwargs are 10,000 small dicts (about
  0.93 MB of compact JSON): enqueue rate (one call, one transaction per job), drain
  rate, and the worker's peak RSS (its process tree, sampled every 50 ms).

Rounds are interleaved: each round runs every workload for every system, in an order
rotated per round, so ratios compare the same minutes. The jobs are in
bench/shapes/ (driver.py measures one system in its own virtualenv). Prints one
table: median (min-max) over rounds, and ours / peer per round (median, min-max).
Environment: BENCH_REPEATS, BENCH_SYSTEMS (e.g. durable_jobs,pgqueuer), BENCH_ONLY
(e.g. S1,S3), BENCH_PG_URL / BENCH_PG_PORT. Results: bench/results/shapes-<stamp>/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import SYSTEMS, log

OURS = "durable_jobs"
ORDER = [OURS, "djtasks", "procrastinate", "pgqueuer"]
DRIVER = common.BENCH / "shapes" / "driver.py"
JOBS = {"S1": 5000, "S2": 1000, "S3": 200}
SMOKE_JOBS = {"S1": 500, "S2": 200, "S3": 20}
IDEAL_S2 = 8 / 0.05  # jobs/s: 8 sleeps of 50 ms at a time

# (workload, field, label, higher is better)
METRICS = [
    ("S1", "jobs_per_s", "S1 ORM write: jobs/s, spawn → last row", True),
    ("S1", "steady_jobs_per_s", "S1 ORM write: steady jobs/s, first → last row", True),
    ("S2", "jobs_per_s", "S2 50 ms sleep: jobs/s, spawn → empty", True),
    ("S2", "steady_jobs_per_s", "S2 50 ms sleep: steady jobs/s", True),
    ("S2", "ideal_share", "S2: steady share of the ideal 160 jobs/s", True),
    ("S3", "enqueue_jobs_per_s", "S3 1 MB args: enqueue jobs/s (one per call)", True),
    ("S3", "jobs_per_s", "S3 1 MB args: drain jobs/s, spawn → empty", True),
    ("S3", "steady_jobs_per_s", "S3 1 MB args: steady drain jobs/s", True),
    ("S3", "peak_rss_mb", "S3: worker peak RSS MB (process tree)", False),
]


def run_driver(system: str, pg_url: str, *args: str) -> dict:
    python = common.venv_python(system)
    env = common.system_env(system, pg_url)
    proc = subprocess.run(
        [str(python), str(DRIVER), *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise RuntimeError(f"{system} {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_rounds(
    pg_url: str, systems: list[str], workloads: list[str], jobs: dict, repeats: int, out: Path
) -> tuple[list[dict], list[str], dict]:
    notes = {s: run_driver(s, pg_url, "setup", s)["concurrency"] for s in systems}
    rounds, loads = [], []
    for r in range(repeats):
        before = os.getloadavg()
        rnd: dict = {}
        for w in workloads:
            k = (r + workloads.index(w)) % len(systems)
            for system in systems[k:] + systems[:k]:
                log(f"round {r + 1}/{repeats}: {w} {system} ({jobs[w]:,} jobs)")
                logfile = out / f"{system}-{w}-r{r + 1}.log"
                res = run_driver(system, pg_url, "measure", system, w, str(jobs[w]), str(logfile))
                if w == "S2" and res.get("steady_jobs_per_s"):
                    res["ideal_share"] = res["steady_jobs_per_s"] / IDEAL_S2
                for problem in res["problems"]:
                    log(f"FAILURE {system} {w}: {problem}")
                rnd.setdefault(system, {})[w] = res
                (out / f"{system}-{w}-r{r + 1}.json").write_text(json.dumps(res, indent=1))
        after = os.getloadavg()
        load = f"round {r + 1}: {before[0]:.2f}/{before[1]:.2f} → {after[0]:.2f}/{after[1]:.2f}"
        log(f"load average (1/5 min) {load}")
        loads.append(load)
        rounds.append(rnd)
    return rounds, loads, notes


# --------------------------------------------------------------------------- the table


def value(rnd: dict, system: str, workload: str, field: str) -> float | None:
    return rnd.get(system, {}).get(workload, {}).get(field)


def spread(values: list[float], fmt: str) -> str:
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({format(min(values), fmt)}–{format(max(values), fmt)})"
    return text


def cell(rounds: list[dict], system: str, workload: str, field: str) -> str:
    vals = [v for r in rounds if (v := value(r, system, workload, field)) is not None]
    if not vals:
        return "n/a"
    fmt = ".0%" if field == "ideal_share" else (".1f" if statistics.median(vals) < 100 else ",.0f")
    text = spread(vals, fmt)
    if system == OURS:
        return f"**{text}**"
    ratios = []
    for r in rounds:
        a, b = value(r, OURS, workload, field), value(r, system, workload, field)
        if a and b:
            ratios.append(a / b)
    return text + (f" · ×{spread(ratios, '.2f')}" if ratios else "")


def table(rounds: list[dict], systems: list[str], workloads: list[str], meta: dict) -> str:
    lines = [
        f"Machine: {os.cpu_count()} CPUs; PostgreSQL 15, private server (fsync on); "
        f"load average (1/5 min) before → after each round: {'; '.join(meta['loads'])}",
        f"{len(rounds)} interleaved round(s); jobs per run: "
        + ", ".join(f"{w} {meta['jobs'][w]:,}" for w in workloads)
        + "; each cell: median (min–max) over rounds · ×(ours ÷ peer): median (min–max) of "
        "the per-round ratios. Throughput: ×>1 = we are faster; RSS: ×<1 = we use less.",
        "",
        "| metric | " + " | ".join(SYSTEMS[s]["label"] for s in systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for workload, field, label, _ in METRICS:
        if workload in workloads:
            cells = [cell(rounds, s, workload, field) for s in systems]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Concurrency 8 means:"]
    lines += [f"- {SYSTEMS[s]['label']}: {meta['notes'][s]}" for s in systems]
    failures = [
        f"- {SYSTEMS[s]['label']} {w} round {i + 1}: {p}"
        for i, r in enumerate(rounds)
        for s in systems
        for w in workloads
        for p in r.get(s, {}).get(w, {}).get("problems", [])
    ]
    lines += ["", "Failures (lost, doubled or failed jobs; runs that did not finish):"]
    lines += failures or ["- none: every S1 run wrote exactly n rows, one per job"]
    payload = [v for r in rounds if (v := value(r, OURS, "S3", "payload_bytes"))]
    if payload:
        lines.append(f"S3 payload: {payload[0]:,} bytes of compact JSON per job.")
    return "\n".join(lines)


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    repeats = 1 if smoke else int(os.environ.get("BENCH_REPEATS", "3"))
    jobs = SMOKE_JOBS if smoke else JOBS
    wanted = os.environ.get("BENCH_SYSTEMS")
    systems = [s for s in ORDER if not wanted or s in wanted.split(",")]
    only = os.environ.get("BENCH_ONLY")
    workloads = [w for w in JOBS if not only or w in only.split(",")]
    for system in systems:
        common.ensure_venv(system)
    out = common.RESULTS / f"shapes-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    log(f"load average at start: {os.getloadavg()}")
    with common.private_server() as pg_url:
        rounds, loads, notes = run_rounds(pg_url, systems, workloads, jobs, repeats, out)
    meta = {"loads": loads, "jobs": jobs, "notes": notes}
    text = table(rounds, systems, workloads, meta)
    (out / "rounds.json").write_text(json.dumps({"rounds": rounds, **meta}, indent=1))
    (out / "table.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    failed = any(res["problems"] for rnd in rounds for per in rnd.values() for res in per.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
