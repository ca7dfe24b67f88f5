"""django-tasks-db tasks for bench/shapes.py: the same bodies as shape_rows/jobs.py."""

import time

from django.db import transaction
from django.tasks import task
from django.utils import timezone
from shape_rows.models import ShapeRow


@task
def orm_write(i):
    with transaction.atomic():
        ShapeRow.objects.create(job_ref=i, payload=f"row {i}", created_at=timezone.now())


@task
def sleep_50ms(i):
    time.sleep(0.05)


@task
def big(items):
    if len(items) != 10_000:
        raise ValueError(f"{len(items)} items")
