"""Side-by-side benchmark: our ``runworker`` against pgqueuer, procrastinate and django-tasks-db.

    python bench/run.py            # full run: BENCH_REPEATS (3) interleaved rounds, ~30-40 min
    python bench/run.py --smoke    # BENCH_SCALE=0.02, one round: a couple of minutes

Every system runs the shared harness's workloads (``../shared/bench-peers``:
W1 single enqueue, W2 bulk enqueue, W3 drain at default and 8-way concurrency,
W4 enqueue->start latency, peak worker RSS) in its own virtualenv
(``bench/.venvs/``), against a private PostgreSQL server started here (fsync on)
and removed afterwards. Rounds are interleaved (each round runs every system
once, in a rotated order), so each ratio compares numbers from the same minutes;
the table shows medians over rounds and the median (min-max) of per-round ratios.
The raw-SQL ceiling (``bench/ceiling.py``: one INSERT per job; a batch claim of
50 + batch complete) takes its turn in each round like a system, and a second
table gives our single enqueue and steady drain as shares of it, with issue 21's
targets.

``mariadb`` (bench/mariadb.py; not in the default list: it needs the MariaDB server at
BENCH_MYSQL_URL) is our worker beside django-tasks-db on MariaDB: it takes its turn
in each round like a system, and prints a table of its own.

Environment: BENCH_REPEATS, BENCH_SCALE, BENCH_ONLY (e.g. W3,W4), BENCH_SYSTEMS
(e.g. durable_jobs,pgqueuer; ``ceiling`` is the raw-SQL ceiling, bench/ceiling.py,
measured in each round like a system; ``mariadb``, see above), BENCH_PG_URL (use that
server instead of a private one), BENCH_PEERS_DIR (the shared harness), BENCH_DDJ_ARGS /
BENCH_DDJ_SETTINGS (runworker arguments / DURABLE_JOBS overrides for experiments).
Results: bench/results/<stamp>/ (raw JSON per system and round, table.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ceiling
import common
import mariadb
from common import SYSTEMS, log

OURS = "durable_jobs"
CEILING = "ceiling"
MARIADB = "mariadb"

# Our figures against the ceiling that bounds them (bench/ceiling.py), with issue 21's targets:
# (label, our workload, our field, ceiling step, ceiling label, target share)
SHARES = [
    ("single enqueue (W1)", "W1", "jobs_per_s", "insert", "one INSERT per job", 0.80),
    (
        "steady drain (W3 default, steady)",
        "W3_cdefault",
        "steady_jobs_per_s",
        "batch",
        f"claim {ceiling.BATCH} + batch complete",
        0.90,
    ),
]

# (key in the table, workload key in runner results, field, label, higher is better)
METRICS = [
    ("w1", "W1", "jobs_per_s", "single enqueue jobs/s", True),
    ("w2", "W2", "jobs_per_s", "bulk enqueue jobs/s", True),
    ("w3d", "W3_cdefault", "jobs_per_s", "drain, default worker jobs/s", True),
    ("w3c8", "W3_c8", "jobs_per_s", "drain, 8-way jobs/s", True),
    ("p50", "W4", "p50_ms", "enqueue→start p50 ms", False),
    ("p99", "W4", "p99_ms", "enqueue→start p99 ms", False),
    ("rss", "W3_cdefault", "peak_rss_total_mb", "worker RSS MB (default)", False),
]
DETAIL = [
    ("W3_cdefault", "steady_jobs_per_s", "drain default: steady jobs/s", True),
    ("W3_cdefault", "startup_s", "drain default: spawn→first job s", False),
    ("W3_cdefault", "worker_cpu_ms_per_job", "drain default: worker CPU ms/job", False),
    ("W3_cdefault", "machine_cpu_ms_per_job", "drain default: machine CPU ms/job", False),
    ("W3_c8", "steady_jobs_per_s", "drain 8-way: steady jobs/s", True),
    ("W3_c8", "peak_rss_total_mb", "drain 8-way: RSS MB (all processes)", False),
    ("W4", "p95_ms", "enqueue→start p95 ms", False),
    ("W4", "enqueue_call_p50_ms", "latency job: enqueue call p50 ms", False),
]


def value(result: dict, workload: str, field: str) -> float | None:
    runs = result["runs"].get(workload) or []
    if not runs or runs[0] is None:
        return None
    return runs[0].get(field)


def cell(values: list[float | None], ratios: list[float], *, ours: bool, nd: int) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    text = f"{statistics.median(vals):,.{nd}f}"
    if ours:
        return f"**{text}**"
    if ratios:
        med = statistics.median(ratios)
        spread = f" ({ratio(min(ratios))}–{ratio(max(ratios))})" if len(ratios) > 1 else ""
        text += f" · ×{ratio(med)}{spread}"
    return text


def ratio(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def ratios_for(rounds: list[dict], system: str, workload: str, field: str) -> list[float]:
    """ours / peer within each round where both have the figure."""
    out = []
    for rnd in rounds:
        a = value(rnd[OURS], workload, field) if OURS in rnd else None
        b = value(rnd[system], workload, field) if system in rnd else None
        if a and b:
            out.append(a / b)
    return out


def decimals(field: str, v: float | None) -> int:
    if field.endswith(("_ms", "_s", "ms_per_job")):
        return 2 if (v or 0) < 10 else 1
    return 0


def table(rounds: list[dict], systems: list[str], meta: dict) -> str:
    lines = [
        f"Machine: {meta['cpus']} CPUs, {meta['server']}; load average before/after each round: "
        + ", ".join(meta["load"]),
        f"{len(rounds)} interleaved round(s), scale {meta['scale']}; each cell: median over "
        "rounds · ×(ours ÷ peer), median (min–max) of the per-round ratios.",
        "Throughput: ×>1 means we are faster. Latency and RSS: ×<1 means we are lower (better).",
        "",
        "| system | " + " | ".join(m[3] for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for system in systems:
        row = []
        for _key, workload, field, _label, _hib in METRICS:
            vals = [value(r[system], workload, field) for r in rounds if system in r]
            rat = ratios_for(rounds, system, workload, field) if system != OURS else []
            nd = decimals(field, statistics.median([v for v in vals if v is not None] or [0]))
            row.append(cell(vals, rat, ours=system == OURS, nd=nd))
        lines.append(f"| {SYSTEMS[system]['label']} | " + " | ".join(row) + " |")
    lines += [
        "",
        "| system | " + " | ".join(d[2] for d in DETAIL) + " |",
        "|---|" + "---|" * len(DETAIL),
    ]
    for system in systems:
        row = []
        for workload, field, _label, _hib in DETAIL:
            vals = [value(r[system], workload, field) for r in rounds if system in r]
            rat = ratios_for(rounds, system, workload, field) if system != OURS else []
            nd = decimals(field, statistics.median([v for v in vals if v is not None] or [0]))
            row.append(cell(vals, rat, ours=system == OURS, nd=nd))
        lines.append(f"| {SYSTEMS[system]['label']} | " + " | ".join(row) + " |")
    # Run-to-run noise of our own figures: (max - min) / median over rounds.
    if len(rounds) > 1 and all(OURS in r for r in rounds):
        noise = []
        for _key, workload, field, label, _hib in METRICS:
            vals = [v for r in rounds if (v := value(r[OURS], workload, field)) is not None]
            if len(vals) > 1 and statistics.median(vals):
                noise.append(
                    f"{label} ±{(max(vals) - min(vals)) / statistics.median(vals) / 2:.0%}"
                )
        lines += [
            "",
            "Noise (our figures, half the max–min spread over rounds / median): "
            + "; ".join(noise),
        ]
    lines += ["", "Versions:"]
    for system in systems:
        lines.append(
            f"- {SYSTEMS[system]['label']}: {rounds[-1][system]['meta']['versions']} "
            f"(Python {rounds[-1][system]['meta']['python']})"
        )
    return "\n".join(lines)


def ceiling_table(rounds: list[dict]) -> str:
    """Each of our figures as a share of its ceiling, within each round."""
    lines = [
        "Against the database's own ceiling (raw psycopg on one connection, same server, "
        "same rounds; share = ours ÷ ceiling within a round, median (min–max)):",
        "",
        "| our figure | jobs/s | ceiling | jobs/s | share | target |",
        "|---|---|---|---|---|---|",
    ]
    for label, workload, field, step, step_label, target in SHARES:
        ours = [value(r[OURS], workload, field) for r in rounds if OURS in r]
        top = [value(r[CEILING], step, "jobs_per_s") for r in rounds]
        shares = [
            a / b
            for r in rounds
            if OURS in r
            and (a := value(r[OURS], workload, field))
            and (b := value(r[CEILING], step, "jobs_per_s"))
        ]
        share = "n/a"
        if shares:
            # Rounded down: a share just below its target never prints as the target.
            share = f"{math.floor(statistics.median(shares) * 1000) / 10:.1f}%"
            if len(shares) > 1:
                share += f" ({min(shares):.0%}–{max(shares):.0%})"
            share += " ✓" if statistics.median(shares) >= target else " ✗"
        lines.append(
            f"| {label} | {cell(ours, [], ours=False, nd=0)} | {step_label} "
            f"| {cell(top, [], ours=False, nd=0)} | {share} | ≥ {target:.0%} |"
        )
    notify = [value(r[CEILING], "insert_notify", "jobs_per_s") for r in rounds]
    if any(notify):
        lines += [
            "",
            "Not a ceiling: the same INSERT with the wake-up NOTIFY our enqueue sends, "
            f"{cell(notify, [], ours=False, nd=0)} jobs/s.",
        ]
    return "\n".join(lines)


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    if smoke:
        os.environ.setdefault("BENCH_SCALE", "0.02")
        os.environ.setdefault("BENCH_REPEATS", "1")
        # A drain must outlast the harness's 50 ms polling (runner.py divides by it).
        os.environ.setdefault("BENCH_N_W3", "1000")
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    default = [*SYSTEMS, CEILING]
    known = [*default, MARIADB]
    systems = [s for s in os.environ.get("BENCH_SYSTEMS", ",".join(default)).split(",") if s]
    unknown = set(systems) - set(known)
    if unknown:
        sys.exit(f"unknown system(s) {sorted(unknown)}; choose from {sorted(known)}")
    if not (common.SHARED / "runner.py").exists():
        sys.exit(f"the shared peer harness is missing: {common.SHARED} (set BENCH_PEERS_DIR)")
    for system in systems:
        if system == MARIADB:
            mariadb.ensure_venvs()
            continue
        # The ceiling runs in our virtualenv (psycopg, and our migrations for its table).
        common.ensure_venv(OURS if system == CEILING else system)
    out = common.RESULTS / time.strftime("%Y%m%dT%H%M%S")
    scratch = out / "scratch"
    rounds: list[dict] = []
    maria_rounds: list[dict] = []
    loads: list[str] = []
    postgres = set(systems) != {MARIADB}
    with common.private_server() if postgres else contextlib.nullcontext() as pg_url:
        try:
            for r in range(repeats):
                order = systems[r % len(systems) :] + systems[: r % len(systems)]
                before = os.getloadavg()[0]
                rnd = {}
                for system in order:
                    log(f"round {r + 1}/{repeats}: {system}")
                    if system == MARIADB:
                        maria_rounds.append(mariadb.run_round(out, r))
                    elif system == CEILING:
                        rnd[system] = ceiling.run(pg_url, out, str(r + 1))
                    else:
                        rnd[system] = common.run_runner(
                            system, pg_url, out, BENCH_REPEATS="1", BENCH_SCRATCH=str(scratch)
                        )
                rounds.append(rnd)
                loads.append(f"{before:.1f}/{os.getloadavg()[0]:.1f}")
        finally:
            if MARIADB in systems:
                mariadb.drop_databases()
    peers = [s for s in systems if s not in (CEILING, MARIADB)]
    texts = []
    meta: dict = {"load": loads, "scale": os.environ.get("BENCH_SCALE", "1.0")}
    if postgres:
        first = rounds[0][(peers or [CEILING])[0]]["meta"]
        meta.update(cpus=first["cpus"], server=first["server"].split(" on ")[0])
    if peers:
        texts.append(table(rounds, peers, meta))
    if CEILING in systems:
        texts.append(ceiling_table(rounds))
    if maria_rounds:
        texts.append("On MariaDB (bench/mariadb.py):\n\n" + mariadb.table(maria_rounds))
    text = "\n\n".join(texts)
    (out / "table.md").write_text(text + "\n")
    dump = {"meta": meta, "rounds": rounds, "mariadb_rounds": maria_rounds}
    (out / "rounds.json").write_text(json.dumps(dump, indent=1))
    print(text)
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
