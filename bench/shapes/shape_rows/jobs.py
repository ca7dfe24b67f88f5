"""Our jobs for bench/shapes.py (found by the worker's autodiscovery of ``<app>.jobs``)."""

import time

from django.db import transaction
from django.utils import timezone

from django_durable_jobs import job
from shape_rows.models import ShapeRow


@job(name="shape_orm_write")
def orm_write(i):
    with transaction.atomic():
        ShapeRow.objects.create(job_ref=i, payload=f"row {i}", created_at=timezone.now())


@job(name="shape_sleep")
def sleep_50ms(i):
    time.sleep(0.05)


@job(name="shape_big")
def big(items):
    if len(items) != 10_000:
        raise ValueError(f"{len(items)} items")
