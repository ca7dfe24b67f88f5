"""What the page and the command both do: sign people up and enqueue demo jobs."""

from __future__ import annotations

import random
import uuid

from django.db import transaction

from .jobs import build_slow_report, compute_statistics, send_welcome_email, sync_with_flaky_partner
from .models import Signup
from .orders import OrderPipeline, rebuild_search_index, sync_customer


def sign_up(email: str) -> Signup:
    """The signup row and its welcome email job commit together, or not at all."""
    with transaction.atomic():
        signup = Signup.objects.create(email=email)
        send_welcome_email.enqueue(signup.pk)
    return signup


def enqueue_demo_jobs() -> int:
    """One of each demo job, in one transaction; returns how many were enqueued."""
    with transaction.atomic():
        sign_up(f"visitor-{uuid.uuid4().hex[:6]}@example.com")
        sync_with_flaky_partner.enqueue(f"order-{random.randint(1000, 9999)}")
        build_slow_report.enqueue(seconds=8)
        compute_statistics.using(priority=10).enqueue([random.random() * 100 for _ in range(50)])
        OrderPipeline.start(f"order-{random.randint(1000, 9999)}", items=random.randint(1, 5))
        customer = random.randint(1, 3)
        for change in ("address", "phone", "newsletter"):
            sync_customer.enqueue(customer_id=customer, change=change)
        rebuild_search_index.enqueue("products")
        rebuild_search_index.enqueue("products")  # returns the same job, .deduplicated is True
    return 9
