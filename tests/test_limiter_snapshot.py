"""AdaptiveLimiter snapshots: counters, tokens and wait percentiles."""

from __future__ import annotations

import math

import pytest
from limiter_helpers import Job, drained, running, start_in_order

from admission import AdaptiveLimiter, Permit
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- snapshots ------------------------------------------------------------------------


async def test_snapshot_figures(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("snap", rate=1, burst=2, max_concurrency=10, classes=["a", "b"])
    held = limiter.try_acquire(2, "a")
    assert held is not None
    assert limiter.try_acquire(1, "b") is None
    permits: list[Permit] = []

    def job(cls: str) -> Job:
        async def run() -> None:
            permits.append(await limiter.acquire(1, cls))

        return run

    async with running() as tg:
        await start_in_order(admission_clock, tg, job("a"), job("b"), job("b"), job("a"))
        await admission_clock.advance(2.5)
        snapshot = limiter.snapshot()
        assert snapshot.name == "snap"
        assert (snapshot.rate, snapshot.burst, snapshot.max_concurrency) == (1.0, 2.0, 10)
        assert snapshot.tokens == pytest.approx(0.5)
        assert snapshot.in_flight == 3
        assert snapshot.waiting == 2
        assert snapshot.admitted_total == 3
        assert snapshot.rejected_total == 1
        a, b = snapshot.workload_class("a"), snapshot.workload_class("b")
        assert (a.in_flight, a.waiting, a.admitted_total) == (2, 1, 2)
        assert (b.in_flight, b.waiting, b.admitted_total, b.rejected_total) == (1, 1, 1, 1)
        assert a.tokens is None
        assert a.rate is None
        await admission_clock.advance(10)
    snapshot = limiter.snapshot()
    assert snapshot.waiting == 0
    assert snapshot.admitted_total == 5
    # Waits: 0 (immediate), then 1, 2, 3, 4 seconds.
    assert snapshot.wait_p50_seconds == pytest.approx(2.0)
    assert snapshot.wait_p99_seconds == pytest.approx(4.0)
    assert snapshot.workload_class("a").wait_p99_seconds == pytest.approx(4.0)
    assert snapshot.workload_class("b").wait_p50_seconds == pytest.approx(2.0)
    with pytest.raises(KeyError):
        snapshot.workload_class("nope")
    for permit in [held, *permits]:
        permit.release()
    assert limiter.snapshot().in_flight == 0


async def test_snapshot_percentiles_of_waits_that_arrive_out_of_order(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter("order", rate=1, burst=1, classes=["a", "b"])
    assert limiter.try_acquire(1, "a") is not None  # the one token, taken with no wait
    waited = {"a": [0.0], "b": []}

    def job(cls: str) -> Job:
        async def run() -> None:
            (await limiter.acquire(1, cls)).release()

        return run

    async with running() as tg:
        # Each waiter arrives alone, `wait` before the next token: waits in no order.
        for number, wait in enumerate([1.0, 0.25, 0.75, 0.5, 0.125, 1.0, 0.375]):
            cls = "ab"[number % 2]
            await admission_clock.advance(1 - wait)
            tg.start_soon(job(cls))
            await admission_clock.advance(wait)
            waited[cls].append(wait)
    snapshot = limiter.snapshot()
    assert snapshot.admitted_total == 8

    def nearest_rank(values: list[float], fraction: float) -> float:
        ordered = sorted(values)
        return ordered[math.ceil(fraction * len(ordered)) - 1]

    every = waited["a"] + waited["b"]
    assert snapshot.wait_p50_seconds == pytest.approx(nearest_rank(every, 0.5))
    assert snapshot.wait_p99_seconds == pytest.approx(nearest_rank(every, 0.99))
    assert snapshot.wait_p50_seconds == pytest.approx(0.375)
    for cls, waits in waited.items():
        figures = snapshot.workload_class(cls)
        assert figures.admitted_total == len(waits)
        assert figures.wait_p50_seconds == pytest.approx(nearest_rank(waits, 0.5))
        assert figures.wait_p99_seconds == pytest.approx(nearest_rank(waits, 0.99))
    assert snapshot.workload_class("a").wait_p50_seconds == pytest.approx(0.375)
    assert snapshot.workload_class("b").wait_p50_seconds == pytest.approx(0.5)


async def test_snapshot_of_a_fresh_limiter(admission_clock: VirtualClock) -> None:
    snapshot = AdaptiveLimiter("fresh", rate=5, burst=7).snapshot()
    assert snapshot.tokens == 7.0
    assert snapshot.wait_p50_seconds == 0.0
    assert snapshot.wait_p99_seconds == 0.0
    assert [c.name for c in snapshot.classes] == ["default"]
    assert snapshot.max_concurrency is None


async def test_snapshot_counts_immediate_admissions_as_zero_waits(
    admission_clock: VirtualClock,
) -> None:
    limiter = drained(AdaptiveLimiter("waits", rate=1, burst=1))

    async def one() -> None:
        async with limiter.admit():
            pass

    async with running() as tg:
        tg.start_soon(one)
        await admission_clock.advance(3)
    for _ in range(8):
        async with limiter:
            pass
        await admission_clock.advance(1)
    snapshot = limiter.snapshot()
    assert snapshot.admitted_total == 10
    assert snapshot.wait_p50_seconds == 0.0
    assert snapshot.wait_p99_seconds == pytest.approx(1.0)
