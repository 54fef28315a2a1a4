"""Permits: what an admission hands back, and the context manager that holds one."""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING

from admission._partition import Partition

if TYPE_CHECKING:
    from admission._scheduler import Scheduler

__all__ = ["Admission", "Permit", "check_timeout"]


class Permit:
    """One admission: holds a concurrency slot until :meth:`release`."""

    __slots__ = ("_limiter", "_partition", "_released", "cost", "waited_seconds")

    def __init__(
        self, limiter: Scheduler, partition: Partition, cost: float, waited: float
    ) -> None:
        self._limiter = limiter
        self._partition = partition
        self._released = False
        self.cost = cost
        #: Seconds the request spent queued before it was admitted.
        self.waited_seconds = waited

    @property
    def workload_class(self) -> str:
        return self._partition.name

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the concurrency slot back.  Calling it again does nothing."""
        if not self._released:
            self._released = True
            self._limiter._release(self._partition)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Permit {self._limiter.name}/{self._partition.name} cost={self.cost!r} {state}>"


class Admission:
    """The context manager returned by :meth:`AdaptiveLimiter.admit`."""

    __slots__ = ("_cost", "_limiter", "_partition", "_permit", "_timeout")

    def __init__(
        self, limiter: Scheduler, partition: Partition, cost: float, timeout: float | None
    ) -> None:
        self._limiter = limiter
        self._partition = partition
        self._cost = cost
        self._timeout = timeout
        self._permit: Permit | None = None

    async def __aenter__(self) -> Permit:
        self._permit = await self._limiter._acquire(self._partition, self._cost, self._timeout)
        return self._permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._permit is not None:
            self._permit.release()


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise ValueError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)
