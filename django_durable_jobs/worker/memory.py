"""How much memory this process holds now, for ``runworker --max-memory``."""

from __future__ import annotations

import os
import resource
import sys


def resident_megabytes() -> float:
    """The resident set size in MB (MiB): current on Linux, the peak elsewhere.

    Linux reads ``/proc/self/statm`` (a few microseconds). The peak
    (``ru_maxrss``) would not do there: it survives ``exec``, so a recycled
    worker would look as big as its predecessor.
    """
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB
