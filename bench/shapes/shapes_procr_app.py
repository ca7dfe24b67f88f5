"""procrastinate tasks for bench/shapes.py, async (procrastinate's own style).

The app is the harness's (procr_project/bench_procr_app.py): a PsycopgConnector at its
defaults. The row is written through the worker's own pool (``execute_query_async``,
autocommit: one transaction per insert).
"""

import asyncio
import os

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_DSN"]))

INSERT = "INSERT INTO bench_shape_row (job_ref, payload, created_at) VALUES (%(i)s, %(p)s, now())"


@app.task(name="shape_orm_write", queue="default")
async def orm_write(i):
    await app.connector.execute_query_async(INSERT, i=i, p=f"row {i}")


@app.task(name="shape_sleep", queue="default")
async def sleep_50ms(i):
    await asyncio.sleep(0.05)


@app.task(name="shape_big", queue="default")
async def big(items):
    if len(items) != 10_000:
        raise ValueError(f"{len(items)} items")
