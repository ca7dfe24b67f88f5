"""A three-step run for the tests; not a jobs.py module, so workers import it by name."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from django.db.models import F

from django_durable_jobs import Done, ExponentialBackoff, Next, Steps, step

from .models import Counter


def _count(key: str) -> None:
    Counter.objects.filter(key=key).update(value=F("value") + 1)


class OrderPipeline(Steps):
    """reserve -> charge -> confirm; each step counts its runs in Counter rows."""

    name = "tests.orders"

    @step(max_attempts=3)
    def reserve(self, order_id: int, **options: object) -> dict:
        """``options`` (hang, delay...) steer the later steps in the tests."""
        _count(f"reserve-{order_id}")
        return {"order_id": order_id, "reservation": f"R{order_id}", **options}

    @step(max_attempts=3, retry=ExponentialBackoff(base=0.1, jitter=0))
    def charge(self, order: dict) -> Next[dict]:
        _count(f"charge-{order['order_id']}")
        marker = os.environ.get("DDJ_TEST_MARKER_DIR")
        if marker and self.context.attempt == 1 and order.get("hang"):
            Path(marker, "charging").write_text(str(os.getpid()))
            time.sleep(60)
        if Counter.objects.filter(key=f"decline-{order['order_id']}").exists():
            raise RuntimeError("card declined")
        delay = order.get("delay")
        return Next({**order, "charged": True}, delay=timedelta(seconds=delay) if delay else None)

    @step
    def confirm(self, order: dict) -> str:
        _count(f"confirm-{order['order_id']}")
        if order.get("stop_early"):
            return Done("should not happen")
        return f"order {order['order_id']} confirmed ({order['reservation']})"


class ShortRun(Steps):
    @step
    def first(self, value: int) -> Done[int] | int:
        return Done(value * 10) if value < 0 else value

    @step
    def second(self, value: int) -> int:
        return value + 1
