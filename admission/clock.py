"""Time, read and slept through one seam.

Everything in admission that measures a duration calls ``Clock.monotonic()``,
everything that shows a timestamp to a person calls ``Clock.wall()``, and every
timed wait is ``await Clock.sleep()``.  Swapping the clock (``LoopClock``, or the
virtual clock in :mod:`admission.testing`) therefore moves the whole library.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import anyio

__all__ = [
    "Clock",
    "LoopClock",
    "ScaledClock",
    "SystemClock",
    "get_default_clock",
    "set_default_clock",
]


@runtime_checkable
class Clock(Protocol):
    """The time source of a limiter, a monitor or an engine driver."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""
        ...

    def wall(self) -> datetime:
        """The current time as an aware UTC datetime (for people)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` (``<= 0`` is a checkpoint)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``datetime.now(UTC)`` and ``anyio.sleep``."""

    __slots__ = ()

    # The builtin itself, not a wrapper: a limiter's fast path calls it on
    # every admission, and a builtin does not bind as a method.
    monotonic = staticmethod(time.monotonic)

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


class LoopClock:
    """The running asyncio event loop's clock (``loop.time()``), as aiolimiter reads it.

    Useful with virtual-time event loops and with tests that patch ``loop.time``:
    the limiter then measures durations on whatever the loop believes the time is.
    asyncio only.
    """

    __slots__ = ()

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            # No loop yet (a limiter built at import time): the loop's clock has
            # not started, and a bucket that starts full needs no earlier reading.
            return 0.0

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "LoopClock()"


class ScaledClock:
    """Real time sped up ``speed`` times: a scenario of minutes plays in seconds.

    ``monotonic()`` starts at 0 and runs ``speed`` scenario seconds per real
    second; ``wall()`` starts at ``start`` (default: now) and runs as fast;
    ``sleep(s)`` sleeps ``s / speed`` real seconds.  Windows, refill and
    timeouts all follow, since everything reads time through the clock.
    """

    __slots__ = ("_origin", "_start", "speed")

    def __init__(self, speed: float, *, start: datetime | None = None) -> None:
        if isinstance(speed, bool) or not (
            isinstance(speed, int | float) and 0 < speed < float("inf")
        ):
            raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
        if start is not None and start.tzinfo is None:
            raise ValueError(f"start must be an aware datetime, got {start!r}")
        self.speed = float(speed)
        self._origin = time.monotonic()
        self._start = start if start is not None else datetime.now(UTC)

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    def wall(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0) / self.speed)

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed:g})"


_default_clock: Clock = SystemClock()


def get_default_clock() -> Clock:
    """The clock used by components created without an explicit ``clock=``."""
    return _default_clock


def set_default_clock(clock: Clock | None) -> Clock:
    """Replace the default clock (``None`` restores ``SystemClock``); returns the previous one.

    The ``admission_clock`` pytest fixture uses this so that limiters a worker
    builds internally follow virtual time without being handed a clock.
    """
    global _default_clock
    previous = _default_clock
    _default_clock = SystemClock() if clock is None else clock
    return previous
