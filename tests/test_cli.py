"""``manage.py jobs``: every subcommand, its table and JSON output, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.cli.common import parse_duration
from django_durable_jobs.models import Job, QueueState, Worker
from tests.conftest import ROOT
from tests.factories import make_job, make_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def jobs(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("jobs", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def jobs_json(*args: str) -> tuple[int, object]:
    code, out, _ = jobs(*args, "--json")
    return code, json.loads(out)


def usage_error(*args: str) -> str:
    """The error of a bad command line (exit status 2 from a shell, see the last test)."""
    with pytest.raises(CommandError) as info:
        jobs(*args)
    # Under call_command, argparse's own errors surface as "Error: ..." (status
    # 1); from a shell they exit 2 like ours.
    assert info.value.returncode == 2 or str(info.value).startswith("Error: argument")
    return str(info.value)


# -- list and show ---------------------------------------------------------------


def test_list_shows_newest_first_with_filters():
    make_job(JobStatus.FAILED, queue="emails", name="shop.send")
    make_job(JobStatus.SUCCESSFUL, queue="emails")
    newest = make_job(JobStatus.FAILED, queue="reports")
    code, out, _ = jobs("list", "--status", "FAILED")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "QUEUE", "STATUS"]
    assert lines[1].split()[0] == str(newest.id)
    assert len(lines) == 3
    assert "boom" in lines[1]
    code, out, _ = jobs("list", "--status", "failed", "--queue", "emails")
    assert "shop.send" in out
    assert "reports" not in out


def test_list_json_and_limit():
    ids = make_jobs(5, JobStatus.READY)
    code, data = jobs_json("list", "--limit", "2")
    assert code == 0
    assert [row["id"] for row in data] == ids[::-1][:2]
    assert set(data[0]) >= {"name", "queue", "status", "attempts", "run_at", "last_error"}
    assert "args" not in data[0]


def test_list_says_when_nothing_matches():
    code, out, _ = jobs("list", "--name", "nothing.here")
    assert (code, out.strip()) == (0, "No jobs (name nothing.here).")


def test_show_a_job_in_full():
    job = make_job(JobStatus.FAILED, args=["<b>x</b>", "y" * 5000], kwargs={"to": "a@example.com"})
    code, out, _ = jobs("show", str(job.id))
    assert code == 0
    assert f"Job #{job.id}" in out
    assert "a@example.com" in out
    assert "more characters: --full shows them" in out
    assert "attempt 3: error" in out
    assert "ValueError: boom" in out
    code, out, _ = jobs("show", str(job.id), "--full")
    assert "more characters" not in out
    code, data = jobs_json("show", str(job.id))
    assert data["args"][0] == "<b>x</b>"
    assert len(data["history"]) == 3


def test_show_a_missing_job_exits_1():
    code, _, err = jobs("show", "424242")
    assert code == 1
    assert "No job #424242" in err


# -- actions -----------------------------------------------------------------------


def test_retry_by_ids_reports_refusals_with_exit_1():
    failed = make_job(JobStatus.FAILED)
    running = make_job(JobStatus.RUNNING)
    code, out, _ = jobs("retry", str(failed.id), str(running.id))
    assert code == 1
    assert "1 job retried" in out
    assert "running (cancel it first)" in out
    assert Job.objects.get(id=failed.id).status == JobStatus.READY
    assert Job.objects.get(id=failed.id).meta["retried"][0]["by"].endswith("(cli)")


def test_retry_by_filter_json_and_dry_run():
    make_jobs(3, JobStatus.FAILED, queue="emails")
    make_job(JobStatus.FAILED, queue="other")
    code, data = jobs_json("retry", "--status", "FAILED", "--queue", "emails", "--dry-run")
    assert code == 0
    assert (data["done"], data["dry_run"]) == (3, True)
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 4
    code, data = jobs_json("retry", "--status", "FAILED", "--queue", "emails", "--yes")
    assert (code, data["done"], data["refused"]) == (0, 3, {})
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 1


def test_retry_past_the_limit_exits_1():
    make_jobs(3, JobStatus.FAILED)
    code, data = jobs_json("retry", "--status", "FAILED", "--limit", "2", "--yes")
    assert (code, data["done"], data["remaining"]) == (1, 2, True)


def test_actions_need_ids_or_a_filter():
    assert "give ids, or at least one filter" in usage_error("retry")
    assert "not both" in usage_error("cancel", "1", "--queue", "q")
    assert "not a job id" in usage_error("retry", "abc")
    message = usage_error("retry", "--status", "FAILED", "--limit", "0")
    assert "--limit must be at least 1" in message
    assert "unknown status" in usage_error("retry", "--status", "DONE")


def test_cancel_and_run_now():
    ready = make_job(JobStatus.READY, run_at=timezone.now() + timedelta(hours=1))
    later = make_job(JobStatus.READY, run_at=timezone.now() + timedelta(hours=1))
    code, out, _ = jobs("cancel", str(ready.id))
    assert (code, "1 job cancelled" in out) == (0, True)
    assert Job.objects.get(id=ready.id).status == JobStatus.CANCELLED
    code, data = jobs_json("run-now", str(later.id), str(ready.id))
    assert code == 1
    assert data["done"] == 1
    assert "CANCELLED" in data["refused"]
    assert Job.objects.get(id=later.id).run_at <= timezone.now()


def test_purge_by_filter_and_by_retention():
    old = timezone.now() - timedelta(days=40)
    make_jobs(2, JobStatus.SUCCESSFUL, finished_at=old)
    make_job(JobStatus.FAILED, finished_at=old)
    recent = make_job(JobStatus.SUCCESSFUL)
    ready = make_job(JobStatus.READY)
    code, out, _ = jobs("purge", "--status", "SUCCESSFUL", "--older-than", "30d", "--dry-run")
    assert code == 0
    assert out.startswith("2 jobs would be deleted (status SUCCESSFUL, finished before ")
    assert Job.objects.count() == 5
    code, data = jobs_json("purge", "--status", "SUCCESSFUL", "--older-than", "30d", "--yes")
    assert (code, data["done"]) == (0, 2)
    code, data = jobs_json("purge", "--dry-run")
    assert data["by_status"]["FAILED"]["would_delete"] == 1
    code, out, _ = jobs("purge", "--no-input")
    assert code == 0
    assert "FAILED: kept 30d; 1 deleted" in out
    assert "SUCCESSFUL: kept 7d; 0 deleted" in out
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, ready.id}


# -- queues, stats, health -----------------------------------------------------------


def test_pause_and_resume():
    code, out, _ = jobs("pause", "emails", "sms")
    assert (code, out.strip()) == (0, "Paused: emails, sms.")
    assert QueueState.objects.filter(paused=True).count() == 2
    code, data = jobs_json("resume", "emails")
    assert data == {"action": "resume", "changed": ["emails"], "unchanged": []}
    assert "not a valid queue name" in usage_error("pause", "no spaces")


def test_stats_table_and_json():
    make_job(queue="emails", run_at=timezone.now() - timedelta(minutes=3))
    make_job(JobStatus.FAILED, queue="emails")
    Worker.objects.create(id=uuid.uuid4(), hostname="box", pid=7, concurrency=2)
    code, out, _ = jobs("stats")
    assert code == 0
    emails = next(line for line in out.splitlines() if line.startswith("emails"))
    assert emails.split()[:4] == ["emails", "active", "1", "3m"]
    assert "box" in out
    assert "Last hour:" in out
    code, data = jobs_json("stats")
    queue = next(q for q in data["queues"] if q["name"] == "emails")
    assert queue["counts"]["FAILED"] == {"value": 1, "kind": "exact"}
    assert data["workers"][0]["alive"] is True
    assert len(data["throughput"]["succeeded"]) == 60


def test_health_exit_codes():
    code, out, _ = jobs("health")
    assert code == 1
    assert out.startswith("UNHEALTHY: 0 worker(s) alive")
    Worker.objects.create(id=uuid.uuid4(), hostname="box", pid=7, concurrency=2)
    assert jobs("health")[0] == 0
    make_job(queue="emails", run_at=timezone.now() - timedelta(hours=1))
    code, data = jobs_json("health", "--max-ready-age", "600")
    assert code == 1
    assert "queue emails" in data["problems"][0]
    assert jobs("health", "--max-ready-age", "7200", "--quiet") == (0, "", "")
    assert jobs("health", "--host", "elsewhere", "--max-ready-age", "7200")[0] == 1
    assert jobs("health", "--min-workers", "0", "--queue", "other")[0] == 0


def test_durations():
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)
    assert "not a duration" in usage_error("purge", "--older-than", "7 days")


def test_the_real_command_line_exit_codes():
    """Exit codes as a shell sees them (argparse errors, CommandError, handler status)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DDJ_USE_TEST_DB": "1",
        "PYTHONPATH": str(ROOT),
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "django", "jobs", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("health", "--quiet").returncode == 1
    bad = run("retry")
    assert bad.returncode == 2
    assert "give ids, or at least one filter" in bad.stderr
    assert run("list", "--bogus").returncode == 2
    assert run().returncode == 2
    listed = run("list", "--json")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
