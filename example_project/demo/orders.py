"""Flow control in the demo: a three-step order pipeline, per-customer order, unique jobs."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django_durable_jobs import ExponentialBackoff, Next, Steps, Unique, job, step

logger = logging.getLogger("demo")


class OrderPipeline(Steps):
    """Reserve stock, charge the card, then (10 s later) send the confirmation.

    Each step is its own job: a crash during ``charge_card`` retries only that
    step, and the stock is never reserved twice. Open a step in the admin to
    see the whole run, step by step.
    """

    name = "demo.orders"  # job names: demo.orders.reserve_stock, ...

    @step(max_attempts=3)
    def reserve_stock(self, order_ref: str, items: int) -> dict:
        logger.info("%s: reserved %s items", order_ref, items)
        return {"order_ref": order_ref, "items": items, "reservation": f"R-{order_ref}"}

    @step(max_attempts=5, retry=ExponentialBackoff(base=2.0, jitter=0.0), timeout=30)
    def charge_card(self, order: dict) -> Next[dict]:
        if self.context.attempt == 1 and random.random() < 0.5:
            raise ConnectionError("payment provider timed out")  # retried in 2 s
        charged = {**order, "charge": f"ch_{random.randint(10**5, 10**6 - 1)}"}
        return Next(charged, delay=timedelta(seconds=10))  # the confirmation waits a little

    @step
    def send_confirmation(self, order: dict) -> str:
        logger.info("%s: confirmation sent (charge %s)", order["order_ref"], order["charge"])
        return f"{order['order_ref']} confirmed"


@job(concurrency_key="customer:{customer_id}", concurrency_limit=1)
def sync_customer(customer_id: int, change: str) -> str:
    """One at a time per customer, across all workers: the changes apply in order."""
    time.sleep(1)
    return f"customer {customer_id}: {change}"


@job(unique=Unique(key=lambda index: index))
def rebuild_search_index(index: str) -> str:
    """At most one pending rebuild per index: a second enqueue returns the first job."""
    time.sleep(2)
    return f"{index} rebuilt"
