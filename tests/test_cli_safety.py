"""``manage.py jobs``: mistakes are refused, destructive commands ask, job data stays inert."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_durable_jobs import JobStatus
from django_durable_jobs.cli.common import printable
from django_durable_jobs.models import Job
from tests.factories import error_entry, make_job, make_jobs

pytestmark = pytest.mark.django_db(transaction=True)


def jobs(*args: str) -> tuple[int, str, str]:
    """``manage.py jobs``: exit code, output, errors (a refusal's message among them).

    An argparse error reaches ``call_command`` as exit code 1 (the command line says 2).
    """
    out, err = StringIO(), StringIO()
    try:
        call_command("jobs", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("age", ["-5", "0", "nan", "inf", "-1d", "1e400"])
def test_a_negative_or_nonsense_duration_is_refused(age):
    make_jobs(2, JobStatus.SUCCESSFUL, finished_at=timezone.now() - timedelta(days=1))
    code, _, err = jobs("purge", f"--older-than={age}", "--yes")
    assert code != 0
    assert "is not a duration" in err
    assert Job.objects.count() == 2


def test_max_ready_age_must_be_a_positive_duration():
    code, _, err = jobs("health", "--max-ready-age", "nan")
    assert code != 0
    assert "is not a duration" in err


@pytest.mark.parametrize(
    "args",
    [
        ("purge", "--status", "SUCCESSFUL"),
        ("purge",),
        ("retry", "--status", "FAILED"),
        ("cancel", "--status", "READY"),
    ],
)
def test_destructive_commands_need_yes_without_a_terminal(args):
    make_job(JobStatus.SUCCESSFUL, finished_at=timezone.now() - timedelta(days=60))
    make_job(JobStatus.FAILED)
    make_job(JobStatus.READY)
    before = sorted(Job.objects.values_list("id", "status"))
    code, _, err = jobs(*args)
    assert code == 2
    assert "Add --yes (or --no-input)" in err
    assert sorted(Job.objects.values_list("id", "status")) == before
    code, _, _ = jobs(*args, "--yes")
    assert code == 0
    assert sorted(Job.objects.values_list("id", "status")) != before


def test_the_question_names_the_filter_and_the_count(monkeypatch):
    make_jobs(3, JobStatus.FAILED, queue="emails")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    answers = iter(["no"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    code, out, err = jobs("retry", "--status", "FAILED", "--queue", "emails")
    assert code == 1
    assert "This will retry 3 jobs (status FAILED, queue emails)." in out
    assert "Cancelled: nothing was done." in err
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 3


def test_ids_need_no_confirmation():
    job = make_job(JobStatus.FAILED)
    code, out, _ = jobs("retry", str(job.id))
    assert (code, "1 job retried" in out) == (0, True)


def test_control_characters_from_job_data_are_escaped():
    hostile = "\x1b]0;owned\x07\x1b[2J\u202eevil"
    job = make_job(
        JobStatus.FAILED,
        name="tests.hostile\x1b[31m",
        errors=[error_entry(1, message=hostile, traceback=f"Traceback\n{hostile}")],
    )
    for args in (
        ("show", str(job.id)),
        ("list", "--status", "FAILED"),
        ("show", str(job.id), "--json"),
    ):
        code, out, _ = jobs(*args)
        assert code == 0
        for control in ("\x1b", "\x07", "\u202e"):
            assert control not in out, args
    code, out, _ = jobs("show", str(job.id))
    assert "\\x1b]0;owned\\x07" in out


def test_printable_keeps_text_and_newlines():
    assert printable("héllo\n\tworld") == "héllo\n\tworld"
    assert printable("\x00\x9b") == "\\x00\\x9b"


@pytest.mark.parametrize("job_id", ["9" * 30, str(2**63)])
def test_huge_ids_are_just_not_found(job_id):
    code, _, err = jobs("show", job_id)
    assert code == 1
    assert f"No job #{job_id}." in err
    code, out, _ = jobs("retry", job_id)
    assert code == 1
    assert "not found" in out
