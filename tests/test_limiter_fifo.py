"""AdaptiveLimiter order: strict FIFO, no overtaking, and cancelled waiters."""

from __future__ import annotations

import asyncio
import random

import anyio
import anyio.lowlevel
import pytest
from limiter_helpers import Job, admit_and_release, drained, running, start_in_order

from admission import AdaptiveLimiter, Permit
from admission.bucket import TokenBucket
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- order ----------------------------------------------------------------------


async def test_waiters_are_served_strictly_fifo(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("fifo", rate=1, burst=5, initial_tokens=0)
    granted: list[tuple[int, float]] = []

    def job(i: int, cost: float) -> Job:
        async def run() -> None:
            permit = await limiter.acquire(cost)
            granted.append((i, admission_clock.monotonic()))
            permit.release()

        return run

    costs = [5, 1, 1, 3, 0.5, 2]
    async with running() as tg:
        await start_in_order(admission_clock, tg, *(job(i, c) for i, c in enumerate(costs)))
        assert limiter.waiting == len(costs)
        await admission_clock.advance(30)
    # Small requests never overtake the big one ahead of them.
    assert [i for i, _ in granted] == list(range(len(costs)))
    assert [t for _, t in granted] == pytest.approx([5.0, 6.0, 7.0, 10.0, 10.5, 12.5])


async def test_fifo_holds_with_many_waiters(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("many", rate=10, burst=1, initial_tokens=0, max_concurrency=3)
    granted: list[int] = []
    permits: list[Permit] = []

    def job(i: int) -> Job:
        async def run() -> None:
            permits.append(await limiter.acquire())
            granted.append(i)

        return run

    async with running() as tg:
        await start_in_order(admission_clock, tg, *(job(i) for i in range(40)))
        for _ in range(20):
            await admission_clock.advance(1)
            while permits:
                permits.pop(0).release()
    assert granted == list(range(40))
    assert limiter.in_flight == 0


async def test_try_acquire_never_overtakes_a_waiter(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("polite", rate=1, burst=3))
    granted: list[float] = []
    big = admit_and_release(limiter, admission_clock, granted, cost=3)

    async with running() as tg:
        await start_in_order(admission_clock, tg, big)
        await admission_clock.advance(1)
        # One token is there, but the waiter ahead needs it.
        assert limiter.try_acquire(1) is None
        await admission_clock.advance(1)
        assert limiter.try_acquire(1) is None
        await admission_clock.advance(1)
    assert granted == [3.0]
    assert limiter.snapshot().rejected_total == 3  # one in drained(), two here
    assert limiter.try_acquire(1) is None
    await admission_clock.advance(1)
    assert limiter.try_acquire(1) is not None


async def test_a_newcomer_does_not_overtake_a_waiter(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("newcomer", rate=1, burst=2))
    order: list[str] = []

    def job(name: str, cost: float) -> Job:
        async def run() -> None:
            async with limiter.admit(cost):
                order.append(name)

        return run

    async with running() as tg:
        await start_in_order(admission_clock, tg, job("big", 2))
        await admission_clock.advance(1)
        await start_in_order(admission_clock, tg, job("small", 1))
        await admission_clock.advance(3)
    assert order == ["big", "small"]


# -- cancellation -------------------------------------------------------------------


async def test_a_cancelled_waiter_consumes_nothing(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("cancel", rate=1, burst=1))
    granted: list[tuple[str, float]] = []

    def job(name: str) -> Job:
        async def run() -> None:
            permit = await limiter.acquire()
            granted.append((name, admission_clock.monotonic()))
            permit.release()

        return run

    async with running() as tg:
        with anyio.CancelScope() as doomed:
            async with anyio.create_task_group() as inner:
                await start_in_order(admission_clock, inner, job("first"))
                await start_in_order(admission_clock, tg, job("second"))
                await admission_clock.advance(0.5)
                doomed.cancel()
        assert limiter.waiting == 1
        await admission_clock.advance(5)
    # The second waiter is served when the first would have been.
    assert granted == [("second", 1.0)]
    snapshot = limiter.snapshot()
    assert snapshot.cancelled_total == 1
    assert snapshot.admitted_total == 2  # drained() + second
    assert snapshot.in_flight == 0


async def test_cancelling_the_timekeeper_leaves_the_others_on_time(
    admission_clock: VirtualClock,
) -> None:
    limiter = drained(AdaptiveLimiter("keeper", rate=1, burst=1))
    granted: list[tuple[int, float]] = []
    scopes = [anyio.CancelScope() for _ in range(4)]

    def job(i: int) -> Job:
        async def run() -> None:
            with scopes[i]:
                permit = await limiter.acquire()
                granted.append((i, admission_clock.monotonic()))
                permit.release()

        return run

    async with running() as tg:
        await start_in_order(admission_clock, tg, *(job(i) for i in range(4)))
        # The first waiter sleeps on the limiter's timer: cancel it, then the next one.
        scopes[0].cancel()
        await admission_clock.advance(0.5)
        scopes[1].cancel()
        await admission_clock.advance(10)
    assert granted == [(2, 1.0), (3, 2.0)]
    assert limiter.snapshot().cancelled_total == 2


async def test_waiters_behind_a_holder_are_served_while_it_holds(
    admission_clock: VirtualClock,
) -> None:
    limiter = drained(AdaptiveLimiter("hold", rate=1, burst=1))
    granted: list[tuple[int, float]] = []
    permits: list[Permit] = []

    def job(i: int) -> Job:
        async def run() -> None:
            permits.append(await limiter.acquire())
            granted.append((i, admission_clock.monotonic()))

        return run

    async with running() as tg:
        await start_in_order(admission_clock, tg, *(job(i) for i in range(3)))
        await admission_clock.advance(10)
    assert granted == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert limiter.in_flight == 3


async def test_cancel_after_grant_before_resuming(admission_clock: VirtualClock) -> None:
    """Granted by a release, cancelled in the same instant: tokens and slot come back."""
    limiter = AdaptiveLimiter("race", rate=1, burst=2, max_concurrency=1)
    holder = limiter.try_acquire()
    assert holder is not None
    outcome: list[str] = []
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            permit = await limiter.acquire()
            outcome.append("granted")
            permit.release()
            await anyio.lowlevel.checkpoint()
        if scope.cancelled_caught:
            outcome.append("cancelled")

    async with anyio.create_task_group() as tg:
        await start_in_order(admission_clock, tg, waiter)
        holder.release()  # grants the waiter ...
        scope.cancel()  # ... which is cancelled before it runs again
    snapshot = limiter.snapshot()
    assert limiter.in_flight == 0
    assert limiter.waiting == 0
    if outcome == ["cancelled"]:
        # The admission was undone: its token is back, it never counted.
        assert snapshot.tokens == pytest.approx(1.0)
        assert snapshot.admitted_total == 1
        assert snapshot.cancelled_total == 1
    else:
        # The backend let the granted waiter return first (trio does).
        assert outcome == ["granted", "cancelled"]
        assert snapshot.tokens == pytest.approx(0.0)
        assert snapshot.admitted_total == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_native_asyncio_cancel_after_grant_undoes_the_admission(
    admission_clock: VirtualClock,
) -> None:
    """``Task.cancel()`` lands even when the task was woken already: nothing is kept."""
    limiter = AdaptiveLimiter("undo", rate=1, burst=2, max_concurrency=1)
    holder = limiter.try_acquire()
    assert holder is not None
    task = asyncio.create_task(limiter.acquire())
    await admission_clock.advance(0)
    assert limiter.waiting == 1
    holder.release()  # grants the waiting task ...
    task.cancel()  # ... and cancels it before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    snapshot = limiter.snapshot()
    assert snapshot.in_flight == 0
    assert snapshot.waiting == 0
    assert snapshot.tokens == pytest.approx(1.0)
    assert snapshot.admitted_total == 1
    assert snapshot.cancelled_total == 1
    # The undone admission left no trace in the wait figures either.
    assert snapshot.wait_p99_seconds == 0.0
    assert limiter.try_acquire() is not None


@pytest.mark.parametrize("seed", range(30))
async def test_cancellation_at_random_points_conserves_tokens_and_slots(
    admission_clock: VirtualClock, seed: int
) -> None:
    """Random arrivals, releases and cancellations (also in the instant of a grant).

    Whatever is cancelled, the bucket ends exactly where a bucket that saw only
    the admissions that really happened would be, and the slots add up.
    """
    rng = random.Random(seed)
    rate, burst, cap = rng.choice([1.0, 2.0, 0.5]), float(rng.randint(1, 4)), rng.randint(1, 4)
    limiter = AdaptiveLimiter("random", rate=rate, burst=burst, max_concurrency=cap)
    replay = TokenBucket(rate, burst, now=0.0)
    held: dict[int, tuple[Permit, anyio.Event]] = {}
    scopes: dict[int, anyio.CancelScope] = {}
    outcomes: dict[int, str] = {}
    granted = 0

    def job(i: int, cost: float) -> Job:
        async def run() -> None:
            nonlocal granted
            scope = scopes[i] = anyio.CancelScope()
            done = anyio.Event()
            with scope:
                permit = await limiter.acquire(cost)
                now = admission_clock.monotonic()
                assert replay.has(cost, now)
                replay.take(cost)
                granted += 1
                held[i] = (permit, done)
                try:
                    await done.wait()
                finally:
                    del held[i]
                    permit.release()
            outcomes[i] = "cancelled" if scope.cancelled_caught else "done"

        return run

    async with running() as tg:
        for i in range(40):
            action = rng.random()
            if action < 0.45:
                tg.start_soon(job(i, rng.choice([0.5, 1.0, burst])))
            elif action < 0.65 and held:
                _, done = held[rng.choice(sorted(held))]
                done.set()
                if rng.random() < 0.5:
                    # Cancel someone in the very instant the release may grant it.
                    live = [k for k in sorted(scopes) if k not in outcomes]
                    if live:
                        scopes[rng.choice(live)].cancel()
            elif action < 0.85:
                live = [k for k in sorted(scopes) if k not in outcomes]
                if live:
                    scopes[rng.choice(live)].cancel()
            else:
                await admission_clock.advance(rng.choice([0.25, 0.5, 1.0, 2.0]))
            await admission_clock.advance(0)
            assert limiter.in_flight == len(held) <= cap
            now = admission_clock.monotonic()
            assert limiter.snapshot().tokens == pytest.approx(replay.peek(now), abs=1e-9)
            assert limiter.waiting == len(scopes) - len(outcomes) - len(held)
        for _ in range(100):
            if len(outcomes) == len(scopes):
                break
            for _, done in list(held.values()):
                done.set()
            await admission_clock.run_until_idle(limit=1000)
    assert len(outcomes) == len(scopes)
    assert limiter.in_flight == 0
    assert limiter.waiting == 0
    now = admission_clock.monotonic()
    snapshot = limiter.snapshot()
    assert snapshot.tokens == pytest.approx(replay.peek(now), abs=1e-9)
    assert snapshot.admitted_total == granted
    # Every request either was admitted or was cancelled while it waited.
    assert snapshot.cancelled_total == len(scopes) - granted
    assert admission_clock.sleepers == 0
