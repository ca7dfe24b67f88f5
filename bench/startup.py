"""Worker start-up and memory: spawn -> first job, where the time goes, RSS against django.setup().

    python bench/startup.py            # 11 starts per checkout, a 100,000-job drain each
    python bench/startup.py --smoke    # 3 starts, 5,000 jobs

On a private PostgreSQL server (fsync on), with the bench project (bench/project/):

(a) **spawn -> first job** of ``python -m django runworker --concurrency 8`` over a
    10,000-job backlog (the harness's W3): from ``Popen`` to the first outcome
    committed (the first job's ``finished_at``, the database's clock, the same
    host), median of BENCH_STARTUP_RUNS starts. The floor beside it: a process that
    runs only ``django.setup()`` of the same project, spawn -> exit. Where the time
    goes: the same command under ``startup_probe.py`` (timestamps at each step),
    and once under ``python -X importtime`` (import self-time by package).
(b) **RSS**: a bare ``django.setup()`` process (VmRSS at its end) against the worker
    draining BENCH_SOAK_JOBS (100,000) no-op jobs at ``--concurrency 8``: its peak
    (VmHWM) and its RSS once the queue is empty. The target is at most setup + 5 MB.

BENCH_BASELINE=<checkout>[,...] measures those checkouts' package too (first on
PYTHONPATH; every process runs in bench/project/, so that the working directory,
which ``python -m`` puts first, is not a checkout), interleaved with this one in
every round; their migrations must be a prefix of this checkout's. Timings on a
shared machine are noisy: compare medians and the ratios within one run.
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
from common import BACKLOG_SQL, JOB_TABLE, log

DB = "bench_ddj_startup"
BACKLOG = 10_000
PROJECT = common.BENCH / "project"
PROBE = common.BENCH / "startup_probe.py"
ARGS = ["runworker", "--concurrency", "8"]
SETUP_ONLY = (
    "import time, django; django.setup(); t = time.time()\n"
    "s = open('/proc/self/status').read()\n"
    "print(t, *(int(s.split(k + ':')[1].split()[0]) for k in ('VmRSS', 'VmHWM')))\n"
)
#: The probe's steps, in order: (label in the table, the mark that ends the step).
STEPS = [
    ("Python starts (exec -> first line)", "probe starts"),
    ("import django.core.management", "import django.core.management"),
    ("django.setup(): apps' modules and models", "apps and models imported"),
    ("  ready(): admin (admin.py autodiscovery)", "ready() admin"),
    ("  ready(): auth, contenttypes, sessions, messages", "ready() messages"),
    ("  ready(): django_durable_jobs (checks, jobs autodiscovery)", "ready() django_durable_jobs"),
    ("  rest of setup()", "django.setup() ends"),
    ("runworker module import", "command module imported"),
    ("system checks (+ argument parsing)", "system checks end"),
    ("Worker() built", "Worker() built"),
    ("first connection", "first connection open"),
    ("worker row written", "worker row written"),
    ("executor pool started (executors, completer, watchdog)", "executor pool started"),
    ("first claim", "first claim returned"),
    ("first jobs run, first outcome committed", "first outcome committed"),
]


def main() -> int:
    smoke = "--smoke" in sys.argv[1:]
    runs = int(os.environ.get("BENCH_STARTUP_RUNS", "3" if smoke else "11"))
    soak_jobs = int(os.environ.get("BENCH_SOAK_JOBS", "5000" if smoke else "100000"))
    python = common.ensure_venv("durable_jobs")
    if not common.running_in(python):
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    import psycopg

    variants = {"this checkout": common.ROOT}
    for baseline in filter(None, os.environ.get("BENCH_BASELINE", "").split(",")):
        path = Path(baseline).resolve()
        variants[f"baseline {path}"] = path
        # As pip does for a wheel (see common.compile_sources): no compilation at start-up.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(path / "django_durable_jobs")],
            check=True,
        )
    out = common.RESULTS / f"startup-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list]] = {
        name: {"first": [], "claimed": [], "floor": [], "marks": [], "setup_rss": []}
        for name in variants
    }
    loads: list[float] = []
    with common.private_server() as pg_url:
        base_env = common.fresh_ddj_database(pg_url, DB)
        envs = {
            name: {**base_env, "PYTHONPATH": f"{path}{os.pathsep}{PROJECT}"}
            for name, path in variants.items()
        }
        with psycopg.connect(f"{pg_url}/{DB}", autocommit=True) as conn:
            for r in range(runs):
                loads.append(os.getloadavg()[0])
                names = list(variants)
                names = names[r % len(names) :] + names[: r % len(names)]
                for name in names:
                    log(f"round {r + 1}/{runs}: {name}")
                    res, env = results[name], envs[name]
                    first, claimed = start(conn, env, out)
                    res["first"].append(first)
                    res["claimed"].append(claimed)
                    res["marks"].append(probe(conn, env, out))
                    floor, rss = setup_only(env)
                    res["floor"].append(floor)
                    res["setup_rss"].append(rss)
            for name in variants:
                log(f"{name}: -X importtime")
                results[name]["imports"] = importtime(conn, envs[name], out)
            for name in variants:
                log(f"{name}: draining {soak_jobs:,} jobs")
                results[name]["soak"] = soak(conn, envs[name], soak_jobs, out)
    (out / "startup.json").write_text(json.dumps(results, indent=1))
    text = report(results, runs, soak_jobs, loads)
    (out / "startup.md").write_text(text + "\n")
    print(text)
    log(f"results in {out}")
    return 0


# --------------------------------------------------------------------------- measurements


def backlog(conn, n: int) -> None:
    conn.execute(f"TRUNCATE {JOB_TABLE}, django_durable_jobs_worker")
    conn.execute(BACKLOG_SQL, [n])
    conn.execute("CHECKPOINT")


def wait_for_first_outcome(proc: subprocess.Popen) -> None:
    """Read the worker's log until its first 'succeeded' line (written after the commit)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if b" succeeded in " in line:
            return
    raise RuntimeError(f"the worker exited ({proc.wait()}) before running a job")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def start(conn, env: dict, out: Path) -> tuple[float, float]:
    """One plain start: seconds from spawn to the first outcome committed, and to its claim."""
    backlog(conn, BACKLOG)
    t_spawn = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", *ARGS],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_first_outcome(proc)
    finally:
        stop(proc)
    first, claimed = conn.execute(
        f"SELECT extract(epoch FROM min(finished_at)), extract(epoch FROM min(started_at)) "
        f"FROM {JOB_TABLE}"
    ).fetchone()
    return float(first) - t_spawn, float(claimed) - t_spawn


