"""Conformance, as a property: over any window, admitted cost <= burst + rate * T.

Random arrivals, costs, classes, holds, timeouts, cancellations and retunes run
on virtual time; every admission is recorded with its grant time and cost, and
every window between two grants is checked against the most generous burst and
the integral of the rate over the window.  Under sustained overload the
long-run admitted rate must equal the rate.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limiter_helpers import Job, running

from admission import AdaptiveLimiter, AdmissionTimeout, WorkloadClass
from admission.testing import VirtualClock, virtual_clock

pytestmark = pytest.mark.anyio

SLACK = 1e-6
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class RateProfile:
    """The limiter's rate over time, piecewise constant, and its integral."""

    def __init__(self, rate: float) -> None:
        self.starts = [0.0]
        self.rates = [rate]

    def change(self, at: float, rate: float) -> None:
        assert at >= self.starts[-1]
        self.starts.append(at)
        self.rates.append(rate)

    def integral(self, start: float, end: float) -> float:
        total = 0.0
        for i, rate in enumerate(self.rates):
            lo = max(start, self.starts[i])
            hi = end if i + 1 == len(self.starts) else min(end, self.starts[i + 1])
            if hi > lo:
                total += rate * (hi - lo)
        return total


def worst_window(
    grants: list[tuple[float, float]], profile: RateProfile, burst: float
) -> tuple[float, float, float]:
    """The window whose admitted cost most exceeds ``burst + integral``: (excess, start, end)."""
    grants = sorted(grants)
    worst = (-float("inf"), 0.0, 0.0)
    for i, (start, _) in enumerate(grants):
        # Every grant at the same instant as ``start`` belongs to the window.
        first = bisect.bisect_left(grants, (start, -float("inf")))
        total = sum(cost for _, cost in grants[first:i])
        for end, cost in grants[i:]:
            total += cost
            excess = total - burst - profile.integral(start, end)
            if excess > worst[0]:
                worst = (excess, start, end)
    return worst


