"""The virtual clock of ``admission.testing`` and its ``admission_clock`` fixture."""

from __future__ import annotations

import math
from datetime import timedelta

import anyio
import anyio.lowlevel
import pytest
from time_machine import TimeMachineFixture

from admission import AdaptiveLimiter
from admission.clock import Clock, SystemClock, get_default_clock
from admission.testing import EPOCH, VirtualClock, virtual_clock

pytestmark = pytest.mark.anyio


async def test_the_fixture_is_the_default_clock_and_starts_at_zero(
    admission_clock: VirtualClock,
) -> None:
    assert get_default_clock() is admission_clock
    assert isinstance(admission_clock, Clock)
    assert admission_clock.monotonic() == 0.0
    assert admission_clock.wall() == EPOCH
    assert admission_clock.sleepers == 0
    assert admission_clock.next_deadline() is None


async def test_time_stands_still_until_told(admission_clock: VirtualClock) -> None:
    before = admission_clock.monotonic()
    await anyio.lowlevel.checkpoint()
    assert admission_clock.monotonic() == before
    assert admission_clock.wall() == EPOCH


async def test_advance_moves_monotonic_and_wall_exactly(admission_clock: VirtualClock) -> None:
    await admission_clock.advance(2.5)
    assert admission_clock.monotonic() == 2.5
    assert admission_clock.wall() == EPOCH + timedelta(seconds=2.5)
    await admission_clock.advance(0)
    assert admission_clock.monotonic() == 2.5
    await admission_clock.advance(0.1)
    assert admission_clock.monotonic() == pytest.approx(2.6, abs=1e-9)


async def test_sleepers_wake_in_deadline_order_at_their_deadlines(
    admission_clock: VirtualClock,
) -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await admission_clock.sleep(seconds)
        woke.append((name, admission_clock.monotonic()))

    async with anyio.create_task_group() as tg:
        for name, seconds in [("c", 3.0), ("a", 1.0), ("d", 7.25), ("b", 2.5)]:
            tg.start_soon(sleeper, name, seconds)
        await admission_clock.advance(0)
        assert admission_clock.sleepers == 4
        assert admission_clock.next_deadline() == 1.0
        await admission_clock.advance(10)
    assert woke == [("a", 1.0), ("b", 2.5), ("c", 3.0), ("d", 7.25)]
    assert admission_clock.monotonic() == 10.0
    assert admission_clock.sleepers == 0


async def test_no_sleeper_wakes_before_its_deadline(admission_clock: VirtualClock) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await admission_clock.sleep(5)
        woke.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await admission_clock.advance(4.999)
        assert woke == []
        assert admission_clock.next_deadline() == 5.0
        await admission_clock.advance(0.001)
        assert woke == [5.0]


async def test_an_odd_duration_lands_on_the_next_nanosecond(
    admission_clock: VirtualClock,
) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await admission_clock.sleep(1 / 3)
        woke.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await admission_clock.advance(1)
    assert woke == [math.ceil(1e9 / 3) / 1e9]
    assert woke[0] >= 1 / 3


async def test_a_woken_task_sleeping_again_wakes_within_the_same_advance(
    admission_clock: VirtualClock,
) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await admission_clock.sleep(1)
            ticks.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await admission_clock.advance(3.5)
        assert ticks == [1.0, 2.0, 3.0]
        tg.cancel_scope.cancel()


async def test_cancelled_sleepers_are_removed(admission_clock: VirtualClock) -> None:
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await admission_clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as doomed:
            tg.start_soon(sleeper, "kept", 2)
            async with anyio.create_task_group() as inner:
                inner.start_soon(sleeper, "cancelled", 1)
                await admission_clock.advance(0)
                assert admission_clock.sleepers == 2
                doomed.cancel()
        assert admission_clock.sleepers == 1
        assert admission_clock.next_deadline() == 2.0
        await admission_clock.advance(3)
    assert woke == ["kept"]
    assert admission_clock.sleepers == 0


@pytest.mark.parametrize("seconds", [-1.0, -1e-9, math.nan, math.inf])
async def test_advance_refuses_negative_or_non_finite(
    admission_clock: VirtualClock, seconds: float
) -> None:
    with pytest.raises(ValueError, match="seconds"):
        await admission_clock.advance(seconds)
    assert admission_clock.monotonic() == 0.0


