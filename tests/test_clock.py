"""The Clock seam: SystemClock, LoopClock, ScaledClock and the default clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from admission import AdaptiveLimiter
from admission.clock import (
    Clock,
    LoopClock,
    ScaledClock,
    SystemClock,
    get_default_clock,
    set_default_clock,
)
from admission.testing import VirtualClock


@pytest.fixture
def restore_default_clock() -> Iterator[None]:
    previous = get_default_clock()
    try:
        yield
    finally:
        set_default_clock(previous)


def test_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(LoopClock(), Clock)
    assert not isinstance(object(), Clock)


def test_system_clock_monotonic_never_goes_back() -> None:
    clock = SystemClock()
    readings = [clock.monotonic() for _ in range(1000)]
    assert readings == sorted(readings)
    assert all(isinstance(r, float) for r in readings)


def test_system_clock_wall_is_aware_utc() -> None:
    wall = SystemClock().wall()
    assert wall.tzinfo is UTC
    assert wall.utcoffset() is not None


@pytest.mark.anyio
async def test_system_clock_sleep_of_zero_or_less_is_a_checkpoint() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0)
    await clock.sleep(-5)
    # A negative sleep must not be handed to the backend (which would refuse
    # or misbehave); both return at once.
    assert clock.monotonic() - before < 1.0


def test_loop_clock_without_a_loop_reads_zero() -> None:
    assert LoopClock().monotonic() == 0.0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_loop_clock_reads_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    clock = LoopClock()
    before = loop.time()
    reading = clock.monotonic()
    assert before <= reading <= loop.time()
    assert clock.wall().tzinfo is UTC
    await clock.sleep(0)
    await clock.sleep(-1)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_loop_clock_follows_a_patched_loop_time(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: 1234.5)
    assert LoopClock().monotonic() == 1234.5


def test_reprs() -> None:
    assert repr(SystemClock()) == "SystemClock()"
    assert repr(LoopClock()) == "LoopClock()"


@pytest.mark.usefixtures("restore_default_clock")
def test_set_default_clock_returns_the_previous_and_none_restores_system() -> None:
    loop_clock = LoopClock()
    set_default_clock(None)
    previous = set_default_clock(loop_clock)
    assert isinstance(previous, SystemClock)
    assert get_default_clock() is loop_clock
    assert set_default_clock(None) is loop_clock
    assert isinstance(get_default_clock(), SystemClock)


@pytest.mark.usefixtures("restore_default_clock")
def test_a_limiter_takes_the_default_clock_when_built() -> None:
    loop_clock = LoopClock()
    set_default_clock(loop_clock)
    limiter = AdaptiveLimiter("x", rate=1, burst=1)
    set_default_clock(None)
    assert limiter.clock is loop_clock
    assert isinstance(AdaptiveLimiter("y", rate=1, burst=1).clock, SystemClock)


def test_an_explicit_clock_wins_over_the_default(admission_clock: VirtualClock) -> None:
    system = SystemClock()
    assert AdaptiveLimiter("x", rate=1, burst=1, clock=system).clock is system
    assert AdaptiveLimiter("y", rate=1, burst=1).clock is admission_clock


def test_the_default_is_the_system_clock_outside_the_fixture() -> None:
    assert isinstance(get_default_clock(), SystemClock)


class _FakeTime:
    """Stands in for time.monotonic and anyio.sleep, so nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    import time

    import anyio

    fake = _FakeTime()
    monkeypatch.setattr(time, "monotonic", fake.monotonic)
    monkeypatch.setattr(anyio, "sleep", fake.sleep)
    return fake


@pytest.mark.anyio
async def test_scaled_clock_runs_speed_times_faster(fake_time: _FakeTime) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = ScaledClock(20, start=start)
    assert isinstance(clock, Clock)
    assert clock.monotonic() == 0.0
    await clock.sleep(10)  # ten scenario seconds are half a real second
    assert fake_time.slept == [0.5]
    assert clock.monotonic() == 10.0
    assert clock.wall() == start + timedelta(seconds=10)
    await clock.sleep(-1)
    assert fake_time.slept == [0.5, 0.0]
    assert repr(clock) == "ScaledClock(speed=20)"


@pytest.mark.parametrize("speed", [0, -1, float("inf"), float("nan"), True])
def test_scaled_clock_refuses_a_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be a finite number > 0"):
        ScaledClock(speed)


def test_scaled_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        ScaledClock(2, start=datetime(2030, 1, 1))
