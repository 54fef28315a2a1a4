"""The aiolimiter drop-in, ``admission.compat.AsyncLimiter``.

The reference tests below are ported from aiolimiter's own test suite
(``tests/test_aiolimiter.py``, https://github.com/mjpieters/aiolimiter),
Copyright (c) 2019-2026 Martijn Pieters, used under the MIT license.  They keep
its technique -- ``MockLoopTime`` patches ``loop.time`` and ``wait_for_n_done``
spins the loop without sleeping -- and each one runs against both the real
``aiolimiter.AsyncLimiter`` and the drop-in, as proof of parity.  The one
deliberate difference (FIFO instead of overtaking) and the drop-in's additions
(``retune``, ``.limiter``) are tested after them.

These are asyncio-only: they patch the asyncio loop's clock.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, Self
from unittest import mock

import pytest
from aiolimiter import AsyncLimiter as AioLimiter

from admission.compat import AsyncLimiter
from admission.limiter import AdaptiveLimiter

MAX_WAIT_FOR_ITER = 5
REUSE_WARNING = "This AsyncLimiter instance is being re-used across loops."


class Limiter(Protocol):
    """What both implementations offer."""

    max_rate: float
    time_period: float

    def has_capacity(self, amount: float = 1) -> bool: ...

    async def acquire(self, amount: float = 1) -> None: ...

    async def __aenter__(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class LimiterFactory(Protocol):
    def __call__(self, max_rate: float, time_period: float = 60) -> Limiter: ...


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only, whatever conftest.py offers: these tests patch the asyncio loop."""
    return "asyncio"


@pytest.fixture(
    params=[
        pytest.param(AioLimiter, id="aiolimiter"),
        pytest.param(AsyncLimiter, id="admission"),
    ]
)
def limiter_cls(request: pytest.FixtureRequest) -> LimiterFactory:
    """The real aiolimiter, then the drop-in: every reference test runs on both."""
    cls: LimiterFactory = request.param
    return cls


# -- helpers (from aiolimiter's suite) ------------------------------------------


async def acquire_task(limiter: Limiter) -> None:
    await limiter.acquire()


async def async_contextmanager_task(limiter: Limiter) -> None:
    async with limiter:
        pass


async def wait_for_n_done(tasks: Iterable[asyncio.Future[Any]], n: int) -> set[asyncio.Future[Any]]:
    """Wait for n (or more) tasks to have completed"""
    tasks = list(tasks)
    iteration = 0
    remainder = len(tasks) - n
    pending_count = len(tasks)
    pending: set[asyncio.Future[Any]] = set(tasks)
    while iteration <= MAX_WAIT_FOR_ITER:
        iteration += 1
        _, pending = await asyncio.wait(tasks, timeout=0, return_when=asyncio.FIRST_COMPLETED)
        if len(pending) <= remainder:
            break
        if len(pending) < pending_count:
            iteration = 0
            pending_count = len(pending)
    assert len(pending) <= remainder
    return pending


class MockLoopTime:
    """Replace the running loop's ``time()``: set ``current_time`` to move it."""

    def __init__(self) -> None:
        self.current_time: float = 0
        event_loop = asyncio.get_running_loop()
        self.patch = mock.patch.object(event_loop, "time", self.mocked_time)

    def mocked_time(self) -> float:
        return self.current_time

    def __enter__(self) -> Self:
        self.patch.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.patch.stop()


