"""A no-op job and a latency probe, the same bodies as the peers' (bench-peers adapters)."""

import os
import time

from django_durable_jobs import job


@job(name="noop")
def noop(i=0):
    return None


@job(name="lat")
def lat(i):
    with open(os.environ["BENCH_LATFILE"], "a") as f:
        f.write(f"{i} {time.time()}\n")
