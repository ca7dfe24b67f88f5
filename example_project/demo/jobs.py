"""The demo's jobs: each shows one thing a job system must get right."""

from __future__ import annotations

import logging
import random
import statistics
import time
from datetime import timedelta

from django.core.mail import send_mail
from django.utils import timezone

from django_durable_jobs import current_job, job

from .models import Signup

logger = logging.getLogger("demo")


@job(queue="emails", max_attempts=5)
def send_welcome_email(signup_id: int) -> str:
    """Sends through the console email backend: watch the worker's output."""
    signup = Signup.objects.get(pk=signup_id)
    send_mail(
        "Welcome!",
        f"Hello {signup.email}, thanks for signing up.",
        None,
        [signup.email],
    )
    Signup.objects.filter(pk=signup_id).update(welcomed_at=timezone.now())
    return f"welcomed {signup.email}"


@job(max_attempts=5)
def sync_with_flaky_partner(order_ref: str) -> str:
    """Fails on its first two attempts, then succeeds: see its attempt history in the admin."""
    attempt = current_job().attempt
    if attempt <= 2:
        raise ConnectionError(f"partner API timed out (attempt {attempt})")
    return f"{order_ref} synced on attempt {attempt}"


@job(queue="reports", timeout=120)
def build_slow_report(seconds: float = 8.0) -> dict:
    """Takes a while: watch its progress bar in the admin, or stop the worker (Ctrl-C)
    during it to see a graceful shutdown."""
    started = time.monotonic()
    steps = max(1, round(seconds * 4))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        current_job().set_progress(step, steps, f"section {step} of {steps}")
    return {"rows": random.randint(100, 1000), "took_seconds": round(time.monotonic() - started, 2)}


@job
def compute_statistics(numbers: list[float]) -> dict:
    """Returns a value: open the job in the admin to see its result."""
    return {
        "count": len(numbers),
        "mean": statistics.fmean(numbers),
        "median": statistics.median(numbers),
        "stdev": statistics.pstdev(numbers),
    }


@job(takes_context=True)
def count_recent_signups(context) -> dict:
    """Periodic, every minute: the signups of the minute before its tick (not before "now")."""
    tick = context.fire_time or timezone.now()
    count = Signup.objects.filter(
        created_at__gte=tick - timedelta(minutes=1), created_at__lt=tick
    ).count()
    logger.info("signups in the minute before %s: %s", tick.isoformat(), count)
    return {"tick": tick.isoformat(), "signups": count}


@job
def purge_old_signups(days: int = 30) -> int:
    """Periodic, nightly at 02:30 Paris time: delete signups older than ``days`` days."""
    deleted, _ = Signup.objects.filter(
        created_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted
