"""The shared-budget limiter's mechanism, on an in-memory backend and virtual time.

The backend keeps the Lua script's arithmetic; these tests prove what the
limiter does around it: who asks, when, what a cancelled waiter leaves behind,
and how it falls back and comes back.  The real-Redis tests are beside this one.
"""

from __future__ import annotations

import anyio
import pytest
from distributed_helpers import MemoryBackend, conforms
from limiter_helpers import running, start_in_order
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, AdmissionTimeout, WorkloadClass, events
from admission.distributed import SharedLimiter
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


def shared(
    backend: MemoryBackend, name: str = "budget", rate: float = 10, burst: float = 5, **kw: object
) -> SharedLimiter:
    limiter = AdaptiveLimiter(name, rate=rate, burst=burst, backend=backend, **kw)  # type: ignore[arg-type]
    assert isinstance(limiter, SharedLimiter)
    return limiter


async def test_two_replicas_share_one_budget_and_conform(admission_clock: VirtualClock) -> None:
    backend = MemoryBackend(admission_clock)
    replicas = [shared(backend), shared(backend)]
    stamps: list[float] = []

    async def worker(limiter: AdaptiveLimiter) -> None:
        while True:
            async with limiter:
                stamps.append(admission_clock.monotonic())

    async with running() as tg:
        for limiter in replicas:
            for _ in range(4):
                tg.start_soon(worker, limiter)
        await admission_clock.advance(10)
    # burst 5 at once, then 10 a second between both replicas
    assert len(stamps) == 5 + 100
    assert conforms(stamps, rate=10, burst=5)
    assert backend.taken == len(stamps)
    assert all(limiter.snapshot().shared_budget == "shared" for limiter in replicas)


async def test_a_crowd_is_admitted_by_one_round_trip(admission_clock: VirtualClock) -> None:
    backend = MemoryBackend(admission_clock)
    limiter = shared(backend, rate=1, burst=20, max_concurrency=8)
    gate = anyio.Event()
    admitted: list[int] = []

    async def worker(number: int) -> None:
        async with limiter:
            admitted.append(number)
            await gate.wait()

    async with running() as tg:
        await start_in_order(admission_clock, tg, *[lambda n=n: worker(n) for n in range(12)])
        assert admitted == list(range(8))  # the cap holds; FIFO
        calls = backend.calls
        gate.set()
        await admission_clock.advance(0)
    assert sorted(admitted) == list(range(12))
    assert backend.calls - calls == 1  # the four behind the cap went together
    assert backend.taken == 12


async def test_waiters_sleep_until_the_retry_after_the_backend_answers(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock)
    limiter = shared(backend, rate=2, burst=1, initial_tokens=0)
    granted: list[float] = []

    async def worker() -> None:
        async with limiter:
            granted.append(admission_clock.monotonic())

    async with running() as tg:
        for _ in range(5):
            tg.start_soon(worker)
        await admission_clock.advance(3)
    assert granted == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    # one refusal and one grant per admission at most: nobody polls
    assert backend.calls <= 2 * len(granted)


