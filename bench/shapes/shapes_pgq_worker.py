"""``pgqueuer.run()`` of shapes_pgq_app, as the harness's bench_pgq_worker.py runs its app.

python shapes_pgq_worker.py <max_concurrent_tasks> <batch_size>
"""

import asyncio
import sys

from pgqueuer import run
from pgqueuer.core import logconfig

if __name__ == "__main__":
    logconfig.setup_fancy_logger(logconfig.LogLevel.INFO)
    mct, batch = int(sys.argv[1]), int(sys.argv[2])
    asyncio.run(run("shapes_pgq_app:main", max_concurrent_tasks=mct, batch_size=batch))
