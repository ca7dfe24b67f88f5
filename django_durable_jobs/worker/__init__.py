"""The worker runtime: a process that claims jobs, runs them and records how each ended.

A job's trip through it: ``process`` (claim) → ``pool`` (a thread) →
``execution`` (run it) → ``outcomes`` (decide the ending) → ``completer`` (batch)
→ ``recorder`` (the one fenced write, then the signals). Around them:
``heartbeat`` (leases, the invariant, maintenance), ``listener`` (NOTIFY
wake-ups), ``watchdog`` (timeouts, start marks), ``prefetch`` (how far ahead to
claim) and ``supervisor`` (``runworker --processes``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .process import EXIT_RECYCLE, PREFETCH_PER_THREAD, Worker

__all__ = ["EXIT_RECYCLE", "PREFETCH_PER_THREAD", "Worker"]


def __getattr__(name: str) -> Any:
    # Lazy: the maintenance services use ``worker.outcomes`` without the whole runtime.
    if name in __all__:
        from . import process

        return getattr(process, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
