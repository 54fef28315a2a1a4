"""AdaptiveLimiter snapshots: counters, tokens and wait percentiles."""

from __future__ import annotations

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
