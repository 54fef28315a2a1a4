"""The limiter-wide buckets of a shared limiter: tokens the backend granted, and the fallback."""

from __future__ import annotations

import math

from admission.bucket import TOLERANCE, TokenBucket

__all__ = ["FallbackBucket", "SharedTokens"]


class SharedTokens(TokenBucket):
    """The limiter-wide bucket while the backend answers: tokens only as granted, never refilled.

    ``rate`` and ``burst`` are the shared bucket's, as last known.
    """

    __slots__ = ("fetching", "guard", "retry_at")

    def __init__(self, rate: float, burst: float, *, now: float, guard: float) -> None:
        super().__init__(rate, burst, now=now, tokens=0.0)
        self.fetching = False
        self.retry_at = -math.inf
        self.guard = guard

    def refill(self, now: float) -> float:
        return self.tokens

    def peek(self, now: float) -> float:
        return self.tokens

    def has(self, cost: float, now: float) -> bool:
        return self.tokens >= cost - TOLERANCE * cost

    def delay_until(self, cost: float, now: float) -> float:
        if self.has(cost, now):
            return 0.0
        if self.fetching:
            # Whoever is asking re-plans when the answer comes; this is a backstop.
            return self.guard
        return max(0.0, self.retry_at - now)


class FallbackBucket(TokenBucket):
    """The local bucket while the backend is away.

    A cost above its (small) burst waits for a full bucket and leaves it in
    debt, so the fallback never refuses what the shared budget would take.
    ``probe_at`` is when the backend is asked again: the timer wakes for it.
    """

    __slots__ = ("probe_at",)

    def __init__(self, rate: float, burst: float, *, now: float) -> None:
        super().__init__(rate, burst, now=now)
        self.probe_at = math.inf

    def has(self, cost: float, now: float) -> bool:
        need = min(cost, self.burst)
        return self.refill(now) >= need - TOLERANCE * need

    def delay_until(self, cost: float, now: float) -> float:
        need = min(cost, self.burst)
        missing = need - self.refill(now)
        delay = 0.0 if missing <= TOLERANCE * need else missing / self.rate
        if now < self.probe_at < now + delay:
            return self.probe_at - now
        return delay
