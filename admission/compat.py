"""A drop-in for aiolimiter's ``AsyncLimiter``, built on :class:`AdaptiveLimiter`.

Migrate by changing one import::

    from admission.compat import AsyncLimiter   # was: from aiolimiter import AsyncLimiter

Same constructor, attributes, ``async with``, ``acquire(amount)``,
``has_capacity(amount)`` and errors; like aiolimiter it reads the event loop's
clock (:class:`~admission.clock.LoopClock`).  One deliberate difference: order.
aiolimiter lets a smaller newcomer overtake a waiting larger request; this one
is FIFO, so a large request is never starved.  It can also be retuned live.

Smaller differences at the edges: ``max_rate`` must be a finite number >= 1
(aiolimiter also takes fractions, 0 and infinity), and ``has_capacity()`` works
outside a running loop.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from contextlib import AbstractAsyncContextManager
from types import TracebackType

from admission.clock import LoopClock
from admission.limiter import AdaptiveLimiter

__all__ = ["AsyncLimiter"]

LIMITER_REUSED_ACROSS_LOOPS_WARNING = (
    "This AsyncLimiter instance is being re-used across loops. Please create "
    "a new limiter per event loop as re-use can lead to undefined behaviour."
)


def _check_max_rate(max_rate: float) -> None:
    if (
        isinstance(max_rate, bool)
        or not isinstance(max_rate, int | float)
        or not math.isfinite(max_rate)
        or max_rate < 1
    ):
        raise ValueError(f"max_rate must be a finite number >= 1, got {max_rate!r}")


class AsyncLimiter(AbstractAsyncContextManager[None]):
    """Up to ``max_rate`` acquisitions per ``time_period`` seconds, bursting to ``max_rate``."""

    max_rate: float  #: The configured ``max_rate``.
    time_period: float  #: The configured ``time_period``, in seconds.
    #: The :class:`AdaptiveLimiter` doing the work: ``.snapshot()``, ``.retune()``...
    #: Replaced by a fresh one (keeping its tokens) if the limiter is re-used
    #: after the loop it served closed with tasks still queued in it.
    limiter: AdaptiveLimiter

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        _check_max_rate(max_rate)
        self.max_rate = max_rate
        self.time_period = time_period
        self._loop: asyncio.AbstractEventLoop | None = None
        self.limiter = self._build()

    def _build(self, tokens: float | None = None) -> AdaptiveLimiter:
        return AdaptiveLimiter(
            "aiolimiter",
            rate=self.max_rate / self.time_period,
            burst=self.max_rate,
            initial_tokens=tokens,
            clock=LoopClock(),
        )

    def has_capacity(self, amount: float = 1) -> bool:
        """Is there capacity for ``amount`` right now (whatever is queued)?"""
        self._check_loop(stacklevel=3)
        return self.limiter.tokens + 1e-9 * amount >= amount

    async def acquire(self, amount: float = 1) -> None:
        """Wait until ``amount`` of capacity is available, then take it."""
        await self._acquire(amount, stacklevel=4)

    async def _acquire(self, amount: float, *, stacklevel: int) -> None:
        if not 0 <= amount <= self.max_rate:
            raise ValueError("Amount must be a number between 0 and the maximum capacity")
        self._check_loop(stacklevel=stacklevel)
        if amount == 0:
            return
        permit = await self.limiter.acquire(float(amount))
        permit.release()

    def retune(self, max_rate: float | None = None, time_period: float | None = None) -> None:
        """Change the rate live; waiting tasks are re-planned at once.

        A task waiting for more than a lowered ``max_rate`` fails with ``ValueError``.
        """
        new_max_rate = self.max_rate if max_rate is None else max_rate
        new_time_period = self.time_period if time_period is None else time_period
        _check_max_rate(new_max_rate)
        self._check_loop(stacklevel=3)
        self.limiter.retune(rate=new_max_rate / new_time_period, burst=new_max_rate)
        self.max_rate, self.time_period = new_max_rate, new_time_period

    def _check_loop(self, *, stacklevel: int) -> None:
        """Warn (and recover) when re-used after the loop it served has closed.

        ``stacklevel`` counts frames from this method (1) to the user's call.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        previous = self._loop
        if previous is not None and previous is not loop and previous.is_closed():
            if loop is not None:
                warnings.warn(
                    LIMITER_REUSED_ACROSS_LOOPS_WARNING, RuntimeWarning, stacklevel=stacklevel
                )
            self._recover()
        if loop is not None:
            self._loop = loop

    def _recover(self) -> None:
        """The last loop closed: drop whatever it left queued, as aiolimiter does.

        ``asyncio.run()`` cancels its tasks before closing, so they leave
        nothing behind and the limiter is kept.  A loop closed with tasks still
        waiting (or granted, but never resumed) strands them and the limiter's
        timer; a new limiter takes over, with the tokens the old one had.
        """
        old = self.limiter
        if old.waiting or old.in_flight:
            self.limiter = self._build(tokens=max(0.0, old.tokens))

    async def __aenter__(self) -> None:
        await self._acquire(1, stacklevel=4)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"AsyncLimiter(max_rate={self.max_rate!r}, time_period={self.time_period!r})"
