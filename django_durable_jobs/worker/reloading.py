"""``runworker --reload``: Django's autoreloader (as ``runserver`` uses it), made graceful.

Django's ``run_with_reloader`` runs the command in a child process, in a
thread, and exits that child the moment a file changes; its parent, on
SIGTERM, kills the child outright. Either would cut running jobs off (back
only when their leases expire, charged as lost). So the same parts are put
together differently: the parent restarts the child while it exits with
status 3 and passes SIGTERM/SIGINT on to it; the child (Django's reloader
around the worker's thread) stops the worker first and lets its running jobs
finish (up to the shutdown timeout), on a file change and on a signal alike.
A child whose parent was killed (SIGKILL) stops the same way, rather than
running on as an orphan.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.utils import autoreload

from .process import Worker

logger = logging.getLogger("django_durable_jobs.worker")

#: Seconds between two looks at the parent process.
PARENT_CHECK_INTERVAL = 0.5
#: Seconds beyond the shutdown timeout to wait for the worker before reloading anyway.
GRACE = 10.0


class _Reloadable:
    """The worker of this child process, and how to stop it gracefully."""

    def __init__(self, make_worker: Callable[..., Worker]) -> None:
        self.make_worker = make_worker
        self.worker: Worker | None = None
        self.done = threading.Event()
        self.parent_pid = os.getppid()
        self.stopping = False

    def run(self) -> None:
        """The reloader's main function (it runs in a thread: no signal handlers there)."""
        try:
            self.worker = self.make_worker(install_signal_handlers=False)
            self.worker.run()
        finally:
            self.done.set()

    def finish(self, why: str) -> None:
        """Stop claiming and wait for the running jobs (bounded by the shutdown timeout)."""
        worker = self.worker
        logger.warning("%s: stopping the worker (its running jobs finish first)", why)
        if worker is None or self.done.is_set():
            return
        worker.stop()
        self.done.wait(worker.shutdown_timeout + GRACE)

    def on_file_changed(self, sender: Any, file_path: Any, **kwargs: Any) -> None:
        self.finish(f"{file_path} changed")
        logger.warning("reloading the worker")  # returning None lets Django reload

    def on_reloader_started(self, sender: Any, **kwargs: Any) -> None:
        """Runs in the child's main thread: replace Django's exit-at-once SIGTERM handler."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        threading.Thread(
            target=self._watch_parent,
            args=(sender,),
            name="durable-jobs-reload-parent",
            daemon=True,
        ).start()

    def _watch_parent(self, reloader: Any) -> None:
        while not self.done.wait(PARENT_CHECK_INTERVAL):
            if os.getppid() != self.parent_pid:
                self.finish("the reloader's parent process is gone")
                reloader.stop()  # ends Django's reloader loop: the child exits
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping and self.worker is not None:
            logger.warning("%s again: releasing the running jobs now", signal.Signals(signum).name)
            self.worker.stop(force=True)  # as a second signal does without --reload
            return
        self.stopping = True
        self.finish(signal.Signals(signum).name)
        sys.exit(0)


def run_with_reloader(make_worker: Callable[..., Worker]) -> None:
    """Run ``make_worker(install_signal_handlers=False).run()`` under Django's autoreloader."""
    if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
        sys.exit(_restart_on_change())
    reloadable = _Reloadable(make_worker)
    autoreload.file_changed.connect(reloadable.on_file_changed, weak=False)
    autoreload.autoreload_started.connect(reloadable.on_reloader_started, weak=False)
    reloader = autoreload.get_reloader()
    logger.info("watching for file changes with %s", type(reloader).__name__)
    autoreload.start_django(reloader, reloadable.run)


def _restart_on_change() -> int:
    """The parent: run the child until it exits with anything but 3 (reload); its status."""
    env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    while True:
        child = subprocess.Popen(autoreload.get_child_arguments(), env=env)

        def forward(signum: int, frame: FrameType | None, child: Any = child) -> None:
            child.send_signal(signal.SIGTERM)  # (Ctrl-C also reaches the child directly)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        code = child.wait()
        if code != 3:
            return code
