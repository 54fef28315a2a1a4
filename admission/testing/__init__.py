"""Virtual time for tests: a clock driven by time-machine.

time-machine (>= 3) moves the wall clock only (``time.time``, ``datetime.now``),
not ``time.monotonic`` nor the event loop's clock.  :class:`VirtualClock`
therefore derives its monotonic time from the travelled ``time.time_ns()`` and
never lets it go backwards, so both ``await clock.advance(s)`` and a plain
``time_machine.shift(s)`` move token refill and policy windows.

The pytest plugin in :mod:`admission.testing.pytest_plugin` gives tests the
``admission_clock`` fixture built on this class.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import anyio
import anyio.lowlevel

from admission.clock import set_default_clock

__all__ = ["VirtualClock", "virtual_clock"]

#: Where virtual time starts: a fixed, recognisable instant.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

_NS = 1_000_000_000


async def _all_blocked() -> None:
    """``anyio.wait_all_tasks_blocked()``, without its real sleeps in the common case.

    On asyncio it sleeps 0.1 s of real time whenever some task is ready to run;
    a few checkpoints first let the tasks just woken run (and wake the next),
    so it mostly finds everyone blocked already.
    """
    for _ in range(8):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


class VirtualClock:
    """A :class:`~admission.clock.Clock` whose time moves only when told.

    ``shift`` moves the wall clock by a number of seconds (time-machine's
    ``shift``).  Sleepers wake only in :meth:`advance`, in deadline order,
    each after the clock has reached its deadline exactly.
    """

    def __init__(self, shift: Callable[[float], None]) -> None:
        self._shift = shift
        self._origin_ns = time.time_ns()
        self._last_ns = 0
        self._sleepers: list[tuple[int, int, anyio.Event]] = []
        self._seq = itertools.count()

    def _now_ns(self) -> int:
        now = time.time_ns() - self._origin_ns
        if now < self._last_ns:
            # time-machine moved back: rebase, so virtual time holds still here
            # and the next shift (or advance) moves it on at once.
            self._origin_ns -= self._last_ns - now
            return self._last_ns
        self._last_ns = now
        return now

    def monotonic(self) -> float:
        return self._now_ns() / _NS

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        if not seconds > 0:
            await anyio.lowlevel.checkpoint()
            return
        deadline = self._now_ns() + math.ceil(seconds * _NS)
        event = anyio.Event()
        entry = (deadline, next(self._seq), event)
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():
                # Cancelled: leave no ghost behind for advance() to wake.
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return len(self._sleepers)

    def next_deadline(self) -> float | None:
        """The monotonic time of the earliest sleeper, if any."""
        return self._sleepers[0][0] / _NS if self._sleepers else None

    def _move_to(self, target_ns: int) -> None:
        # time-machine rounds float seconds to ns; a second, tiny shift lands exactly.
        for _ in range(3):
            now = self._now_ns()
            if now >= target_ns:
                return
            self._shift((target_ns - now) / _NS)
        if self._now_ns() < target_ns:
            raise RuntimeError("the clock did not move: is time-machine travelling?")

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper as it falls due.

        Between two deadlines every task runs until it blocks, so whatever a
        woken task does (grant, sleep again) happens at its own instant.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        target = self._now_ns() + round(seconds * _NS)
        while True:
            await _all_blocked()
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            due = self._sleepers[0][0]
            self._move_to(due)
            while self._sleepers and self._sleepers[0][0] <= due:
                heapq.heappop(self._sleepers)[2].set()
        self._move_to(target)
        await _all_blocked()

    async def run_until_idle(self, limit: float = 86_400.0) -> float:
        """Advance from deadline to deadline until nobody sleeps (at most ``limit`` s).

        Returns the virtual seconds that passed.
        """
        start = self._now_ns()
        while True:
            await _all_blocked()
            if not self._sleepers:
                break
            due = self._sleepers[0][0]
            if (due - start) / _NS > limit:
                raise RuntimeError(f"still busy after {limit} virtual seconds")
            await self.advance(max(0, due - self._now_ns()) / _NS)
        return (self._now_ns() - start) / _NS


@contextmanager
def virtual_clock(start: datetime = EPOCH, *, as_default: bool = True) -> Iterator[VirtualClock]:
    """Freeze time with time-machine and drive it with a :class:`VirtualClock`.

    For code outside pytest (pytest users take the ``admission_clock`` fixture).
    With ``as_default`` the clock is also the default for limiters built
    without ``clock=`` while the block runs.
    """
    import time_machine

    with time_machine.travel(start, tick=False) as traveller:
        clock = VirtualClock(traveller.shift)
        previous = set_default_clock(clock) if as_default else None
        try:
            yield clock
        finally:
            if as_default:
                set_default_clock(previous)
