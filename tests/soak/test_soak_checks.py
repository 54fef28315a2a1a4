"""The soak's checks catch what they must: broken limiters fail a short soak, with the reason.

Each case breaks one promise of DESIGN.md in the library (patched for the
test only) and runs a short soak on asyncio: the soak must stop with a
message naming the broken invariant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from soak_driver import Soak
from soak_model import EPS, ModelBucket, SoakFailure
from time_machine import TimeMachineFixture

from admission._partition import GRANTED
from admission._scheduler import Scheduler
from admission.bucket import TokenBucket
from admission.permit import Permit
from admission.testing import VirtualClock

pytestmark = pytest.mark.soak

SEED = 20260101
ADMISSIONS = 3_000


def _no_floors(self: Scheduler, part: Any) -> bool:
    if part.max_concurrency is not None and part.in_flight >= part.max_concurrency:
        return False
    cap = self._max_concurrency
    return cap is None or cap > self._total_in_flight()


def _overtaking(self: Scheduler, part: Any, cost: float, now: float) -> bool:
    return self._admissible(part, cost, now)


def _retune_without_refill(
    self: TokenBucket, now: float, *, rate: float | None = None, burst: float | None = None
) -> None:
    if rate is not None:
        self.rate = rate
    if burst is not None:
        self.burst = burst
        self.tokens = min(self.tokens, burst)


_DELAY = TokenBucket.delay_until


def _late_timer(self: TokenBucket, cost: float, now: float) -> float:
    delay = _DELAY(self, cost, now)
    return delay + 0.0005 if delay > 0 else delay


_SETTLE = Scheduler._settle


def _never_fails_a_waiter(self: Scheduler, now: float, *, check_fit: bool) -> None:
    _SETTLE(self, now, check_fit=False)


def _release_twice(self: Permit) -> None:
    self._released = True
    self._limiter._release(self._partition)


def _generous(self: TokenBucket, cost: float, now: float) -> bool:
    return self.refill(now) >= cost - 0.01


_ABANDON = Scheduler._abandon


def _undo_keeps_tokens(self: Scheduler, waiter: Any) -> None:
    if waiter.state == GRANTED:
        waiter.partition.admitted_total -= 1
        waiter.partition.cancelled_total += 1
        self._release(waiter.partition)
        return
    _ABANDON(self, waiter)


def _release_wakes_nobody(self: Scheduler, part: Any) -> None:
    part.in_flight -= 1


def _no_deadline_timer(self: Scheduler, now: float, blocked: Any, elect: bool) -> None:
    deadlines, self._deadlines = self._deadlines, []
    try:
        _PLAN(self, now, blocked, elect)
    finally:
        self._deadlines = deadlines


_PLAN = Scheduler._plan

BROKEN: dict[str, tuple[object, str, Callable[..., Any], str]] = {
    "floors ignored": (Scheduler, "_slot_free", _no_floors, "without a free slot"),
    "a newcomer overtakes": (Scheduler, "_may_enter", _overtaking, r"FIFO per class|overtook"),
    "retune forgets the old rate": (
        TokenBucket,
        "retune",
        _retune_without_refill,
        "tokens|snapshot",
    ),
    "token timer 0.5 ms late": (
        TokenBucket,
        "delay_until",
        _late_timer,
        "could have been admitted",
    ),
    "release wakes nobody": (
        Scheduler,
        "_release",
        _release_wakes_nobody,
        "could have been admitted",
    ),
    "no timer for deadlines": (Scheduler, "_plan", _no_deadline_timer, "past its deadline"),
    "a shrunk burst strands waiters": (
        Scheduler,
        "_settle",
        _never_fails_a_waiter,
        "no longer fit",
    ),
    "a slot returned twice": (Permit, "release", _release_twice, "in flight -1"),
    "tokens overdrawn": (TokenBucket, "has", _generous, "bucket with only"),
    "retry_after of 0": (Scheduler, "_retry_after", lambda *args: 0.0, "retry_after=0.0 outside"),
    "an undone admission keeps its tokens": (Scheduler, "_abandon", _undo_keeps_tokens, "tokens"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("broken", BROKEN)
async def test_a_broken_limiter_fails_the_soak(
    admission_clock: VirtualClock,
    time_machine: TimeMachineFixture,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    owner, name, replacement, reason = BROKEN[broken]
    monkeypatch.setattr(owner, name, replacement)
    soak = Soak(admission_clock, time_machine.shift, ADMISSIONS, SEED, "asyncio")
    with pytest.raises(SoakFailure, match=reason) as failure:
        await soak.run()
    assert f"seed={SEED}" in str(failure.value)


# -- the every-window conformance check, by hand ---------------------------------------


def admit(bucket: ModelBucket, at: float, cost: float = 1.0) -> float:
    """Admit ``cost`` at ``at``; the worst window's excess over burst + rate*T."""
    return bucket.take(cost, at)[1]


def test_a_burst_then_the_rate_conforms() -> None:
    bucket = ModelBucket(rate=1.0, burst=2.0, at=0.0)
    excesses = [admit(bucket, t) for t in (0.0, 0.0, 1.0, 2.0, 3.0)]
    assert max(excesses) <= EPS
    # One more in the same second: the window [0, 3] holds 6 > 2 + 1 * 3.
    assert admit(bucket, 3.0, 0.5) == pytest.approx(0.5)


def test_every_window_counts_not_only_the_one_from_the_start() -> None:
    bucket = ModelBucket(rate=1.0, burst=2.0, at=0.0)
    assert admit(bucket, 0.0) <= EPS
    # A long quiet spell refills the bucket: two at once at t=100 are fine ...
    assert max(admit(bucket, 100.0), admit(bucket, 100.0)) <= EPS
    # ... a third in the window [100, 100.5] is not, though [0, 100.5] has room.
    assert admit(bucket, 100.5) == pytest.approx(0.5)


def test_a_retune_counts_the_old_rate_until_it_and_the_burst_in_force() -> None:
    bucket = ModelBucket(rate=1.0, burst=4.0, at=0.0)
    assert max(admit(bucket, 0.0, 4.0), admit(bucket, 2.0, 2.0)) <= EPS
    bucket.retune(2.0, rate=10.0, burst=1.0)
    # From t=2 the rate is 10 and the burst 1: at most 1 + 10 * 0.2 in [2.1, 2.3].
    assert max(admit(bucket, at) for at in (2.1, 2.2, 2.3)) <= EPS
    assert admit(bucket, 2.3, 0.25) == pytest.approx(0.25)
    assert math.isclose(bucket.level(2.3), -0.25)
    # Waiting does not help past the new burst: 1.25 at once after a rest is too much.
    assert admit(bucket, 60.0, 1.25) == pytest.approx(0.25)