async def test_fifo_within_a_class_holds_on_a_shared_budget(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock)
    limiter = shared(backend, rate=1, burst=1, initial_tokens=0, classes=["a", "b"])
    order: list[str] = []

    def job(label: str, cls: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            async with limiter.admit(workload_class=cls):
                order.append(label)

        return run

    async with running() as tg:
        await start_in_order(
            admission_clock, tg, job("a1", "a"), job("b1", "b"), job("a2", "a"), job("b2", "b")
        )
        await admission_clock.advance(10)
    assert order == ["a1", "b1", "a2", "b2"]


async def test_a_waiter_cancelled_during_the_round_trip_consumes_no_shared_tokens(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock, hold=anyio.Event())
    limiter = shared(backend, burst=3)
    async with running() as tg:
        scope = anyio.CancelScope()

        async def doomed() -> None:
            with scope:
                async with limiter:
                    raise AssertionError("a cancelled waiter was admitted")

        tg.start_soon(doomed)
        await admission_clock.advance(0)
        assert backend.taken == 1  # the script granted it...
        scope.cancel()  # ...while the answer was on its way
        await admission_clock.advance(0)
        assert backend.hold is not None
        backend.hold.set()
        await admission_clock.advance(0)
    assert backend.refunded == 1
    assert backend.tokens(limiter.key) == pytest.approx(3)
    snapshot = limiter.snapshot()
    assert (snapshot.admitted_total, snapshot.cancelled_total, snapshot.in_flight) == (0, 1, 0)


async def test_a_grant_meant_for_a_cancelled_waiter_goes_to_the_next_in_line(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock, hold=anyio.Event())
    limiter = shared(backend, rate=1, burst=1)
    admitted: list[str] = []
    scope = anyio.CancelScope()

    async def first() -> None:
        with scope:
            async with limiter:
                admitted.append("first")

    async def second() -> None:
        async with limiter:
            admitted.append("second")

    async with running() as tg:
        await start_in_order(admission_clock, tg, first, second)
        scope.cancel()
        await admission_clock.advance(0)
        assert backend.hold is not None
        backend.hold.set()
        await admission_clock.advance(0)
    assert admitted == ["second"]
    assert backend.taken == 1
    assert backend.refunded == 0


async def test_timeout_zero_gets_one_answer_and_a_timeout_carries_its_retry_after(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock)
    limiter = shared(backend, rate=4, burst=1)
    permit = await limiter.acquire(timeout=0)
    permit.release()
    with pytest.raises(AdmissionTimeout) as caught:
        await limiter.acquire(timeout=0)
    assert caught.value.retry_after == pytest.approx(0.25)
    assert backend.calls == 2
    assert limiter.try_acquire() is None  # never waits, so never asks the backend


async def test_an_unanswering_backend_means_the_local_fallback_within_the_same_admission(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock, down="ConnectionError: refused")
    limiter = shared(backend, rate=10, burst=4)
    with capture_logs() as logs:
        async with limiter:
            pass
    snapshot = limiter.snapshot()
    assert snapshot.shared_budget == "unavailable"
    assert snapshot.shared_budget_reason == "ConnectionError: refused"
    assert snapshot.fallback_rate == pytest.approx(10 / 2 * 0.5)
    assert (snapshot.rate, snapshot.burst) == (10, 4)  # the shared figures stay shown
    assert [entry["event"] for entry in logs] == [events.SHARED_BUDGET_UNAVAILABLE]
    assert logs[0]["reason"] == "ConnectionError: refused"
    # The fallback is a real bucket: 2.5/s with a burst of 1, never unlimited.
    stamps: list[float] = []

    async def worker() -> None:
        while True:
            async with limiter:
                stamps.append(admission_clock.monotonic())

    async with running() as tg:
        tg.start_soon(worker)
        await admission_clock.advance(0.9)  # before the first retry of the backend
    assert conforms(stamps, rate=2.5, burst=1)
    assert len(stamps) == 2


async def test_the_shared_budget_comes_back_when_the_backend_answers(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock, down="TimeoutError: no reply")
    limiter = shared(backend)
    async with limiter:
        pass
    backend.down = None
    await admission_clock.advance(0.5)
    async with limiter:  # before the backoff: still local, the backend is not asked
        pass
    assert limiter.snapshot().shared_budget == "unavailable"
    calls = backend.calls
    await admission_clock.advance(0.5)
    with capture_logs() as logs:
        async with limiter:
            pass
    assert backend.calls > calls
    snapshot = limiter.snapshot()
    assert (snapshot.shared_budget, snapshot.shared_budget_reason) == ("shared", None)
    assert [entry["event"] for entry in logs] == [events.SHARED_BUDGET_RESTORED]
    assert backend.taken == 1


async def test_failed_retries_back_off_and_waiters_are_served_meanwhile(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock, down="refused")
    limiter = shared(backend, rate=2, burst=1)  # fallback: 0.5/s
    granted: list[float] = []

    async def worker() -> None:
        while True:
            async with limiter:
                granted.append(admission_clock.monotonic())

    async with running() as tg:
        for _ in range(3):
            tg.start_soon(worker)
        await admission_clock.advance(20)
    assert len(granted) == 1 + 10  # the fallback's burst, then 0.5/s
    # retried after 1, 2, 4, 8 seconds (doubling up to 8): 5 calls, not one per admission
    assert backend.calls == 5


async def test_retune_reaches_the_backend_and_other_replicas_take_it_up(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock)
    one, two = shared(backend, rate=10, burst=5), shared(backend, rate=10, burst=5)
    async with one, two:
        pass
    one.retune(rate=2, burst=3)
    assert (one.rate, one.burst) == (2, 3)
    await one.sync()
    assert backend.buckets[one.key][2:] == [2, 3]
    assert (two.rate, two.burst) == (10, 5)
    async with two:  # its next admission brings the news
        pass
    assert (two.rate, two.burst) == (2, 3)
    assert two.snapshot().fallback_rate == pytest.approx(2 / 2 * 0.5)


async def test_a_waiter_that_no_longer_fits_a_shrunk_shared_burst_fails(
    admission_clock: VirtualClock,
) -> None:
    backend = MemoryBackend(admission_clock)
    one = shared(backend, rate=1, burst=5, initial_tokens=0)
    two = shared(backend, rate=1, burst=5)
    errors: list[BaseException] = []

    async def big() -> None:
        try:
            await one.acquire(4)
        except ValueError as exc:
            errors.append(exc)

    async with running() as tg:
        tg.start_soon(big)
        await admission_clock.advance(1)
        two.retune(burst=2)
        await two.sync()
        await admission_clock.advance(10)
    assert len(errors) == 1
    assert "no longer fits" in str(errors[0])


async def test_bad_backends_are_refused(admission_clock: VirtualClock) -> None:
    with pytest.raises(TypeError, match="SharedBackend"):
        AdaptiveLimiter("x", rate=1, burst=1, backend=object())  # type: ignore[arg-type]

    class Mine(AdaptiveLimiter):
        __slots__ = ()

    with pytest.raises(TypeError, match="does not take backend"):
        Mine("x", rate=1, burst=1, backend=MemoryBackend(admission_clock))


async def test_classes_floors_and_snapshot_work_unchanged(admission_clock: VirtualClock) -> None:
    backend = MemoryBackend(admission_clock)
    limiter = shared(
        backend,
        rate=100,
        burst=100,
        max_concurrency=2,
        classes=[WorkloadClass("cheap"), WorkloadClass("expensive", minimum_floor=1)],
    )
    first = await limiter.acquire(workload_class="cheap")
    assert limiter.try_acquire(workload_class="cheap") is None  # the floor keeps one slot
    second = await limiter.acquire(workload_class="expensive")
    snapshot = limiter.snapshot()
    assert snapshot.in_flight == 2
    assert snapshot.workload_class("cheap").admitted_total == 1
    assert snapshot.tokens == pytest.approx(98)
    first.release()
    second.release()


async def test_the_registry_status_says_the_shared_budget_is_unavailable(
    admission_clock: VirtualClock,
) -> None:
    from admission.registry import Registry

    backend = MemoryBackend(admission_clock)
    limiter = shared(backend, name="converter")
    registry = Registry(clock=admission_clock)
    registry.add_limiter(limiter, follows="expensive")
    async with limiter:
        pass
    entry = registry.class_status("expensive")
    assert (entry.shared_budget, entry.limiters[0].shared_budget) == ("shared", "shared")
    backend.down = "ConnectionError: refused"
    await admission_clock.advance(60)
    async with limiter:
        pass
    status = registry.status()
    entry = status.workload_class("expensive")
    assert entry.shared_budget == "unavailable"
    assert entry.shared_budget_reason == "converter: ConnectionError: refused"
    assert entry.limiters[0].shared_budget_reason == "ConnectionError: refused"
    assert any("converter: shared budget unavailable" in w for w in status.warnings)
    assert registry.class_status("standard").shared_budget is None
