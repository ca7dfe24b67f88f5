"""Weighted queues: each claim's free slots shared among the queues by weight, none starved.

``runworker --queues a,b`` claims from both queues in one statement, by priority
then age: a busy queue whose jobs are older can keep a quiet one waiting until
it drains. ``--queues emails:3,reports:1`` instead gives each queue a share of
every claim round, by stride scheduling: each queue has a *pass* that grows by
``1/weight`` for each job it is given; each free slot goes to the queue with the
lowest pass (ties: the order listed). The worker then claims per queue, one
statement each (the backend's ``claim(queues=[q])``), and hands the jobs to its
threads interleaved in that slot order, so starts follow the shares too.

Work-conserving: a queue whose claim comes back short (nothing ready, paused,
held by concurrency keys) gets the unclaimed part of its share refunded, and
the round's remaining slots go to the other queues at once. Such a queue earns
nothing while it has nothing to run: when it is asked again, its pass is
raised to the lowest of the others, so it takes its weight's share, not a burst.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..exceptions import InvalidJobOptions
from ..rows import ClaimedJob
from ..validation import check_queue

#: The largest weight. Beyond 1000:1 a "share" is starvation by another name.
MAX_WEIGHT = 1000

#: A trailing ``:<something numeric>`` is a weight, good or bad (``emails:0``,
#: ``emails:1.5``, ``emails:-2``); anything else after a colon is part of the name.
_WEIGHT_RE = re.compile(r"^(?P<name>.*):(?P<weight>[+-]?[0-9][0-9.eE+-]*|)$")

#: How ``Worker(queues=...)`` may be given: names, ``"name:weight"`` strings, or a mapping.
QueuesArgument = Mapping[str, int] | Iterable[str] | None


@dataclasses.dataclass(frozen=True)
class QueueSelection:
    """The queues a worker takes jobs from, with their weights if any were given.

    ``names`` is None for every queue. ``weights`` is None for the plain,
    unweighted claim (one statement over all ``names``, by priority then age).
    """

    names: list[str] | None
    weights: dict[str, int] | None = None

    @property
    def fair(self) -> bool:
        """Claim per queue by weight? (Not for a single queue: its share is everything.)"""
        return self.weights is not None and len(self.weights) > 1

    def describe(self) -> str:
        """``emails:3,reports:1`` when weighted, ``a,b`` or ``all`` otherwise."""
        weights = self.weights or {}
        names = self.names or []
        return ",".join(f"{n}:{weights[n]}" if n in weights else n for n in names) or "all"


def _weight(value: Any, name: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_WEIGHT:
        raise InvalidJobOptions(
            f"queue {name!r} has an invalid weight {value!r}: use a whole number from 1 to "
            f"{MAX_WEIGHT} "
            f"(for example {name}:3 takes three jobs from {name!r} for each one of a queue of "
            "weight 1). To stop taking jobs from a queue, leave it out or pause it."
        )
    return value


def _split(token: str) -> tuple[str, int | None]:
    """``"emails:3"`` -> ``("emails", 3)``; ``"emails"`` and ``"api:v2"`` carry no weight."""
    match = _WEIGHT_RE.match(token)
    if match is None:
        return token, None
    name, text = match["name"], match["weight"]
    try:
        value: Any = int(text)
    except ValueError:
        value = text
    return name, _weight(value, name)


def parse_queues(queues: QueuesArgument) -> QueueSelection:
    """Validate ``Worker(queues=...)`` or the ``--queues`` list; raise ``InvalidJobOptions``.

    Names are checked against ``DURABLE_JOBS["QUEUES"]``. Without any weight, a
    repeated name is merged, as before weights existed; once weights are used, a
    queue listed twice is an error (which weight was meant?). A name ending in
    ``:<number>`` must then be written with its weight: ``tenant:1:1``.
    """
    if queues is None:
        return QueueSelection(None)
    if isinstance(queues, str):
        queues = [token.strip() for token in queues.split(",") if token.strip()]
    if isinstance(queues, Mapping):
        pairs: list[tuple[str, int | None]] = [
            (check_queue(name), _weight(weight, name)) for name, weight in queues.items()
        ]
        weighted = True
    else:
        pairs = []
        for token in queues:
            if not isinstance(token, str):
                raise InvalidJobOptions(
                    f"queues={queues!r}: each entry must be a queue name or 'name:weight', "
                    f"not {token!r}."
                )
            name, weight = _split(token)
            pairs.append((check_queue(name), weight))
        weighted = any(weight is not None for _, weight in pairs)
    if not pairs:
        return QueueSelection(None)
    if not weighted:
        return QueueSelection(sorted({name for name, _ in pairs}))
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise InvalidJobOptions(
                f"queue {name!r} is listed twice: give each queue once, with one weight "
                "(for example emails:3,reports:1)."
            )
        seen.add(name)
    weights = {name: 1 if weight is None else weight for name, weight in pairs}
    return QueueSelection(list(weights), weights)


#: ``claim(queue, limit)``: claim up to ``limit`` jobs of that one queue.
ClaimOne = Callable[[str, int], list[ClaimedJob]]


class FairClaimer:
    """Splits each claim round's slots among weighted queues; keeps the shares across rounds.

    Guarantee, while every queue has jobs to claim: after N jobs claimed, a
    queue of weight w (of a total W) has between ``N*w/W - Q*w/W`` and
    ``N*w/W + 1`` of them (Q: the number of queues), whatever the size of
    each round, down to rounds of one slot.
    """

    def __init__(self, weights: Mapping[str, int]) -> None:
        self.order = list(weights)
        self.rank = {queue: index for index, queue in enumerate(self.order)}
        # Integer strides (lcm / weight) instead of 1/weight: exact, no rounding drift.
        lcm = math.lcm(*weights.values())
        self.stride = {queue: lcm // weight for queue, weight in weights.items()}
        self.passes = dict.fromkeys(self.order, 0)
        #: Queues whose last claim came back short: they rejoin at the others' pass.
        self.idle: set[str] = set()

    def _rejoin(self) -> None:
        busy = [self.passes[queue] for queue in self.order if queue not in self.idle]
        if busy:
            floor = min(busy)
            for queue in self.idle:
                self.passes[queue] = max(self.passes[queue], floor)
        low = min(self.passes.values())
        for queue in self.order:  # keep the numbers small over a long run
            self.passes[queue] -= low

    def plan(self, slots: int, among: list[str]) -> list[str]:
        """The queue of each of ``slots`` slots, in order; advances the passes."""
        sequence = []
        for _ in range(slots):
            queue = min(among, key=lambda name: (self.passes[name], self.rank[name]))
            self.passes[queue] += self.stride[queue]
            sequence.append(queue)
        return sequence

    def claim(self, claim_one: ClaimOne, limit: int) -> tuple[list[ClaimedJob], Exception | None]:
        """Claim up to ``limit`` jobs, shared by weight; the jobs in start order.

        A claim that raises ends the round: the jobs claimed before it are
        returned with the error, so the caller runs them (they are claimed:
        dropping them would leave them RUNNING until their lease expires).
        """
        self._rejoin()
        among = list(self.order)
        short: set[str] = set()
        claimed: list[ClaimedJob] = []
        failure: Exception | None = None
        while len(claimed) < limit and among and failure is None:
            sequence = self.plan(limit - len(claimed), among)
            asked = Counter(sequence)
            got: dict[str, deque[ClaimedJob]] = {}
            for queue in among:
                if not asked[queue]:
                    continue
                try:
                    jobs = claim_one(queue, asked[queue])
                except Exception as exc:
                    failure = exc
                    jobs = []
                got[queue] = deque(jobs)
                missing = asked[queue] - len(jobs)
                if missing:
                    self.passes[queue] -= missing * self.stride[queue]
                    short.add(queue)
                if failure is not None:
                    for later in among[among.index(queue) + 1 :]:  # not asked after all
                        self.passes[later] -= asked[later] * self.stride[later]
                    break
            for queue in sequence:
                pending = got.get(queue)
                if pending:
                    claimed.append(pending.popleft())
            among = [queue for queue in among if queue not in short]
        self.idle = short
        return claimed, failure
