"""How many jobs to claim ahead of free threads: what the threads finish during one claim."""

from __future__ import annotations


class AdaptivePrefetch:
    """``size * claim time / job time``, from moving averages, capped by ``cap``.

    Fast jobs are claimed in deep batches (claims stop being the bottleneck),
    slow jobs not ahead at all (no hoarding while other workers are idle).
    Zero before the first job finishes.
    """

    def __init__(self, size: int, cap: int) -> None:
        self.size = size
        self.cap = cap
        # Moving averages (seconds).
        self.job_seconds: float | None = None
        self.claim_seconds = 0.001

    @property
    def allowance(self) -> int:
        if not self.cap or self.job_seconds is None:
            return 0
        ahead = self.size * self.claim_seconds / max(self.job_seconds, 1e-5)
        return min(self.cap, int(ahead + 0.5))

    def note_claim(self, seconds: float) -> None:
        """Feed a claim's round-trip time."""
        self.claim_seconds += 0.2 * (seconds - self.claim_seconds)

    def note_job(self, seconds: float) -> None:
        """Feed a finished job's run time."""
        previous = self.job_seconds
        self.job_seconds = seconds if previous is None else previous + 0.1 * (seconds - previous)
