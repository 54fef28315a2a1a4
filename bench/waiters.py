"""Benchmark 3: does the cost of a grant grow with the number of queued waiters?

A limiter at ``rate`` per second (2,000) with a small burst (20), started empty
(admission: ``initial_tokens=0``; aiolimiter: drained by ``acquire(burst)``).  N
tasks queue on it; once every one has reached its wait, ``time.process_time()``
runs over a ``window`` of grants (one second: ~2,000 grants), and CPU per grant is
that CPU over the grants counted in the window.  The remaining waiters are then
cancelled, and the time that takes is reported too.  The timer floor is one task
sleeping to a deadline every ``1/rate`` s: what one event-loop timer wake per
grant costs, with no limiter at all.
"""

from __future__ import annotations

import asyncio
import time
from cProfile import Profile
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from admission import AdaptiveLimiter
from bench._common import (
    AsyncCM,
    Check,
    Row,
    Section,
    cancel_all,
    collect,
    median,
    progress,
    rotated,
)

__all__ = ["run"]

AIOLIMITER = "aiolimiter"
OURS = "admission"
CONTENDERS = (AIOLIMITER, OURS)
FLOOR = "timer floor"


@dataclass(frozen=True)
class _Run:
    queue_wall: float
    queue_cpu_per_waiter: float
    grants: int
    grant_fraction: float
    cpu_per_grant: float
    cancel_wall: float
    left_waiting: int | None


async def _one(
    name: str, n: int, rate: float, burst: int, window: float, profile: Profile | None = None
) -> _Run:
    cm: AsyncCM
    ours: AdaptiveLimiter | None = None
    if name == OURS:
        ours = AdaptiveLimiter("b", rate=rate, burst=burst, initial_tokens=0)
        cm = ours
    else:
        theirs = AsyncLimiter(max_rate=burst, time_period=burst / rate)
        await theirs.acquire(burst)
        cm = theirs
    started = 0
    granted = 0

    async def task() -> None:
        nonlocal started, granted
        started += 1
        async with cm:
            granted += 1

    perf = time.perf_counter
    cpu = time.process_time
    wall0, cpu0 = perf(), cpu()
    tasks = [asyncio.create_task(task()) for _ in range(n)]
    for _ in range(n + 10):  # one pass of the loop normally starts them all
        if started >= n:
            break
        await asyncio.sleep(0)
    assert started == n, f"only {started} of {n} waiters started"
    await asyncio.sleep(0)  # the last ones to queue have parked
    queue_wall, queue_cpu = perf() - wall0, cpu() - cpu0

    granted0, wall1, cpu1 = granted, perf(), cpu()
    if profile is not None:
        profile.enable()
    await asyncio.sleep(window)
    if profile is not None:
        profile.disable()
    grants, wall2, cpu2 = granted - granted0, perf(), cpu()
    assert granted < n, "the queue ran dry inside the window: use more waiters"

    wall3 = perf()
    await cancel_all(tasks)
    cancel_wall = perf() - wall3
    return _Run(
        queue_wall=queue_wall,
        queue_cpu_per_waiter=queue_cpu / n,
        grants=grants,
        grant_fraction=grants / (rate * (wall2 - wall1)),
        cpu_per_grant=(cpu2 - cpu1) / grants if grants else float("inf"),
        cancel_wall=cancel_wall,
        left_waiting=None if ours is None else ours.waiting,
    )


async def _timer_floor(rate: float, window: float) -> float:
    """CPU per wake of one task sleeping to a deadline every 1/rate s: one timer per grant."""
    loop = asyncio.get_running_loop()
    wakes = 0
    cpu0 = time.process_time()
    due = start = loop.time()
    while due - start < window:
        due += 1 / rate
        await asyncio.sleep(due - loop.time())
        wakes += 1
    return (time.process_time() - cpu0) / wakes


