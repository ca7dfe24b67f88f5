"""The periodic-tick ledger: claim_tick() wins a (schedule, fire_time) once, even racing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from django_durable_jobs.db.ticks import claim_tick
from django_durable_jobs.ledger import prune_ticks
from django_durable_jobs.models import Job, ScheduleTick

from .support import ALIAS, in_threads, insert_one

pytestmark = pytest.mark.django_db(transaction=True)

FIRE = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def test_a_tick_is_claimed_once():
    first = claim_tick(ALIAS, "nightly", FIRE)
    assert first is not None
    assert claim_tick(ALIAS, "nightly", FIRE) is None
    assert claim_tick(ALIAS, "nightly", FIRE + timedelta(minutes=1)) not in (None, first)
    assert claim_tick(ALIAS, "hourly", FIRE) is not None  # another schedule, same time
    assert ScheduleTick.objects.get(id=first).fire_time == FIRE
    assert ScheduleTick.objects.count() == 3


def test_losing_a_tick_inside_a_transaction_leaves_the_transaction_usable():
    claim_tick(ALIAS, "nightly", FIRE)
    with transaction.atomic(using=ALIAS):
        assert claim_tick(ALIAS, "nightly", FIRE) is None
        # No error was raised (or caught): the transaction goes on and commits.
        job_id = insert_one("after the lost tick")
    assert ScheduleTick.objects.count() == 1
    assert Job.objects.filter(id=job_id).exists()


def test_racing_schedulers_claim_each_tick_exactly_once():
    fire_times = [FIRE + timedelta(seconds=15 * i) for i in range(5)]

    def scheduler(_: int) -> list[int | None]:
        won = []
        for fire_time in fire_times:
            with transaction.atomic(using=ALIAS):
                won.append(claim_tick(ALIAS, "fast", fire_time))
        return won

    results = in_threads(6, scheduler)
    for index in range(len(fire_times)):
        winners = [won[index] for won in results if won[index] is not None]
        assert len(winners) == 1, fire_times[index]
    rows = ScheduleTick.objects.filter(schedule="fast").order_by("fire_time")
    assert [tick.fire_time for tick in rows] == fire_times


def test_a_tick_whose_winner_rolls_back_can_be_won_by_the_next():
    claimed = threading.Event()
    waited: list[float] = []

    def scheduler(index: int) -> int | None:
        with transaction.atomic(using=ALIAS):
            if index == 0:
                tick = claim_tick(ALIAS, "nightly", FIRE)
                claimed.set()
                time.sleep(0.5)
                transaction.set_rollback(True, using=ALIAS)  # its job's insert failed
                return tick
            assert claimed.wait(10)
            started = time.monotonic()
            tick = claim_tick(ALIAS, "nightly", FIRE)
            waited.append(time.monotonic() - started)
            return tick

    first, second = in_threads(2, scheduler)
    assert first is not None
    assert second is not None  # the rolled-back claim did not take the tick
    assert waited[0] > 0.1  # it waited for the first transaction to end
    assert list(ScheduleTick.objects.values_list("id", flat=True)) == [second]


def test_pruning_the_ledger_keeps_each_schedules_newest_tick_and_newest_run():
    now = FIRE + timedelta(days=30)
    old = [FIRE + timedelta(hours=i) for i in range(4)]
    for index, fire_time in enumerate(old):
        tick = claim_tick(ALIAS, "nightly", fire_time)
        if index in (0, 1):  # the first two ran a job; the last two were skipped
            ScheduleTick.objects.filter(id=tick).update(job_id=1000 + index)
    recent = claim_tick(ALIAS, "recent", now - timedelta(hours=1))
    lonely = claim_tick(ALIAS, "lonely", FIRE)
    # Gone: nightly's first run (a newer run exists) and its first skipped tick.
    assert prune_ticks(ALIAS, now) == 2
    remaining = ScheduleTick.objects.filter(schedule="nightly").order_by("fire_time")
    assert [tick.fire_time for tick in remaining] == [old[1], old[3]]
    assert set(ScheduleTick.objects.exclude(schedule="nightly").values_list("id", flat=True)) == {
        recent,
        lonely,
    }
