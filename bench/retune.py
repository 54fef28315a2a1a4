"""Benchmark 4: how fast a retune reaches sleeping waiters, and what ``retune()`` costs.

- latency: K waiters queue on a slow limiter (``rate=slow``, burst 1, started empty,
  so none is due for a long time); then ``limiter.retune(rate=fast)`` and the time
  until the first newly admitted waiter runs (``perf_counter`` on both sides).  The
  floor is one task woken by ``asyncio.Event.set()``, measured the same way.
- CPU: ``retune()`` between two slow rates (so it grants nothing), called in a batch
  with 0, 1k and 10k waiters queued; ``process_time`` per call.
"""

from __future__ import annotations

import asyncio
import time

from admission import AdaptiveLimiter
from bench._common import Check, Row, Section, cancel_all, collect, median, progress

__all__ = ["run"]

SLOW = 0.001  # tokens per second: nobody is due for 1,000 s
FAST = 1e6
SETTLE = 0.005  # seconds for the timer owner to fall asleep


async def _queued(limiter: AdaptiveLimiter, k: int) -> list[asyncio.Task[None]]:
    """K tasks waiting on ``limiter``, every one parked."""
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    return await _queued_with(limiter, k, first)


async def _queued_with(
    limiter: AdaptiveLimiter, k: int, first: asyncio.Future[float]
) -> list[asyncio.Task[None]]:
    perf = time.perf_counter

    async def task() -> None:
        async with limiter:
            if not first.done():
                first.set_result(perf())

    tasks = [asyncio.create_task(task()) for _ in range(k)]
    for _ in range(k + 10):
        if limiter.waiting >= k:
            break
        await asyncio.sleep(0)
    assert limiter.waiting == k, f"expected {k} waiters, got {limiter.waiting}"
    await asyncio.sleep(SETTLE)
    return tasks


async def _latency(k: int) -> float:
    limiter = AdaptiveLimiter("b", rate=SLOW, burst=1, initial_tokens=0)
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    tasks = await _queued_with(limiter, k, first)
    start = time.perf_counter()
    limiter.retune(rate=FAST)
    admitted = await first
    await cancel_all(tasks)
    return admitted - start


async def _event_floor() -> float:
    event = asyncio.Event()
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def task() -> None:
        await event.wait()
        first.set_result(time.perf_counter())

    waiter = asyncio.create_task(task())
    await asyncio.sleep(SETTLE)
    start = time.perf_counter()
    event.set()
    admitted = await first
    await waiter
    return admitted - start


async def _retune_cpu(k: int, calls: int) -> float:
    limiter = AdaptiveLimiter("b", rate=SLOW, burst=1, initial_tokens=0)
    tasks = await _queued(limiter, k)
    rates = (SLOW, 2 * SLOW)
    cpu0 = time.process_time()
    for i in range(calls):
        limiter.retune(rate=rates[i & 1])
    cpu = time.process_time() - cpu0
    await asyncio.sleep(SETTLE)
    assert limiter.waiting == k, "a retune between slow rates admitted someone"
    await cancel_all(tasks)
    return cpu / calls


def _calls(k: int) -> int:
    return max(20, 200_000 // (k + 10))


def run(
    latency_sizes: tuple[int, ...] = (1, 1_000, 10_000),
    cpu_sizes: tuple[int, ...] = (0, 1_000, 10_000),
    repeats: int = 7,
) -> Section:
    asyncio.run(_latency(2))  # warm up: lazy imports and first-use costs stay out of the figures
    asyncio.run(_retune_cpu(2, 10))
    floor = median([asyncio.run(_event_floor()) for _ in range(repeats)])
    rows: list[Row] = [
        {
            "measure": "asyncio.Event.set() -> waiter runs (floor)",
            "waiters": 1,
            "median us": floor * 1e6,
            "ratio": 1.0,
        }
    ]
    checks: list[Check] = []
    for k in latency_sizes:
        samples = []
        for _ in range(repeats):
            collect()
            samples.append(asyncio.run(_latency(k)))
        latency = median(samples)
        rows.append(
            {
                "measure": "retune(rate=fast) -> first admitted runs",
                "waiters": k,
                "median us": latency * 1e6,
                "ratio": latency / floor,
            }
        )
        checks.append(Check(f"retune latency with {k:,} waiters / Event floor", latency / floor))
    progress("retune latency done")
    cost: dict[int, float] = {}
    for k in cpu_sizes:
        samples = []
        for _ in range(repeats):
            collect()
            samples.append(asyncio.run(_retune_cpu(k, _calls(k))))
        cost[k] = median(samples)
    base = cost[min(cpu_sizes)]
    for k in cpu_sizes:
        rows.append(
            {
                "measure": "retune() CPU per call",
                "waiters": k,
                "median us": cost[k] * 1e6,
                "ratio": cost[k] / base,
            }
        )
        if k != min(cpu_sizes):
            checks.append(
                Check(f"retune() CPU with {k:,} / {min(cpu_sizes):,} waiters", cost[k] / base)
            )
    progress("retune CPU done")
    return Section(
        key="retune",
        title="4. Retune: latency to sleeping waiters, and the CPU cost of retune()",
        method=(
            f"Latency: K waiters on AdaptiveLimiter(rate={SLOW:g}, burst=1, initial_tokens=0), "
            f"then retune(rate={FAST:g}); perf_counter from the call to the first admitted task "
            "running; the floor is a task woken by asyncio.Event.set().  CPU: retune() toggling "
            f"between rate {SLOW:g} and {2 * SLOW:g} (no grants), process_time per call over a "
            f"batch.  Medians of {repeats} repeats, a fresh event loop each."
        ),
        params={
            "latency_sizes": ",".join(map(str, latency_sizes)),
            "cpu_sizes": ",".join(map(str, cpu_sizes)),
            "repeats": repeats,
        },
        columns=("measure", "waiters", "median us", "ratio"),
        rows=rows,
        checks=checks,
        notes=[
            "No targets were set for retune; the ratios are reported for information.  "
            "'ratio' is against the Event floor (latency) or against the smallest queue (CPU).",
        ],
        formats={"median us": ".1f", "ratio": ".2f"},
    )
