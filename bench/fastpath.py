"""Benchmark 1: the uncontended fast path, ``async with X:`` in a tight loop.

Contenders: a no-op async context manager class (the floor), ``asyncio.Semaphore``
with a huge value, ``aiolimiter.AsyncLimiter`` with a huge rate, and an
``AdaptiveLimiter`` with rate, burst and concurrency cap set but never limiting.
All four run in the same event loop, in a rotating order, ``repeats`` times; the
garbage collector is off during each timed loop (as :mod:`timeit` does).  Ratios
use each contender's best repeat, the least disturbed by a shared machine.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from admission import AdaptiveLimiter
from bench._common import AsyncCM, Check, NoopCM, Row, Section, best, median, rotated

__all__ = ["CONTENDERS", "run"]

NOOP = "no-op CM"
SEMAPHORE = "asyncio.Semaphore"
AIOLIMITER = "aiolimiter"
OURS = "admission"

CONTENDERS: dict[str, Callable[[], AsyncCM]] = {
    NOOP: NoopCM,
    SEMAPHORE: lambda: asyncio.Semaphore(10**9),
    AIOLIMITER: lambda: AsyncLimiter(1e12, 1),
    OURS: lambda: AdaptiveLimiter("b", rate=1e12, burst=1e12, max_concurrency=10**9),
}


async def _loop(cm: AsyncCM, iterations: int) -> float:
    """Seconds per ``async with cm: pass``."""
    perf = time.perf_counter
    start = perf()
    for _ in range(iterations):
        async with cm:
            pass
    return (perf() - start) / iterations


async def _round(iterations: int, order: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in order:
        cm = CONTENDERS[name]()
        await _loop(cm, min(iterations, 2_000))  # warm up (and bind aiolimiter's loop)
        gc.collect()
        gc.disable()
        try:
            out[name] = await _loop(cm, iterations)
        finally:
            gc.enable()
    return out


def run(iterations: int = 200_000, repeats: int = 7) -> Section:
    names = list(CONTENDERS)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name, seconds in asyncio.run(_round(iterations, rotated(names, r))).items():
            samples[name].append(seconds * 1e9)
    best_ns = {name: best(samples[name]) for name in names}
    floor = best_ns[NOOP]
    rows: list[Row] = [
        {
            "contender": name,
            "best ns/op": best_ns[name],
            "median ns/op": median(samples[name]),
            "worst ns/op": max(samples[name]),
            "best / no-op": best_ns[name] / floor,
        }
        for name in names
    ]
    ours = best_ns[OURS]
    checks = [
        Check("ours / asyncio.Semaphore (ns/op)", ours / best_ns[SEMAPHORE], high=0.75),
        Check("ours / no-op CM (ns/op)", ours / floor, high=1.6),
        Check("ours / aiolimiter (ns/op)", ours / best_ns[AIOLIMITER]),
        Check("asyncio.Semaphore / no-op CM (ns/op)", best_ns[SEMAPHORE] / floor),
    ]
    return Section(
        key="fastpath",
        title="1. Uncontended fast path: `async with X:` in a tight loop",
        method=(
            f"{iterations:,} iterations of `async with X: pass` per contender, {repeats} repeats "
            "in rotating order, one event loop per repeat, GC off while timing; wall time by "
            "time.perf_counter.  Ratios use each contender's best repeat."
        ),
        params={"iterations": iterations, "repeats": repeats},
        columns=("contender", "best ns/op", "median ns/op", "worst ns/op", "best / no-op"),
        rows=rows,
        checks=checks,
        notes=[
            "admission: AdaptiveLimiter('b', rate=1e12, burst=1e12, max_concurrency=10**9); "
            "aiolimiter: AsyncLimiter(1e12, 1); Semaphore(10**9).",
        ],
        formats={
            "best ns/op": ".0f",
            "median ns/op": ".0f",
            "worst ns/op": ".0f",
            "best / no-op": ".2f",
        },
    )
