"""Jobs with an expiry (tests/worker/test_expiry.py)."""

from __future__ import annotations

import time

from django.db.models import F

from django_durable_jobs import FixedDelay, job
from tests.testapp.models import Counter


def _bump(key: str) -> None:
    Counter.objects.filter(key=key).update(value=F("value") + 1)


@job(expires=0.3)
def short_lived(key: str) -> str:
    _bump(key)
    return "ran"


@job
def runs(key: str, seconds: float = 0.0) -> str:
    _bump(key)
    time.sleep(seconds)
    return "ran"


@job(max_attempts=3, retry=FixedDelay(0.6))
def fails_first(key: str) -> str:
    _bump(key)
    if Counter.objects.get(key=key).value == 1:
        raise RuntimeError("first attempt fails")
    return "ran"


@job
def callback(label: str) -> str:
    Counter.objects.filter(key=label).update(value=F("value") + 1)
    return label