def probe(conn, env: dict, out: Path) -> dict[str, float]:
    """The same start under startup_probe.py: ms from spawn to each mark, and CPU ms by then."""
    backlog(conn, BACKLOG)
    marks_file = out / "marks.json"
    marks_file.unlink(missing_ok=True)
    t_spawn = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(PROBE), str(marks_file), *ARGS],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_first_outcome(proc)
    finally:
        stop(proc)
    return {
        name: ((t - t_spawn) * 1000, cpu * 1000)
        for name, t, cpu in json.loads(marks_file.read_text())
    }


def setup_only(env: dict) -> tuple[float, list[int]]:
    """A process that only runs django.setup(): seconds from spawn to its end; RSS, HWM (kB)."""
    t_spawn = time.time()
    text = subprocess.run(
        [sys.executable, "-c", SETUP_ONLY],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    done, *rss = text.split()
    return float(done) - t_spawn, [int(x) for x in rss]


def importtime(conn, env: dict, out: Path) -> dict[str, float]:
    """Import self-time (ms, inflated by -X importtime itself) of one start, by package."""
    backlog(conn, BACKLOG)
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "django", *ARGS],
        env=env,
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"import time:"):
                lines.append(line.decode())
            elif b" succeeded in " in line:
                break
    finally:
        stop(proc)
    groups: dict[str, float] = {}
    ours: dict[str, float] = {}
    for line in lines:
        parts = line.split("|")
        try:
            self_ms = int(parts[0].split(":")[1]) / 1000
        except ValueError:  # the header
            continue
        name = parts[2].strip()
        group = package_group(name)
        groups[group] = groups.get(group, 0.0) + self_ms
        if group == "django_durable_jobs":
            ours[name] = self_ms
    top = sorted(ours.items(), key=lambda kv: -kv[1])[:8]
    return {"groups": groups, "ours_top": top, "ours_count": len(ours)}


def package_group(module: str) -> str:
    top = module.split(".")[0]
    if top == "django" and module.startswith("django.contrib"):
        return "django.contrib"
    if top in ("django", "psycopg", "psycopg_binary", "django_durable_jobs"):
        return "psycopg" if top.startswith("psycopg") else top
    if top in sys.stdlib_module_names or top.startswith("_"):
        return "standard library"
    if top in ("ddj_bench", "bench_ddj_settings"):
        return "the project"
    return "other packages"


def soak(conn, env: dict, n: int, out: Path) -> dict[str, float]:
    """Drain ``n`` no-op jobs at --concurrency 8: peak (VmHWM) and end RSS, MB."""
    import psutil

    backlog(conn, n)
    with open(out / "soak-worker.log", "ab") as worker_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", *ARGS],
            env=env,
            cwd=PROJECT,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        worker = psutil.Process(proc.pid)
        t0 = time.perf_counter()
        samples = []
        try:
            while proc.poll() is None:
                left = conn.execute(
                    f"SELECT count(*) FROM {JOB_TABLE} WHERE status IN ('READY','RUNNING')"
                ).fetchone()[0]
                samples.append(worker.memory_info().rss / 2**20)
                if left == 0:
                    break
                time.sleep(0.25)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            end = worker.memory_info().rss / 2**20
        finally:
            proc.terminate()
            proc.wait(60)
    hwm = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return {
        "seconds": time.perf_counter() - t0,
        "peak_mb": max(hwm, *samples),
        "end_mb": end,
    }


