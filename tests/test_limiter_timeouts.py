"""AdaptiveLimiter timeouts: when they fire, retry_after, and AdmissionTimeout."""

from __future__ import annotations

import math
import pickle

import pytest
from limiter_helpers import Job, admit_and_release, drained, running, start_in_order, timeout_of

from admission import AdaptiveLimiter, AdmissionError, AdmissionTimeout
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


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

    async def waiter() -> None:
        async with limiter.admit(cost=2, timeout=1):
            pass

    at, error = await timeout_of(admission_clock, waiter)
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
    waiter = admit_and_release(limiter, admission_clock, granted, timeout=math.inf)

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(100)
    assert granted == [pytest.approx(100.0)]


async def test_a_timeout_while_waiting_for_a_slot(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("slot", rate=10, burst=5, max_concurrency=1)
    held = await limiter.acquire()
    at, error = await timeout_of(admission_clock, lambda: limiter.acquire(timeout=2))
    # Tokens are there; only the slot is missing, which retry_after cannot know.
    assert (at, error.retry_after) == (2.0, 0.0)
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
