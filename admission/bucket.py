"""Token bucket arithmetic, free of I/O and of clocks: every call is told ``now``.

Over any interval of length ``T`` a bucket lets through at most
``burst + rate * T`` tokens; that is the conformance the limiter promises.
"""

from __future__ import annotations

import math

__all__ = ["TOLERANCE", "TokenBucket", "check_burst", "check_rate"]

#: Float slack when comparing tokens with a cost: a timer that fires exactly
#: when ``(cost - tokens) / rate`` has passed must find the tokens there, even
#: after rounding.  Relative to the cost, so it never admits a visible excess.
TOLERANCE = 1e-9


def check_rate(rate: float, *, field: str = "rate") -> float:
    """Validate a rate in tokens per second: finite and greater than zero."""
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise TypeError(f"{field} must be a number, got {rate!r}")
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{field} must be a finite number > 0, got {rate!r}")
    return float(rate)


def check_burst(burst: float, *, field: str = "burst") -> float:
    """Validate a bucket capacity: finite and at least 1."""
    if isinstance(burst, bool) or not isinstance(burst, int | float):
        raise TypeError(f"{field} must be a number, got {burst!r}")
    if not math.isfinite(burst) or burst < 1:
        raise ValueError(f"{field} must be a finite number >= 1, got {burst!r}")
    return float(burst)


class TokenBucket:
    """Tokens that refill at ``rate`` per second up to ``burst``."""

    __slots__ = ("burst", "rate", "tokens", "updated_at")

    def __init__(
        self, rate: float, burst: float, *, now: float, tokens: float | None = None
    ) -> None:
        self.rate = check_rate(rate)
        self.burst = check_burst(burst)
        if tokens is None:
            tokens = self.burst
        elif not math.isfinite(tokens) or tokens < 0:
            raise ValueError(f"initial_tokens must be a finite number >= 0, got {tokens!r}")
        self.tokens = min(float(tokens), self.burst)
        self.updated_at = now

    def refill(self, now: float) -> float:
        """Bring the bucket to ``now`` and return the tokens it holds."""
        elapsed = now - self.updated_at
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        # A clock that stepped back (a patched loop.time) earns nothing but must
        # not freeze refill until it catches up again.
        self.updated_at = now
        return self.tokens

    def peek(self, now: float) -> float:
        """The tokens the bucket would hold at ``now``, without changing it."""
        elapsed = max(0.0, now - self.updated_at)
        return min(self.burst, self.tokens + elapsed * self.rate)

    def has(self, cost: float, now: float) -> bool:
        return self.refill(now) >= cost - TOLERANCE * cost

    def take(self, cost: float) -> None:
        """Remove ``cost`` tokens (the caller checked :meth:`has`)."""
        self.tokens -= cost

    def give_back(self, cost: float) -> None:
        """Return tokens taken for an admission that never happened."""
        self.tokens = min(self.burst, self.tokens + cost)

    def delay_until(self, cost: float, now: float) -> float:
        """Seconds from ``now`` until ``cost`` tokens are there (0 if they are)."""
        missing = cost - self.refill(now)
        if missing <= TOLERANCE * cost:
            return 0.0
        return missing / self.rate

    def retune(self, now: float, *, rate: float | None = None, burst: float | None = None) -> None:
        """Change rate and burst at ``now``: tokens earned so far count at the old rate."""
        self.refill(now)
        if rate is not None:
            self.rate = check_rate(rate)
        if burst is not None:
            self.burst = check_burst(burst)
            self.tokens = min(self.tokens, self.burst)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate!r}, burst={self.burst!r}, tokens={self.tokens:.3f})"
