"""Helpers shared by the limiter tests (all on the virtual clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskGroup

from admission import AdaptiveLimiter, AdmissionTimeout, Permit
from admission.testing import VirtualClock

#: A task body to start in a task group.
Job = Callable[[], Coroutine[Any, Any, None]]


@asynccontextmanager
async def running() -> AsyncIterator[TaskGroup]:
    """A task group cancelled when the block ends.

    A waiter that is never admitted (a lost wake-up) then fails the assertions
    after the block instead of hanging the test run.
    """
    async with anyio.create_task_group() as tg:
        yield tg
        tg.cancel_scope.cancel()


async def start_in_order(clock: VirtualClock, tg: TaskGroup, *jobs: Job) -> None:
    """Start each job and let it block before the next: arrival order is start order.

    (trio does not run tasks in the order they were started.)
    """
    for job in jobs:
        tg.start_soon(job)
        await clock.advance(0)


async def run_together(clock: VirtualClock, job: Job, copies: int, seconds: float) -> None:
    """Start ``copies`` of job at once, then let the clock run for ``seconds``."""
    async with running() as tg:
        for _ in range(copies):
            tg.start_soon(job)
        await clock.advance(seconds)


async def timeout_of(
    clock: VirtualClock, call: Callable[[], Awaitable[object]], seconds: float = 10
) -> tuple[float, AdmissionTimeout]:
    """Run call, which must time out within ``seconds``: when it did, and the error."""
    errors: list[tuple[float, AdmissionTimeout]] = []

    async def run() -> None:
        try:
            await call()
        except AdmissionTimeout as exc:
            errors.append((clock.monotonic(), exc))

    async with running() as tg:
        tg.start_soon(run)
        await clock.advance(seconds)
    [(at, error)] = errors
    return at, error


def admit_and_release(
    limiter: AdaptiveLimiter,
    clock: VirtualClock,
    granted: list[float],
    cost: float = 1,
    timeout: float | None = None,
) -> Job:
    """A job that acquires, notes in ``granted`` when it was admitted, and releases at once."""

    async def run() -> None:
        permit = await limiter.acquire(cost, timeout=timeout)
        granted.append(clock.monotonic())
        permit.release()

    return run


def drained(limiter: AdaptiveLimiter, cost: float = 1) -> AdaptiveLimiter:
    """Empty the bucket by admitting (and releasing) everything it holds."""
    while (permit := limiter.try_acquire(cost)) is not None:
        permit.release()
    return limiter


class Holders:
    """Tasks that acquire in a class and hold their permit until told to release."""

    def __init__(self, limiter: AdaptiveLimiter, clock: VirtualClock) -> None:
        self.limiter = limiter
        self.clock = clock
        self.granted: list[tuple[str, float]] = []
        self.held: list[tuple[str, Permit]] = []

    def job(self, workload_class: str | None = None, cost: float = 1) -> Job:
        async def run() -> None:
            permit = await self.limiter.acquire(cost, workload_class)
            self.granted.append((permit.workload_class, self.clock.monotonic()))
            self.held.append((permit.workload_class, permit))

        return run

    def release(self, workload_class: str | None = None) -> str:
        """Release the oldest permit (of that class); return its class."""
        for i, (name, permit) in enumerate(self.held):
            if workload_class is None or name == workload_class:
                del self.held[i]
                permit.release()
                return name
        raise AssertionError(f"no permit of {workload_class!r} held")

    def order(self) -> list[str]:
        return [name for name, _ in self.granted]
