"""Our drain rate under each worker knob, interleaved: what a setting costs or buys.

    python bench/knobs.py            # 10,000 jobs per drain, BENCH_REPEATS (3) rounds
    python bench/knobs.py --smoke    # 1,000 jobs, one round

Each variant is ``runworker`` with some arguments (or an environment variable of
the bench project, such as server-side binding), drained through the shared
harness's W3 (spawn -> queue empty, 50 ms polling); with BENCH_ONLY=W1,W2,W3 the
enqueue workloads are measured too. Ratios are to the first variant in the same
round. BENCH_KNOBS replaces the list: "label=runworker args;label=args".
BENCH_BASELINE=<another checkout>[,<another>...] compares this checkout's code with
theirs instead (same arguments, interleaved rounds): what a change costs the drain.
Their migrations must be a prefix of this checkout's (the bench database is shared).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import log

VARIANTS: dict[str, dict[str, str]] = {
    "default (8 threads)": {},
    "log level WARNING": {"BENCH_DDJ_ARGS": "--log-level WARNING"},
    "--concurrency 1": {"BENCH_DDJ_ARGS": "--concurrency 1"},
    "--concurrency 2": {"BENCH_DDJ_ARGS": "--concurrency 2"},
    "--concurrency 32": {"BENCH_DDJ_ARGS": "--concurrency 32"},
    "--no-listen": {"BENCH_DDJ_ARGS": "--no-listen"},
    # Django's psycopg backend binds parameters client-side unless told otherwise.
    "server-side binding": {"BENCH_DJ_SERVER_SIDE_BINDING": "1"},
}
FIELD_LABELS = ["jobs/s", "steady jobs/s", "worker CPU ms/job", "machine CPU ms/job", "RSS MB"]
RATIO_FIELDS = {"jobs_per_s", "steady_jobs_per_s", "W1", "W2"}
ENQUEUE = [("W1", "single enqueue jobs/s"), ("W2", "bulk enqueue jobs/s")]
FIELDS = [
    ("jobs_per_s", 0),
    ("steady_jobs_per_s", 0),
    ("worker_cpu_ms_per_job", 3),
    ("machine_cpu_ms_per_job", 3),
    ("peak_rss_total_mb", 0),
]


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    repeats = int(os.environ.get("BENCH_REPEATS", "1" if smoke else "3"))
    n = os.environ.get("BENCH_N_W3", "1000" if smoke else "10000")
    only = os.environ.get("BENCH_ONLY", "W3")
    variants = VARIANTS
    if os.environ.get("BENCH_KNOBS"):
        variants = {
            label: {"BENCH_DDJ_ARGS": args}
            for label, args in (v.split("=", 1) for v in os.environ["BENCH_KNOBS"].split(";") if v)
        }
    if os.environ.get("BENCH_BASELINE"):
        variants = {"this checkout": {}}
        for baseline in os.environ["BENCH_BASELINE"].split(","):
            path = str(Path(baseline).resolve())
            variants[f"baseline {path}"] = {"PYTHONPATH": path}
    common.ensure_venv("durable_jobs")
    out = common.RESULTS / f"knobs-{time.strftime('%Y%m%dT%H%M%S')}"
    rounds: list[dict] = []
    with common.private_server() as pg_url:
        for r in range(repeats):
            names = list(variants)
            names = names[r % len(names) :] + names[: r % len(names)]
            rnd = {}
            for name in names:
                log(f"round {r + 1}/{repeats}: {name}")
                runs = common.run_runner(
                    "durable_jobs",
                    pg_url,
                    out,
                    BENCH_ONLY=only,
                    BENCH_W3_CONC="default",
                    BENCH_REPEATS="1",
                    BENCH_N_W3=n,
                    BENCH_SCRATCH=str(out / "scratch"),
                    **variants[name],
                )["runs"]
                rnd[name] = dict(runs.get("W3_cdefault", [{}])[0])
                for workload, _label in ENQUEUE:
                    if workload in runs:
                        rnd[name][workload] = runs[workload][0]["jobs_per_s"]
            rounds.append(rnd)
    base = next(iter(variants))
    med = statistics.median
    columns = [(f, nd, label) for (f, nd), label in zip(FIELDS, FIELD_LABELS, strict=True)]
    enqueue = [(w, 0, label) for w, label in ENQUEUE if w in rounds[0][base]]
    columns = enqueue + (columns if "jobs_per_s" in rounds[0][base] else [])
    lines = [
        f"W3 drain of {n} no-op jobs; {len(rounds)} round(s); medians; "
        f"×: ratio to '{base}' in the same round, median (min–max).",
        "",
        "| variant | " + " | ".join(label for _, _, label in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in variants:
        cells = []
        for field, nd, _label in columns:
            vals = [rnd[name][field] for rnd in rounds]
            text = f"{med(vals):,.{nd}f}"
            if name != base and field in RATIO_FIELDS:
                rat = [rnd[name][field] / rnd[base][field] for rnd in rounds]
                text += f" · ×{med(rat):.2f}" + (
                    f" ({min(rat):.2f}–{max(rat):.2f})" if len(rat) > 1 else ""
                )
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "knobs.json").write_text(json.dumps(rounds, indent=1))
    (out / "knobs.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
