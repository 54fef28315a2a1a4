"""AdaptiveLimiter: admission, order, cancellation, retune, timeouts, decorators, snapshots."""

from __future__ import annotations

import asyncio
import math
import pickle
import random

import anyio
import anyio.lowlevel
import pytest
from limiter_helpers import Job, drained, running, start_in_order
from time_machine import TimeMachineFixture

from admission import AdaptiveLimiter, AdmissionError, AdmissionTimeout, Permit, WorkloadClass
from admission.bucket import TokenBucket
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- basic admission ------------------------------------------------------------


async def test_a_new_limiter_starts_full(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("full", rate=1, burst=3)
    permits = [limiter.try_acquire() for _ in range(4)]
    assert [p is not None for p in permits] == [True, True, True, False]
    assert limiter.in_flight == 3
    assert limiter.snapshot().tokens == pytest.approx(0.0)


async def test_initial_tokens_override_the_full_start(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("empty", rate=2, burst=3, initial_tokens=0)
    assert limiter.try_acquire() is None
    await admission_clock.advance(0.5)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None


async def test_async_with_admits_and_releases(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("plain", rate=1, burst=2, max_concurrency=5)
    async with limiter:
        assert limiter.in_flight == 1
        async with limiter:
            assert limiter.in_flight == 2
    assert limiter.in_flight == 0
    snapshot = limiter.snapshot()
    assert snapshot.admitted_total == 2
    assert snapshot.tokens == pytest.approx(0.0)


async def test_async_with_waits_for_the_rate(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("plain", rate=2, burst=1)
    entered: list[float] = []

    async def worker() -> None:
        async with limiter:
            entered.append(admission_clock.monotonic())

    async with running() as tg:
        for _ in range(3):
            tg.start_soon(worker)
        await admission_clock.advance(5)
    assert entered == [0.0, 0.5, 1.0]
    assert limiter.in_flight == 0


async def test_admit_gives_a_permit_that_tells_its_story(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("story", rate=4, burst=2, classes=["a", "b"]))
    permits: list[Permit] = []

    async def worker() -> None:
        async with limiter.admit(cost=2, workload_class="b") as permit:
            permits.append(permit)
            assert not permit.released
            assert limiter.snapshot().workload_class("b").in_flight == 1

    async with running() as tg:
        tg.start_soon(worker)
        await admission_clock.advance(1)
    [permit] = permits
    assert permit.cost == 2.0
    assert permit.workload_class == "b"
    assert permit.waited_seconds == 0.5
    assert permit.released
    assert "released" in repr(permit)
    assert "story/b" in repr(permit)


async def test_acquire_and_release_by_hand(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("hand", rate=1, burst=2, max_concurrency=1)
    permit = await limiter.acquire()
    assert limiter.in_flight == 1
    assert "held" in repr(permit)
    permit.release()
    permit.release()
    assert limiter.in_flight == 0
    with limiter.try_acquire() or pytest.fail("no permit"):
        pass
    assert limiter.in_flight == 0


async def test_release_is_idempotent_and_returns_the_slot_once(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter("once", rate=100, burst=10, max_concurrency=2)
    first = limiter.try_acquire()
    second = limiter.try_acquire()
    assert first is not None
    assert second is not None
    assert limiter.try_acquire() is None
    for _ in range(5):
        first.release()
    assert limiter.in_flight == 1
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None


async def test_fractional_costs(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("frac", rate=1, burst=1)
    assert limiter.try_acquire(0.25) is not None
    assert limiter.try_acquire(0.75) is not None
    assert limiter.try_acquire(0.01) is None


async def test_plain_time_machine_shift_moves_refill(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    limiter = AdaptiveLimiter("shift", rate=1, burst=2)
    assert limiter.try_acquire(2) is not None
    assert limiter.try_acquire() is None
    time_machine.shift(1)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None
    time_machine.shift(60)
    assert limiter.snapshot().tokens == 2.0


async def test_introspection(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "intro", rate=3, burst=4, max_concurrency=7, classes=["x", WorkloadClass("y")]
    )
    assert limiter.name == "intro"
    assert (limiter.rate, limiter.burst, limiter.max_concurrency) == (3.0, 4.0, 7)
    assert limiter.workload_classes == ("x", "y")
    assert limiter.clock is admission_clock
    assert repr(limiter) == (
        "<AdaptiveLimiter 'intro' rate=3.0 burst=4.0 max_concurrency=7 in_flight=0 waiting=0>"
    )
    assert AdaptiveLimiter("d", rate=1, burst=1).workload_classes == ("default",)


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

    async def big() -> None:
        permit = await limiter.acquire(3)
        granted.append(admission_clock.monotonic())
        permit.release()

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

    async def waiter() -> None:
        permit = await limiter.acquire()
        granted.append(admission_clock.monotonic())
        permit.release()

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

    async def waiter() -> None:
        permit = await limiter.acquire()
        granted.append(admission_clock.monotonic())
        permit.release()

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


# -- timeouts ------------------------------------------------------------------------


async def test_timeout_retry_after_counts_the_queue_ahead(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("timeout", rate=1, burst=1))
    results: list[tuple[str, float, float]] = []

    async def first() -> None:
        permit = await limiter.acquire()
        results.append(("first", admission_clock.monotonic(), 0.0))
        permit.release()

    async def second() -> None:
        try:
            await limiter.acquire(timeout=0.5)
        except AdmissionTimeout as exc:
            results.append(("timeout", admission_clock.monotonic(), exc.retry_after))

    async with running() as tg:
        await start_in_order(admission_clock, tg, first, second)
        await admission_clock.advance(5)
    assert results == [("timeout", 0.5, pytest.approx(1.5)), ("first", 1.0, 0.0)]
    snapshot = limiter.snapshot()
    assert snapshot.timed_out_total == 1
    assert snapshot.admitted_total == 2


async def test_timeout_retry_after_counts_other_classes_ahead(
    admission_clock: VirtualClock,
) -> None:
    limiter = drained(AdaptiveLimiter("tie", rate=1, burst=1, classes=["a", "b"]))
    retry_after: list[float] = []
    classes: list[str] = []

    async def first() -> None:
        async with limiter.admit(workload_class="a"):
            pass

    async def second() -> None:
        try:
            await limiter.acquire(workload_class="b", timeout=0.5)
        except AdmissionTimeout as exc:
            retry_after.append(exc.retry_after)
            classes.append(exc.workload_class)

    async with running() as tg:
        await start_in_order(admission_clock, tg, first, second)
        await admission_clock.advance(5)
    # Both waiters got the same start tag: the first one still goes first.
    assert retry_after == [pytest.approx(1.5)]
    assert classes == ["b"]


async def test_timeout_with_nothing_ahead(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("alone", rate=0.5, burst=2), cost=2)
    errors: list[tuple[float, AdmissionTimeout]] = []

    async def waiter() -> None:
        try:
            async with limiter.admit(cost=2, timeout=1):
                pass
        except AdmissionTimeout as exc:
            errors.append((admission_clock.monotonic(), exc))

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(10)
    [(at, error)] = errors
    assert at == 1.0
    # 0.5 token there, 1.5 missing at 0.5 per second.
    assert error.retry_after == pytest.approx(3.0)
    assert error.limiter == "alone"
    assert isinstance(error, TimeoutError)
    assert isinstance(error, AdmissionError)
    assert limiter.waiting == 0
    # The timed-out waiter took nothing: the bucket refilled to the brim.
    assert limiter.snapshot().tokens == 2.0


async def test_timeout_zero_fails_at_once(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("zero", rate=2, burst=1))
    with pytest.raises(AdmissionTimeout) as info:
        await limiter.acquire(timeout=0)
    assert info.value.retry_after == pytest.approx(0.5)
    assert admission_clock.monotonic() == 0.0
    assert limiter.waiting == 0
    assert limiter.snapshot().timed_out_total == 1


async def test_timeout_when_capacity_is_there_admits(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("there", rate=1, burst=1)
    permit = await limiter.acquire(timeout=0)
    assert permit.waited_seconds == 0.0


async def test_infinite_timeout_means_none(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("inf", rate=0.01, burst=1))
    granted: list[float] = []

    async def waiter() -> None:
        permit = await limiter.acquire(timeout=math.inf)
        granted.append(admission_clock.monotonic())
        permit.release()

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(100)
    assert granted == [pytest.approx(100.0)]


async def test_a_timeout_while_waiting_for_a_slot(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("slot", rate=10, burst=5, max_concurrency=1)
    held = await limiter.acquire()
    errors: list[tuple[float, float]] = []

    async def waiter() -> None:
        try:
            await limiter.acquire(timeout=2)
        except AdmissionTimeout as exc:
            errors.append((admission_clock.monotonic(), exc.retry_after))

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(10)
    # Tokens are there; only the slot is missing, which retry_after cannot know.
    assert errors == [(2.0, 0.0)]
    held.release()
    assert limiter.in_flight == 0


async def test_timed_out_waiters_leave_the_others_on_time(admission_clock: VirtualClock) -> None:
    limiter = drained(AdaptiveLimiter("mixed", rate=1, burst=1))
    events: list[tuple[int, str, float]] = []

    def job(i: int, timeout: float | None) -> Job:
        async def run() -> None:
            try:
                async with limiter.admit(timeout=timeout):
                    events.append((i, "in", admission_clock.monotonic()))
            except AdmissionTimeout:
                events.append((i, "timeout", admission_clock.monotonic()))

        return run

    async with running() as tg:
        await start_in_order(
            admission_clock, tg, job(0, 0.3), job(1, None), job(2, 0.5), job(3, 2.5), job(4, None)
        )
        await admission_clock.advance(10)
    assert events == [
        (0, "timeout", 0.3),
        (2, "timeout", 0.5),
        (1, "in", 1.0),
        (3, "in", 2.0),
        (4, "in", 3.0),
    ]


def test_admission_timeout_pickles() -> None:
    error = AdmissionTimeout(1.25, limiter="l", workload_class="c")
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, AdmissionTimeout)
    assert (clone.retry_after, clone.limiter, clone.workload_class) == (1.25, "l", "c")
    assert str(clone) == "not admitted in time by limiter 'l', class 'c'; retry after 1.250s"


# -- decorators --------------------------------------------------------------------


async def test_bare_decorator_admits_and_keeps_the_signature(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter("deco", rate=1, burst=2)
    seen: list[int] = []

    @limiter
    async def handle(value: int, *, scale: int = 2) -> int:
        """Handle one value."""
        seen.append(limiter.in_flight)
        return value * scale

    assert handle.__name__ == "handle"
    assert handle.__doc__ == "Handle one value."
    assert handle.__wrapped__.__name__ == "handle"  # type: ignore[attr-defined]
    assert await handle(3) == 6
    assert await handle(3, scale=5) == 15
    assert seen == [1, 1]
    assert limiter.in_flight == 0
    assert limiter.snapshot().admitted_total == 2


async def test_decorator_waits_for_the_rate(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("deco-rate", rate=1, burst=1)
    times: list[float] = []

    @limiter
    async def handle() -> None:
        times.append(admission_clock.monotonic())

    async with running() as tg:
        for _ in range(3):
            tg.start_soon(handle)
        await admission_clock.advance(5)
    assert times == [0.0, 1.0, 2.0]


async def test_decorator_releases_when_the_handler_raises(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("deco-raise", rate=10, burst=10, max_concurrency=1)

    @limiter
    async def handle() -> None:
        raise KeyError("boom")

    for _ in range(3):
        with pytest.raises(KeyError):
            await handle()
    assert limiter.in_flight == 0


async def test_limit_decorator_uses_cost_class_and_timeout(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("deco-limit", rate=1, burst=4, classes=["cheap", "costly"])
    seen: list[tuple[int, int]] = []

    @limiter.limit(cost=3, workload_class="costly", timeout=1)
    async def handle() -> str:
        snapshot = limiter.snapshot()
        seen.append(
            (
                snapshot.workload_class("costly").in_flight,
                snapshot.workload_class("cheap").in_flight,
            )
        )
        return "ok"

    assert handle.__name__ == "handle"
    assert await handle() == "ok"
    assert seen == [(1, 0)]
    assert limiter.snapshot().tokens == pytest.approx(1.0)
    errors: list[tuple[float, AdmissionTimeout]] = []

    async def call() -> None:
        try:
            await handle()
        except AdmissionTimeout as exc:
            errors.append((admission_clock.monotonic(), exc))

    async with running() as tg:
        tg.start_soon(call)
        await admission_clock.advance(10)
    [(at, error)] = errors
    assert at == 1.0
    # 1 token left, 1 earned by the deadline: 1 of the 3 is still missing.
    assert error.retry_after == pytest.approx(1.0)
    assert error.workload_class == "costly"


def test_decorators_refuse_non_async_functions() -> None:
    limiter = AdaptiveLimiter("sync", rate=1, burst=1)

    def plain() -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        limiter(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        limiter.limit(cost=1)(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        limiter(lambda: None)  # type: ignore[arg-type,return-value]


def test_limit_validates_when_decorating() -> None:
    limiter = AdaptiveLimiter("check", rate=1, burst=2, classes=["a"])
    with pytest.raises(ValueError, match="cost=3"):
        limiter.limit(cost=3)
    with pytest.raises(ValueError, match="'nope'"):
        limiter.limit(workload_class="nope")
    with pytest.raises(ValueError, match="timeout"):
        limiter.limit(timeout=-1)


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


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": math.nan, "burst": 1}, "rate.*nan"),
        ({"rate": math.inf, "burst": 1}, "rate.*inf"),
        ({"rate": -1, "burst": 1}, "rate.*-1"),
        ({"rate": 0, "burst": 1}, "rate.*0"),
        ({"rate": 1, "burst": 0.5}, "burst.*0.5"),
        ({"rate": 1, "burst": math.nan}, "burst.*nan"),
        ({"rate": 1, "burst": 1, "max_concurrency": 0}, "max_concurrency.*0"),
        ({"rate": 1, "burst": 1, "initial_tokens": -1}, "initial_tokens.*-1"),
        ({"rate": 1, "burst": 1, "classes": ["a", "a"]}, "duplicate.*'a'"),
        (
            {
                "rate": 1,
                "burst": 1,
                "max_concurrency": 2,
                "classes": [
                    WorkloadClass("a", minimum_floor=2),
                    WorkloadClass("b", minimum_floor=1),
                ],
            },
            r"max_concurrency=2.*minimum_floor \(3\)",
        ),
    ],
)
def test_bad_limiter_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveLimiter("bad", **kwargs)  # type: ignore[arg-type]


def test_bad_name() -> None:
    with pytest.raises(ValueError, match="name"):
        AdaptiveLimiter("", rate=1, burst=1)
    with pytest.raises(TypeError, match="WorkloadClass"):
        AdaptiveLimiter("x", rate=1, burst=1, classes=[3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("cost", "match"),
    [
        (0, "cost.*0"),
        (-1, "cost.*-1"),
        (math.nan, "cost.*nan"),
        (math.inf, "cost.*inf"),
        (2.5, "cost=2.5.*burst=2.0"),
    ],
)
async def test_bad_costs_fail_at_once(
    admission_clock: VirtualClock, cost: float, match: str
) -> None:
    limiter = AdaptiveLimiter("costs", rate=1, burst=2)
    with pytest.raises(ValueError, match=match):
        await limiter.acquire(cost)
    with pytest.raises(ValueError, match=match):
        limiter.try_acquire(cost)
    with pytest.raises(ValueError, match=match):
        limiter.admit(cost)
    with pytest.raises(ValueError, match=match):
        limiter.limit(cost)
    assert limiter.waiting == 0
    assert limiter.snapshot().tokens == 2.0


async def test_a_cost_above_a_class_burst_fails_at_once(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "class-burst", rate=10, burst=10, classes=[WorkloadClass("slow", rate=1, burst=2)]
    )
    with pytest.raises(ValueError, match=r"cost=3.*class 'slow'"):
        await limiter.acquire(3, "slow")


async def test_cost_must_be_a_number(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("types", rate=1, burst=2)
    with pytest.raises(TypeError):
        limiter.try_acquire(True)
    with pytest.raises(TypeError):
        limiter.try_acquire("1")  # type: ignore[arg-type]


async def test_unknown_class_names_the_known_ones(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("known", rate=1, burst=1, classes=["a", "b"])
    with pytest.raises(ValueError, match=r"unknown workload_class 'c' \(known: 'a', 'b'\)"):
        await limiter.acquire(workload_class="c")
    with pytest.raises(ValueError, match="'c'"):
        limiter.try_acquire(workload_class="c")
    with pytest.raises(ValueError, match="'c'"):
        limiter.retune_class("c", rate=1)


@pytest.mark.parametrize(("timeout", "match"), [(-1, "-1"), (math.nan, "nan")])
async def test_bad_timeouts(admission_clock: VirtualClock, timeout: float, match: str) -> None:
    limiter = AdaptiveLimiter("timeouts", rate=1, burst=1)
    with pytest.raises(ValueError, match=f"timeout.*{match}"):
        await limiter.acquire(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        limiter.admit(timeout=timeout)
    assert limiter.snapshot().tokens == 1.0
