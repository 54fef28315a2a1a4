"""A drop-in for aiolimiter's ``AsyncLimiter``, built on :class:`AdaptiveLimiter`.

Migrate by changing one import::

    from admission.compat import AsyncLimiter   # was: from aiolimiter import AsyncLimiter

Same constructor, attributes, ``async with``, ``acquire(amount)``,
``has_capacity(amount)`` and errors; like aiolimiter it reads the event loop's
clock (:class:`~admission.clock.LoopClock`).  One deliberate difference: order.
aiolimiter lets a smaller newcomer overtake a waiting larger request; this one
is FIFO, so a large request is never starved.  It can also be retuned live.
"""

from __future__ import annotations

import asyncio
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


class AsyncLimiter(AbstractAsyncContextManager[None]):
    """Up to ``max_rate`` acquisitions per ``time_period`` seconds, bursting to ``max_rate``."""

    max_rate: float  #: The configured ``max_rate``.
    time_period: float  #: The configured ``time_period``, in seconds.

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        self.max_rate = max_rate
        self.time_period = time_period
        self._loop: asyncio.AbstractEventLoop | None = None
        self.limiter = AdaptiveLimiter(
            "aiolimiter", rate=max_rate / time_period, burst=max_rate, clock=LoopClock()
        )

    def has_capacity(self, amount: float = 1) -> bool:
        """Is there capacity for ``amount`` right now (whatever is queued)?"""
        return self.limiter.snapshot().tokens + 1e-9 * amount >= amount

    async def acquire(self, amount: float = 1) -> None:
        """Wait until ``amount`` of capacity is available, then take it."""
        if not 0 <= amount <= self.max_rate:
            raise ValueError("Amount must be a number between 0 and the maximum capacity")
        self._check_loop()
        if amount == 0:
            return
        permit = await self.limiter.acquire(amount)
        permit.release()

    def retune(self, max_rate: float | None = None, time_period: float | None = None) -> None:
        """Change the rate live; waiting tasks are re-planned at once."""
        if max_rate is not None:
            self.max_rate = max_rate
        if time_period is not None:
            self.time_period = time_period
        self.limiter.retune(rate=self.max_rate / self.time_period, burst=self.max_rate)

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and self._loop.is_closed():
                warnings.warn(LIMITER_REUSED_ACROSS_LOOPS_WARNING, RuntimeWarning, stacklevel=3)
            self._loop = loop

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"AsyncLimiter(max_rate={self.max_rate!r}, time_period={self.time_period!r})"