def run(
    sizes: tuple[int, int] = (5_000, 100_000),
    repeats: int = 3,
    rate: float = 2_000.0,
    burst: int = 20,
    window: float = 1.0,
) -> Section:
    small, big = sizes
    rows: list[Row] = []
    cpu: dict[tuple[str, int], float] = {}
    for name in CONTENDERS:  # warm up: lazy imports and first-use costs stay out of the figures
        asyncio.run(_one(name, 20, 1_000.0, 2, 0.005))
    floor = median([asyncio.run(_timer_floor(rate, window)) for _ in range(repeats)])
    rows.append(
        {
            "waiters": 0,
            "contender": FLOOR,
            "CPU us/grant": floor * 1e6,
            "grants in window": None,
            "grants / rate*window": None,
            "queue s": None,
            "queue CPU us/waiter": None,
            "cancel s": None,
            "waiting after cancel": None,
        }
    )
    for n in sizes:
        runs: dict[str, list[_Run]] = {name: [] for name in CONTENDERS}
        for r in range(repeats):
            for name in rotated(CONTENDERS, r):
                collect()
                runs[name].append(asyncio.run(_one(name, n, rate, burst, window)))
        progress(f"waiters N={n:,} done")
        for name in CONTENDERS:
            got = runs[name]
            cpu[name, n] = median([x.cpu_per_grant for x in got])
            lefts = [x.left_waiting for x in got if x.left_waiting is not None]
            rows.append(
                {
                    "waiters": n,
                    "contender": name,
                    "CPU us/grant": cpu[name, n] * 1e6,
                    "grants in window": int(median([x.grants for x in got])),
                    "grants / rate*window": median([x.grant_fraction for x in got]),
                    "queue s": median([x.queue_wall for x in got]),
                    "queue CPU us/waiter": median([x.queue_cpu_per_waiter for x in got]) * 1e6,
                    "cancel s": median([x.cancel_wall for x in got]),
                    "waiting after cancel": max(lefts) if lefts else None,
                }
            )
    checks = [
        Check(
            f"ours: CPU/grant {big:,} / {small:,} waiters",
            cpu[OURS, big] / cpu[OURS, small],
            high=1.3,
        ),
        Check(
            f"aiolimiter: CPU/grant {big:,} / {small:,} waiters",
            cpu[AIOLIMITER, big] / cpu[AIOLIMITER, small],
        ),
        Check(
            f"CPU/grant ours / aiolimiter at {big:,}",
            cpu[OURS, big] / cpu[AIOLIMITER, big],
            high=0.25,
        ),
        Check(
            f"CPU/grant ours / aiolimiter at {small:,}", cpu[OURS, small] / cpu[AIOLIMITER, small]
        ),
        Check(f"CPU/grant ours at {big:,} / timer floor", cpu[OURS, big] / floor),
        Check(f"CPU/grant aiolimiter at {big:,} / timer floor", cpu[AIOLIMITER, big] / floor),
    ]
    return Section(
        key="waiters",
        title=f"3. Waiter scaling: {small:,} versus {big:,} queued waiters at {rate:g}/s",
        method=(
            f"N tasks queue on a limiter at {rate:g}/s, burst {burst}, started empty; once all "
            f"have reached their wait, process_time over a {window:g} s window of grants / the "
            f"grants counted in it.  Then every remaining waiter is cancelled (timed).  Medians of "
            f"{repeats} repeats (rotating order, a fresh event loop each, GC on)."
        ),
        params={
            "sizes": f"{small},{big}",
            "repeats": repeats,
            "rate": rate,
            "burst": burst,
            "window_s": window,
        },
        columns=(
            "waiters",
            "contender",
            "CPU us/grant",
            "grants in window",
            "grants / rate*window",
            "queue s",
            "queue CPU us/waiter",
            "cancel s",
            "waiting after cancel",
        ),
        rows=rows,
        checks=checks,
        notes=[
            f"admission: AdaptiveLimiter('b', rate={rate:g}, burst={burst}, initial_tokens=0); "
            f"aiolimiter: AsyncLimiter(max_rate={burst}, time_period={burst / rate:g}), "
            f"drained by acquire({burst}).",
            f"timer floor: one task sleeping to a deadline every 1/{rate:g} s, no limiter and "
            "no waiters: the CPU per grant of any design that takes one timer wake per grant.",
        ],
        formats={
            "CPU us/grant": ".2f",
            "grants / rate*window": ".3f",
            "queue s": ".3f",
            "queue CPU us/waiter": ".2f",
            "cancel s": ".3f",
        },
    )