# --------------------------------------------------------------------------- report


def report(results: dict, runs: int, soak_jobs: int, loads: list[float]) -> str:
    med = statistics.median
    names = list(results)
    base = names[0]
    table_head = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    def with_ratio(field: str) -> list[str]:
        """Median ms; beside the baselines, the median (min-max) of per-round ratios."""
        cells = []
        for name in names:
            text = f"{med(results[name][field]) * 1000:.0f}"
            if name != base:
                pairs = zip(results[name][field], results[base][field], strict=True)
                ratios = [a / b for a, b in pairs]
                text += f" (×{med(ratios):.2f}, {min(ratios):.2f}–{max(ratios):.2f})"
            cells.append(text)
        return cells

    def over_floor(name: str) -> str:
        pairs = zip(results[name]["first"], results[name]["floor"], strict=True)
        return f"{med(a - b for a, b in pairs) * 1000:.0f}"

    lines = [
        f"Worker start-up: `runworker --concurrency 8` over a {BACKLOG:,}-job backlog, "
        f"{runs} starts per checkout (interleaved); medians; ×: ratio to '{base}' "
        "in the same round, median (min–max). Load average (1 min) at each round's start: "
        + ", ".join(f"{x:.1f}" for x in loads)
        + f" ({os.cpu_count()} CPUs).",
        "",
        *table_head,
        row("spawn → first outcome committed, ms", with_ratio("first")),
        row("spawn → first job claimed, ms", with_ratio("claimed")),
        row("a `django.setup()`-only process: spawn → setup done, ms", with_ratio("floor")),
        row("first outcome less that floor (same round), ms", [over_floor(n) for n in names]),
        "",
        "Where the time goes (startup_probe.py): ms per step (CPU ms of the process, all its "
        "threads, in that step), medians:",
        "",
        *table_head,
    ]
    for label, key in STEPS:
        prev = previous_mark(key)
        cells = []
        for n in names:
            marks = results[n]["marks"]
            wall = med(m[key][0] - (m[prev][0] if prev else 0.0) for m in marks)
            cpu = med(m[key][1] - (m[prev][1] if prev else 0.0) for m in marks)
            cells.append(f"{wall:.1f} ({cpu:.1f})")
        lines.append(row(label, cells))
    end = STEPS[-1][1]
    lines.append(
        row(
            "total, probed (spawn → first outcome committed)",
            [
                f"{med(m[end][0] for m in results[n]['marks']):.0f} "
                f"({med(m[end][1] for m in results[n]['marks']):.0f})"
                for n in names
            ],
        )
    )
    lines += [
        "",
        "Import self-time by package (one start under `-X importtime`, which inflates it; ms):",
        "",
        *table_head,
    ]
    groups = sorted({g for n in names for g in results[n]["imports"]["groups"]})
    for group in groups:
        lines.append(
            row(group, [f"{results[n]['imports']['groups'].get(group, 0.0):.1f}" for n in names])
        )
    lines.append(
        row("modules of ours imported", [str(results[n]["imports"]["ours_count"]) for n in names])
    )
    for n in names:
        top = ", ".join(f"{m} {ms:.1f}" for m, ms in results[n]["imports"]["ours_top"])
        lines += ["", f"{n}: our slowest imports (self ms): {top}"]
    setup_rss = {n: med(r[0] for r in results[n]["setup_rss"]) / 1024 for n in names}

    def over_setup(field: str) -> list[str]:
        values = {n: results[n]["soak"][field] for n in names}
        return [f"{values[n]:.1f} (setup +{values[n] - setup_rss[n]:.1f})" for n in names]

    lines += [
        "",
        f"Memory (MB): a bare `django.setup()` process of the same project (VmRSS at its end, "
        f"median) against the worker draining {soak_jobs:,} no-op jobs at `--concurrency 8`.",
        "",
        *table_head,
        row("`django.setup()` alone", [f"{setup_rss[n]:.1f}" for n in names]),
        row("worker peak (VmHWM)", over_setup("peak_mb")),
        row("worker once the queue is empty", over_setup("end_mb")),
        row(
            "drain, s (spawn → queue empty)",
            [f"{results[n]['soak']['seconds']:.1f}" for n in names],
        ),
    ]
    return "\n".join(lines)


def previous_mark(key: str) -> str | None:
    keys = [k for _, k in STEPS]
    index = keys.index(key)
    return keys[index - 1] if index else None


if __name__ == "__main__":
    sys.exit(main())
