"""pgqueuer entrypoints for bench/shapes.py (async, pgqueuer's style).

The queue runs on one asyncpg connection, as in the harness (pgq_project/bench_pgq_app.py).
asyncpg runs one statement at a time per connection, so the rows are written with
psycopg on a small pool of CONCURRENCY autocommit connections opened with the worker
(one transaction per insert). Payloads are bytes: JSON for the 1 MB job, parsed here.
"""

import asyncio
import json
import os
from contextlib import asynccontextmanager

import asyncpg
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

CONCURRENCY = int(os.environ.get("BENCH_SHAPES_CONCURRENCY", "8"))
INSERT = "INSERT INTO bench_shape_row (job_ref, payload, created_at) VALUES (%s, %s, now())"


@asynccontextmanager
async def main():
    dsn = os.environ["BENCH_DSN"]
    conn = await asyncpg.connect(dsn)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(CONCURRENCY):
        pool.put_nowait(await psycopg.AsyncConnection.connect(dsn, autocommit=True))
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("shape_orm_write")
    async def orm_write(job: Job) -> None:
        i = int(job.payload)
        db = await pool.get()
        try:
            await db.execute(INSERT, (i, f"row {i}"))
        finally:
            pool.put_nowait(db)

    @pgq.entrypoint("shape_sleep")
    async def sleep_50ms(job: Job) -> None:
        await asyncio.sleep(0.05)

    @pgq.entrypoint("shape_big")
    async def big(job: Job) -> None:
        items = json.loads(job.payload)["items"]
        if len(items) != 10_000:
            raise ValueError(f"{len(items)} items")

    try:
        yield pgq
    finally:
        while not pool.empty():
            await pool.get_nowait().close()
        await conn.close()