def test_the_window_check_catches_an_excess() -> None:
    profile = RateProfile(1.0)
    profile.change(10.0, 2.0)
    assert profile.integral(5, 15) == 5 + 10
    # A burst of 2 then one per second conforms ...
    ok = [(0.0, 1.0), (0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]
    assert worst_window(ok, profile, burst=2)[0] <= SLACK
    # ... one more at t=2 does not.
    assert worst_window([*ok, (2.0, 1.0)], profile, burst=2)[0] == pytest.approx(1.0)


@dataclass(frozen=True)
class Arrival:
    at: float
    cost_fraction: float
    workload_class: int
    hold: float
    timeout: float | None
    cancel_after: float | None
    try_only: bool


@dataclass(frozen=True)
class Retune:
    at: float
    rate: float | None
    burst: float | None
    max_concurrency: int | None


arrivals = st.builds(
    Arrival,
    at=st.floats(0, 10),
    cost_fraction=st.floats(0.05, 1),
    workload_class=st.integers(0, 2),
    hold=st.sampled_from([0.0, 0.0, 0.5, 2.0, 7.0]),
    timeout=st.none() | st.floats(0, 8),
    cancel_after=st.none() | st.floats(0, 6),
    try_only=st.booleans(),
)
retunes = st.builds(
    Retune,
    at=st.floats(0, 10),
    rate=st.none() | st.floats(0.2, 5),
    burst=st.none() | st.floats(1, 12),
    max_concurrency=st.none() | st.integers(1, 6),
)


@settings(HYPOTHESIS, max_examples=60)
@given(
    rate=st.floats(0.2, 5),
    burst=st.floats(1, 12),
    max_concurrency=st.none() | st.integers(1, 6),
    shares=st.lists(st.sampled_from([0.5, 1.0, 3.0]), min_size=3, max_size=3),
    arrivals=st.lists(arrivals, min_size=1, max_size=50),
    retunes=st.lists(retunes, max_size=4),
)
async def test_any_window_conforms(
    rate: float,
    burst: float,
    max_concurrency: int | None,
    shares: list[float],
    arrivals: list[Arrival],
    retunes: list[Retune],
) -> None:
    with virtual_clock() as clock:
        classes = [WorkloadClass(f"c{i}", share=share) for i, share in enumerate(shares)]
        limiter = AdaptiveLimiter(
            "conformance", rate=rate, burst=burst, max_concurrency=max_concurrency, classes=classes
        )
        profile = RateProfile(rate)
        max_burst = burst
        grants: list[tuple[float, float]] = []
        retry_afters: list[float] = []

        def request(arrival: Arrival) -> Job:
            cost = max(0.05, arrival.cost_fraction * limiter.burst)
            name = f"c{arrival.workload_class}"

            async def run() -> None:
                if arrival.try_only:
                    permit = limiter.try_acquire(cost, name)
                    if permit is not None:
                        grants.append((clock.monotonic(), cost))
                        permit.release()
                    return
                try:
                    async with limiter.admit(cost, name, arrival.timeout):
                        grants.append((clock.monotonic(), cost))
                        await clock.sleep(arrival.hold)
                except AdmissionTimeout as exc:
                    retry_afters.append(exc.retry_after)
                except ValueError:
                    pass  # a retune lowered the burst under the cost

            return run

        events: list[tuple[float, int, object]] = []
        for i, arrival in enumerate(arrivals):
            events.append((arrival.at, i, arrival))
        for i, retune in enumerate(retunes):
            events.append((retune.at, len(arrivals) + i, retune))
        events.sort(key=lambda event: (event[0], event[1]))

        async with running() as tg:
            for at, _, event in events:
                await clock.advance(max(0.0, at - clock.monotonic()))
                if isinstance(event, Retune):
                    limiter.retune(
                        rate=event.rate, burst=event.burst, max_concurrency=event.max_concurrency
                    )
                    if event.rate is not None:
                        profile.change(clock.monotonic(), event.rate)
                    if event.burst is not None:
                        max_burst = max(max_burst, event.burst)
                    continue
                assert isinstance(event, Arrival)
                if event.cancel_after is None:
                    tg.start_soon(request(event))
                else:
                    tg.start_soon(cancel_later, clock, event.cancel_after, request(event))
            await clock.run_until_idle(limit=10_000)

        assert limiter.in_flight == 0
        assert limiter.waiting == 0
        assert all(r >= 0 for r in retry_afters)
        excess, start, end = worst_window(grants, profile, max_burst)
        assert excess <= SLACK, f"window [{start}, {end}] admitted {excess} too much"


async def cancel_later(clock: VirtualClock, delay: float, job: Job) -> None:
    """Run ``job``, cancelling it ``delay`` virtual seconds after it started."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(job)
        await clock.sleep(delay)
        tg.cancel_scope.cancel()


@HYPOTHESIS
@given(
    rate=st.floats(0.5, 20),
    burst=st.floats(1, 10),
    costs=st.lists(st.floats(0.1, 1), min_size=1, max_size=4),
    workers=st.integers(1, 4),
    new_rate=st.none() | st.floats(0.5, 20),
)
async def test_long_run_rate_equals_the_rate_under_overload(
    rate: float, burst: float, costs: list[float], workers: int, new_rate: float | None
) -> None:
    with virtual_clock() as clock:
        limiter = AdaptiveLimiter("overload", rate=rate, burst=burst)
        admitted = 0.0
        profile = RateProfile(rate)

        def worker(cost: float) -> Job:
            async def run() -> None:
                nonlocal admitted
                while True:
                    async with limiter.admit(cost):
                        admitted += cost

            return run

        horizon = 100 * max(costs) / rate  # about 100 grants at the first rate
        async with anyio.create_task_group() as tg:
            for i in range(workers):
                tg.start_soon(worker(costs[i % len(costs)]))
            await clock.advance(horizon / 2)
            if new_rate is not None:
                limiter.retune(rate=new_rate)
                profile.change(clock.monotonic(), new_rate)
            await clock.advance(horizon / 2)
            tg.cancel_scope.cancel()

        earned = burst + profile.integral(0, horizon)
        assert admitted <= earned + SLACK
        # Demand always waits, so at most the head's cost is left unspent.
        assert admitted >= earned - max(costs) - 1e-3
        assert (admitted - burst) / horizon == pytest.approx(
            profile.integral(0, horizon) / horizon, rel=0.03
        )