async def test_sleep_of_zero_or_less_is_a_checkpoint(admission_clock: VirtualClock) -> None:
    await admission_clock.sleep(0)
    await admission_clock.sleep(-3)
    assert admission_clock.sleepers == 0
    assert admission_clock.monotonic() == 0.0


async def test_monotonic_never_goes_back_when_time_machine_does(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    await admission_clock.advance(5)
    time_machine.move_to(EPOCH - timedelta(hours=1), tick=False)
    assert admission_clock.monotonic() == 5.0
    time_machine.shift(-10)
    assert admission_clock.monotonic() == 5.0
    # From there on, time moves on again at once.
    time_machine.shift(2)
    assert admission_clock.monotonic() == 7.0
    await admission_clock.advance(1)
    assert admission_clock.monotonic() == 8.0


async def test_advance_after_time_machine_went_back_still_wakes_sleepers(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await admission_clock.sleep(3)
        woke.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await admission_clock.advance(1)
        time_machine.shift(-100)
        await admission_clock.advance(2)
    assert woke == [3.0]


async def test_plain_time_machine_shift_moves_the_clock(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    time_machine.shift(4)
    assert admission_clock.monotonic() == 4.0
    assert admission_clock.wall() == EPOCH + timedelta(seconds=4)


async def test_plain_time_machine_shift_moves_bucket_refill(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    limiter = AdaptiveLimiter("shifted", rate=0.5, burst=1)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None
    time_machine.shift(1.9)
    assert limiter.try_acquire() is None
    time_machine.shift(0.1)
    assert limiter.try_acquire() is not None
    assert admission_clock.sleepers == 0


async def test_shifted_sleepers_wake_at_the_next_advance(
    admission_clock: VirtualClock, time_machine: TimeMachineFixture
) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await admission_clock.sleep(2)
        woke.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await admission_clock.advance(0)
        time_machine.shift(5)
        assert woke == []
        await admission_clock.advance(0)
    assert woke == [5.0]


async def test_run_until_idle_goes_from_deadline_to_deadline(
    admission_clock: VirtualClock,
) -> None:
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await admission_clock.sleep(seconds)
        woke.append(admission_clock.monotonic())
        await admission_clock.sleep(seconds)
        woke.append(admission_clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 1.5)
        tg.start_soon(sleeper, 4)
        await admission_clock.advance(0)
        assert await admission_clock.run_until_idle() == 8.0
    assert sorted(woke) == [1.5, 3.0, 4.0, 8.0]
    assert admission_clock.monotonic() == 8.0


async def test_run_until_idle_gives_up_past_its_limit(admission_clock: VirtualClock) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(admission_clock.sleep, 100)
        with pytest.raises(RuntimeError, match="still busy"):
            await admission_clock.run_until_idle(limit=10)
        assert admission_clock.monotonic() == 0.0
        tg.cancel_scope.cancel()


async def test_run_until_idle_with_nobody_asleep_returns_zero(
    admission_clock: VirtualClock,
) -> None:
    assert await admission_clock.run_until_idle() == 0.0


async def test_virtual_clock_context_manager_sets_and_restores_the_default() -> None:
    assert isinstance(get_default_clock(), SystemClock)
    with virtual_clock() as clock:
        assert get_default_clock() is clock
        assert clock.wall() == EPOCH
        limiter = AdaptiveLimiter("v", rate=1, burst=1)
        assert limiter.try_acquire() is not None
        assert limiter.try_acquire() is None
        await clock.advance(1)
        assert limiter.try_acquire() is not None
        assert clock.monotonic() == 1.0
    assert isinstance(get_default_clock(), SystemClock)


async def test_virtual_clock_can_leave_the_default_alone() -> None:
    start = EPOCH + timedelta(days=3)
    with virtual_clock(start, as_default=False) as clock:
        assert isinstance(get_default_clock(), SystemClock)
        assert clock.wall() == start
        await clock.advance(60)
        assert clock.wall() == start + timedelta(minutes=1)