async def cancel_all(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Leave no task pending behind a test."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the reference tests, on both implementations -------------------------------


def test_attributes(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(42, 81)
    assert limiter.max_rate == 42
    assert limiter.time_period == 81


@pytest.mark.anyio
async def test_has_capacity(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(1)
    assert limiter.has_capacity()
    assert not limiter.has_capacity(42)
    await limiter.acquire()
    assert not limiter.has_capacity()


@pytest.mark.anyio
async def test_over_acquire(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(1)
    with pytest.raises(ValueError, match="between 0 and the maximum capacity"):
        await limiter.acquire(42)


@pytest.mark.anyio
@pytest.mark.parametrize("task", [acquire_task, async_contextmanager_task])
async def test_acquire(
    limiter_cls: LimiterFactory, task: Callable[[Limiter], Awaitable[None]]
) -> None:
    # capacity released every 2 seconds
    limiter = limiter_cls(5, 10)
    with MockLoopTime() as mocked_time:
        tasks = [asyncio.ensure_future(task(limiter)) for _ in range(10)]
        pending = await wait_for_n_done(tasks, 5)
        assert len(pending) == 5
        mocked_time.current_time = 3  # releases capacity for one and some buffer
        assert limiter.has_capacity()
        pending = await wait_for_n_done(pending, 1)
        assert len(pending) == 4
        mocked_time.current_time = 7  # releases capacity for two more, plus buffer
        pending = await wait_for_n_done(pending, 2)
        assert len(pending) == 2
        mocked_time.current_time = 11  # releases the remainder
        pending = await wait_for_n_done(pending, 2)
        assert len(pending) == 0


@pytest.mark.anyio
async def test_acquire_wait_time(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(1)
        task = asyncio.ensure_future(limiter.acquire(3))
        pending = await wait_for_n_done([task], 0)
        assert pending
        mocked_time.current_time = 1
        pending = await wait_for_n_done([task], 1)
        assert not pending


@pytest.mark.anyio
async def test_task_cancelled(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(1)
        tasks = [asyncio.ensure_future(limiter.acquire(3)) for _ in range(2)]
        pending = await wait_for_n_done(tasks, 0)
        assert pending
        tasks[0].cancel()
        mocked_time.current_time = 1
        pending = await wait_for_n_done(tasks[1:], 1)
        assert not pending


def test_multiple_loops(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(1, 1)

    async def task() -> None:
        tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(5)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=0)

    asyncio.run(task())
    with pytest.warns(RuntimeWarning, match=REUSE_WARNING):
        asyncio.run(task())


# -- parity beyond the reference suite, on both implementations ----------------


def test_default_time_period(limiter_cls: LimiterFactory) -> None:
    assert limiter_cls(10).time_period == 60


@pytest.mark.anyio
@pytest.mark.parametrize("amount", [-1, -0.5])
async def test_negative_acquire(limiter_cls: LimiterFactory, amount: float) -> None:
    limiter = limiter_cls(3)
    with pytest.raises(ValueError, match="between 0 and the maximum capacity"):
        await limiter.acquire(amount)
    assert limiter.has_capacity(3)  # nothing was taken


@pytest.mark.anyio
async def test_acquire_zero_returns_at_once(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(3, 3)
    with MockLoopTime():
        await limiter.acquire(3)
        waiter = asyncio.ensure_future(limiter.acquire(1))
        assert await wait_for_n_done([waiter], 0)
        # No capacity and a waiter queued: zero still needs nothing.
        zero = asyncio.ensure_future(limiter.acquire(0))
        assert not await wait_for_n_done([zero], 1)
        assert not waiter.done()
        await cancel_all([waiter])


@pytest.mark.anyio
@pytest.mark.parametrize("amount", [0.5, True])
async def test_number_like_amounts(limiter_cls: LimiterFactory, amount: float) -> None:
    limiter = limiter_cls(2, 2)
    with MockLoopTime():
        await limiter.acquire(amount)
        assert limiter.has_capacity(2 - float(amount))
        assert not limiter.has_capacity(2 - float(amount) + 0.1)


def test_loop_closed_with_waiters_queued(limiter_cls: LimiterFactory) -> None:
    """A loop closed without cancelling its tasks strands their places in the queue.

    aiolimiter drops the stranded waiters; the drop-in must not leave a new
    loop's requests queued behind them forever.
    """
    limiter = limiter_cls(1, 1)
    stranded: list[asyncio.Future[None]] = []

    async def first() -> None:
        stranded.extend(asyncio.ensure_future(limiter.acquire()) for _ in range(3))
        await asyncio.wait(stranded, timeout=0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()  # two tasks still waiting, never to run again
    assert sum(task.done() for task in stranded) == 1

    async def second() -> None:
        start = asyncio.get_running_loop().time()
        with MockLoopTime() as mocked_time:
            mocked_time.current_time = start
            task = asyncio.ensure_future(limiter.acquire())
            assert await wait_for_n_done([task], 0)  # the bucket carried over empty
            mocked_time.current_time = start + 1
            assert not await wait_for_n_done([task], 1)
            task.result()  # granted, not failed

    with pytest.warns(RuntimeWarning, match=REUSE_WARNING):
        asyncio.run(second())


def test_has_capacity_in_a_new_loop_warns(limiter_cls: LimiterFactory) -> None:
    limiter = limiter_cls(1, 1)

    async def use() -> None:
        await limiter.acquire()

    async def check() -> bool:
        return limiter.has_capacity()

    asyncio.run(use())
    with pytest.warns(RuntimeWarning, match=REUSE_WARNING):
        asyncio.run(check())


# -- the deliberate difference: order --------------------------------------------


@pytest.mark.anyio
async def test_decreasing_acquire() -> None:
    """aiolimiter only: a smaller newcomer overtakes a waiting larger request."""
    limiter = AioLimiter(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(1)
        task = asyncio.ensure_future(limiter.acquire(3))
        pending = await wait_for_n_done([task], 0)
        assert pending
        # _Unless_ a lower amount is acquired in-between increasing the wait time to 2 seconds
        await limiter.acquire(1)
        mocked_time.current_time = 1
        pending = await wait_for_n_done([task], 0)
        assert pending
        mocked_time.current_time = 2
        pending = await wait_for_n_done([task], 1)
        assert not pending


@pytest.mark.anyio
async def test_fifo_acquire() -> None:
    """The drop-in, the inverse: the smaller newcomer waits behind the larger request."""
    limiter = AsyncLimiter(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(1)
        large = asyncio.ensure_future(limiter.acquire(3))
        assert await wait_for_n_done([large], 0)
        # There are 2 tokens, enough for 1, but the large request is first in line.
        assert limiter.has_capacity(1)
        small = asyncio.ensure_future(limiter.acquire(1))
        assert await wait_for_n_done([small], 0)
        mocked_time.current_time = 1  # 3 tokens: the large request goes, on time
        assert not await wait_for_n_done([large], 1)
        assert not small.done()
        mocked_time.current_time = 2  # 1 more token: the newcomer's turn
        assert not await wait_for_n_done([small], 1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("impl", "starves"),
    [
        pytest.param(AioLimiter, True, id="aiolimiter"),
        pytest.param(AsyncLimiter, False, id="admission"),
    ],
)
async def test_steady_small_requests_and_a_large_one(impl: LimiterFactory, starves: bool) -> None:
    """One small request a second, at the limit's rate: does the large one ever go?

    aiolimiter grants the smallest waiting amount first, so the large request
    waits as long as small ones keep coming.  The drop-in serves arrival order:
    the large request goes once its 3 tokens are there, then the small ones
    resume behind it.
    """
    limiter = impl(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(3)
        large = asyncio.ensure_future(limiter.acquire(3))
        assert await wait_for_n_done([large], 0)
        small: list[asyncio.Future[None]] = []
        for second in range(1, 10):
            small.append(asyncio.ensure_future(limiter.acquire(1)))
            mocked_time.current_time = second
            await wait_for_n_done([large, *small], 0)
        if starves:
            assert not large.done()
            assert all(task.done() for task in small[:-1])
        else:
            assert large.done()
            # 9 seconds earn 9 tokens: 3 for the large request, 6 for the small ones.
            assert sum(task.done() for task in small) == 6
        await cancel_all([large, *small])


# -- the drop-in only: its edges and what it adds -------------------------------


@pytest.mark.parametrize("max_rate", [0.5, 0, -1, float("inf"), float("nan")])
def test_max_rate_below_one_is_refused(max_rate: float) -> None:
    """The drop-in's bucket holds at least one unit (aiolimiter takes fractions)."""
    with pytest.raises(ValueError, match="max_rate must be a finite number >= 1"):
        AsyncLimiter(max_rate, 1)
    limiter = AsyncLimiter(2, 1)
    with pytest.raises(ValueError, match="max_rate must be a finite number >= 1"):
        limiter.retune(max_rate=max_rate)
    assert (limiter.max_rate, limiter.time_period) == (2, 1)


@pytest.mark.parametrize("time_period", [0, -1, float("nan")])
def test_bad_time_period_is_refused(time_period: float) -> None:
    with pytest.raises((ValueError, ZeroDivisionError)):
        AsyncLimiter(2, time_period)
    limiter = AsyncLimiter(2, 1)
    with pytest.raises((ValueError, ZeroDivisionError)):
        limiter.retune(time_period=time_period)
    assert (limiter.max_rate, limiter.time_period) == (2, 1)
    assert limiter.limiter.rate == 2


def test_limiter_is_an_adaptive_limiter() -> None:
    limiter = AsyncLimiter(5, 10)
    assert isinstance(limiter.limiter, AdaptiveLimiter)
    snapshot = limiter.limiter.snapshot()
    assert snapshot.rate == pytest.approx(0.5)
    assert snapshot.burst == 5
    assert snapshot.tokens == 5
    assert snapshot.waiting == 0
    assert snapshot.admitted_total == 0
    assert repr(limiter) == "AsyncLimiter(max_rate=5, time_period=10)"


@pytest.mark.anyio
async def test_limiter_snapshot_follows_use() -> None:
    limiter = AsyncLimiter(5, 10)
    with MockLoopTime() as mocked_time:
        tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(7)]
        await wait_for_n_done(tasks, 5)
        snapshot = limiter.limiter.snapshot()
        assert snapshot.tokens == pytest.approx(0)
        assert snapshot.waiting == 2
        assert snapshot.admitted_total == 5
        assert snapshot.in_flight == 0  # acquire() holds no concurrency slot
        mocked_time.current_time = 4
        await wait_for_n_done(tasks, 7)
        snapshot = limiter.limiter.snapshot()
        assert snapshot.waiting == 0
        assert snapshot.admitted_total == 7
        assert snapshot.wait_p99_seconds == pytest.approx(4)


@pytest.mark.anyio
async def test_retune_time_period_replans_waiters() -> None:
    limiter = AsyncLimiter(1, 10)
    with MockLoopTime() as mocked_time:
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        assert await wait_for_n_done([waiter], 0)  # due at t=10
        limiter.retune(time_period=1)
        assert (limiter.max_rate, limiter.time_period) == (1, 1)
        assert limiter.limiter.rate == 1
        mocked_time.current_time = 1
        assert not await wait_for_n_done([waiter], 1)


@pytest.mark.anyio
async def test_retune_max_rate_replans_waiters() -> None:
    limiter = AsyncLimiter(2, 2)  # one a second
    with MockLoopTime() as mocked_time:
        await limiter.acquire(2)
        waiter = asyncio.ensure_future(limiter.acquire(1))
        assert await wait_for_n_done([waiter], 0)  # due at t=1
        limiter.retune(max_rate=4)  # two a second, bursting to 4
        assert (limiter.max_rate, limiter.time_period) == (4, 2)
        assert (limiter.limiter.rate, limiter.limiter.burst) == (2, 4)
        mocked_time.current_time = 0.5
        assert not await wait_for_n_done([waiter], 1)
        # The larger burst is usable, and the new max_rate bounds acquire().
        mocked_time.current_time = 10
        assert limiter.has_capacity(4)
        await limiter.acquire(4)
        with pytest.raises(ValueError, match="between 0 and the maximum capacity"):
            await limiter.acquire(5)


@pytest.mark.anyio
async def test_retune_slower_delays_waiters() -> None:
    limiter = AsyncLimiter(2, 2)  # one a second
    with MockLoopTime() as mocked_time:
        await limiter.acquire(2)
        waiter = asyncio.ensure_future(limiter.acquire(1))
        assert await wait_for_n_done([waiter], 0)  # due at t=1
        limiter.retune(time_period=8)  # one every four seconds
        mocked_time.current_time = 3
        assert await wait_for_n_done([waiter], 0)
        mocked_time.current_time = 4
        assert not await wait_for_n_done([waiter], 1)


@pytest.mark.anyio
async def test_retune_below_a_waiting_amount_fails_it() -> None:
    limiter = AsyncLimiter(3, 3)
    with MockLoopTime():
        await limiter.acquire(3)
        waiter = asyncio.ensure_future(limiter.acquire(3))
        assert await wait_for_n_done([waiter], 0)
        limiter.retune(max_rate=2)  # 3 can never fit again
        assert not await wait_for_n_done([waiter], 1)
        with pytest.raises(ValueError, match="no longer fits"):
            waiter.result()
        assert limiter.limiter.snapshot().waiting == 0


@pytest.mark.anyio
async def test_cancelled_waiter_frees_its_place() -> None:
    limiter = AsyncLimiter(3, 3)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(3)
        large = asyncio.ensure_future(limiter.acquire(3))  # due at t=3
        small = asyncio.ensure_future(limiter.acquire(1))  # behind it: due at t=4
        assert len(await wait_for_n_done([large, small], 0)) == 2
        assert limiter.limiter.snapshot().waiting == 2
        large.cancel()
        assert not await wait_for_n_done([large], 1)
        snapshot = limiter.limiter.snapshot()
        assert (snapshot.waiting, snapshot.cancelled_total) == (1, 1)
        # The small request moves to the front and is due at t=1.
        mocked_time.current_time = 1
        assert not await wait_for_n_done([small], 1)
        snapshot = limiter.limiter.snapshot()
        assert (snapshot.waiting, snapshot.admitted_total) == (0, 2)
        # The cancelled request took nothing: the bucket refills as if it never came.
        mocked_time.current_time = 3
        assert limiter.has_capacity(2)
        assert not limiter.has_capacity(3)


@pytest.mark.anyio
async def test_cancelling_the_timekeeper_hands_the_timer_on() -> None:
    """The first waiter sleeps for everyone; cancelling it must not strand the rest."""
    limiter = AsyncLimiter(2, 2)
    with MockLoopTime() as mocked_time:
        await limiter.acquire(2)
        tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(3)]
        assert len(await wait_for_n_done(tasks, 0)) == 3
        tasks[0].cancel()
        mocked_time.current_time = 1
        assert not await wait_for_n_done(tasks[1:2], 1)
        assert not tasks[2].done()
        mocked_time.current_time = 2
        assert not await wait_for_n_done(tasks[2:], 1)
        assert tasks[0].cancelled()


def test_multiple_loops_warns_once_and_recovers() -> None:
    limiter = AsyncLimiter(1, 1)
    results: list[int] = []

    async def task() -> None:
        tasks = [asyncio.ensure_future(limiter.acquire()) for _ in range(5)]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=0)
        results.append(len(done))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(task())  # first loop: no warning
        asyncio.run(asyncio.sleep(0))  # a loop that never touches the limiter: none either
    with pytest.warns(RuntimeWarning, match=REUSE_WARNING) as record:
        asyncio.run(task())
    assert len(record) == 1
    assert results == [1, 0]  # the bucket is still empty: one per second
    # Waiters of the closed loop were cancelled with it and hold no place.
    assert limiter.limiter.snapshot().waiting == 0


@pytest.mark.parametrize("how", ["acquire", "async with", "has_capacity"])
def test_reuse_warning_points_at_the_caller(how: str) -> None:
    limiter = AsyncLimiter(10, 1)

    async def use() -> None:
        if how == "acquire":
            await limiter.acquire()
        elif how == "async with":
            async with limiter:
                pass
        else:
            limiter.has_capacity()

    asyncio.run(use())
    with pytest.warns(RuntimeWarning, match=REUSE_WARNING) as record:
        asyncio.run(use())
    assert [warning.filename for warning in record] == [__file__]


def test_same_loop_does_not_warn() -> None:
    limiter = AsyncLimiter(10, 1)

    async def main() -> None:
        for _ in range(3):
            await limiter.acquire()
        async with limiter:
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
