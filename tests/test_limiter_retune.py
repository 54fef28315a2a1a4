"""AdaptiveLimiter concurrency cap and retune of rate, burst and cap."""

from __future__ import annotations

import math

import anyio
import pytest
from limiter_helpers import Job, admit_and_release, drained, running, start_in_order

from admission import AdaptiveLimiter, Permit
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- concurrency ------------------------------------------------------------------


async def test_the_concurrency_cap_holds(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("cap", rate=1000, burst=100, max_concurrency=2)
    first = await limiter.acquire()
    second = await limiter.acquire()
    entered: list[float] = []

    async def third() -> None:
        async with limiter.admit():
            entered.append(admission_clock.monotonic())

    async with running() as tg:
        tg.start_soon(third)
        await admission_clock.advance(10)
        assert entered == []
        assert limiter.waiting == 1
        first.release()
        await admission_clock.advance(0)
        assert entered == [10.0]
    second.release()
    assert limiter.in_flight == 0


async def test_lowering_the_cap_cancels_nothing_in_flight(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("lower", rate=1000, burst=100, max_concurrency=3)
    finished: list[int] = []
    releases = [anyio.Event() for _ in range(3)]
    entered: list[float] = []

    def holder(i: int) -> Job:
        async def run() -> None:
            async with limiter.admit():
                await releases[i].wait()
            finished.append(i)

        return run

    async def newcomer() -> None:
        async with limiter.admit():
            entered.append(admission_clock.monotonic())

    async with running() as tg:
        await start_in_order(admission_clock, tg, *(holder(i) for i in range(3)))
        assert limiter.in_flight == 3
        limiter.retune(max_concurrency=1)
        assert limiter.max_concurrency == 1
        assert limiter.in_flight == 3
        await start_in_order(admission_clock, tg, newcomer)
        for i in range(2):
            await admission_clock.advance(1)
            releases[i].set()
            await admission_clock.advance(0)
            # Still at or over the new cap: nobody new gets in.
            assert entered == []
        assert limiter.in_flight == 1
        await admission_clock.advance(1)
        releases[2].set()
        await admission_clock.advance(0)
    assert finished == [0, 1, 2]
    assert entered == [3.0]


async def test_raising_the_cap_admits_waiters_at_once(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("raise", rate=1000, burst=100, max_concurrency=1)
    held = await limiter.acquire()
    permits: list[Permit] = []

    async def waiter() -> None:
        permits.append(await limiter.acquire())

    async with running() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await admission_clock.advance(1)
        assert permits == []
        limiter.retune(max_concurrency=3)
        await admission_clock.advance(0)
    assert len(permits) == 2
    assert limiter.in_flight == 3
    held.release()
    for permit in permits:
        permit.release()
    assert limiter.in_flight == 0


# -- retune -----------------------------------------------------------------------


@pytest.mark.parametrize(("new_rate", "due"), [(0.2, 7.0), (0.05, 16.0), (0.1, 10.0)])
async def test_retune_replans_a_sleeping_waiter_exactly(
    admission_clock: VirtualClock, new_rate: float, due: float
) -> None:
    limiter = drained(AdaptiveLimiter("replan", rate=0.1, burst=1))
    granted: list[float] = []
    waiter = admit_and_release(limiter, admission_clock, granted)

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(4)
        limiter.retune(rate=new_rate)
        assert limiter.rate == new_rate
        await admission_clock.advance(due - 4 - 1e-6)
        assert granted == []
        await admission_clock.advance(20)
    assert granted == [pytest.approx(due, abs=1e-6)]


async def test_retune_replans_a_queue_of_waiters(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("queue", rate=1, burst=1))
    granted: list[float] = []
    waiter = admit_and_release(limiter, admission_clock, granted)

    async with running() as tg:
        for _ in range(4):
            tg.start_soon(waiter)
        await admission_clock.advance(2.5)
        limiter.retune(rate=2)
        await admission_clock.advance(10)
    # 0.5 token earned by 2.5 at the old rate; the other 0.5 takes 0.25 s at the new.
    assert granted == pytest.approx([1.0, 2.0, 2.75, 3.25])


async def test_retune_clamps_tokens_to_a_lower_burst(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("clamp", rate=1, burst=10)
    limiter.retune(burst=3)
    assert limiter.burst == 3.0
    assert limiter.snapshot().tokens == 3.0
    limiter.retune(burst=8)
    assert limiter.snapshot().tokens == 3.0
    assert limiter.try_acquire(3) is not None
    assert limiter.try_acquire(1) is None


async def test_retune_below_a_waiters_cost_fails_it(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("shrink", rate=1, burst=4))
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await limiter.acquire(4)
        except ValueError as exc:
            errors.append(exc)

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(1)
        limiter.retune(burst=2)
        await admission_clock.advance(0)
    assert len(errors) == 1
    assert "4.0" in str(errors[0])
    assert limiter.waiting == 0
    assert limiter.in_flight == 0


async def test_retune_is_all_or_nothing(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("atomic", rate=1, burst=2, max_concurrency=3)
    with pytest.raises(ValueError, match=r"rate.*nan"):
        limiter.retune(rate=math.nan, burst=5, max_concurrency=9)
    with pytest.raises(ValueError, match=r"burst.*0\.5"):
        limiter.retune(rate=4, burst=0.5, max_concurrency=9)
    with pytest.raises(ValueError, match="max_concurrency"):
        limiter.retune(rate=4, burst=4, max_concurrency=0)
    assert (limiter.rate, limiter.burst, limiter.max_concurrency) == (1.0, 2.0, 3)


async def test_retune_with_nothing_changes_nothing(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("same", rate=1, burst=2, max_concurrency=3)
    limiter.retune()
    assert (limiter.rate, limiter.burst, limiter.max_concurrency) == (1.0, 2.0, 3)


async def test_a_decorator_cost_above_a_retuned_burst_fails_fast(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter("late", rate=1, burst=3)

    @limiter.limit(cost=3)
    async def handler() -> str:
        return "done"

    assert await handler() == "done"
    limiter.retune(burst=2)
    with pytest.raises(ValueError, match="burst"):
        await handler()
    assert limiter.waiting == 0
    assert admission_clock.sleepers == 0
