"""AdaptiveLimiter admission: async with, admit, acquire, try_acquire, permits, decorators."""

from __future__ import annotations

import pytest
from limiter_helpers import drained, run_together, running, timeout_of
from time_machine import TimeMachineFixture

from admission import AdaptiveLimiter, Permit, WorkloadClass
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

    await run_together(admission_clock, worker, copies=3, seconds=5)
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

    await run_together(admission_clock, handle, copies=3, seconds=5)
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
    at, error = await timeout_of(admission_clock, handle)
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
