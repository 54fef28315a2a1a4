"""Benchmark 2: N tasks started at once, each ``async with limiter:`` around nothing.

The limiter's burst is N/2 and its rate N/2 per ``span`` seconds (per second in the
full run), so the burst admits half at once and the other half ideally takes
``span``: the ideal first-to-last grant span is ``(N - burst) / rate``.  Each task
stamps ``time.perf_counter()`` when it is admitted.

- achieved rate = ideal span / measured span; conformance (``burst + rate * T``)
  caps it at 1.0, and the target is 0.95 .. 1.0;
- CPU per grant = ``time.process_time()`` over the whole run (creating the tasks
  to the last one finishing) / N, against the same tasks on a no-op context
  manager (the floor) and on ``aiolimiter.AsyncLimiter(N/2, span)``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from admission import AdaptiveLimiter
from bench._common import (
    AsyncCM,
    Check,
    NoopCM,
    Row,
    Section,
    collect,
    median,
    progress,
    rotated,
)

__all__ = ["CONFORMANCE_SLACK", "run"]

NOOP = "no-op CM"
AIOLIMITER = "aiolimiter"
OURS = "admission"
CONTENDERS = (NOOP, AIOLIMITER, OURS)

#: Float slack when checking "achieved rate <= 1.0": far below anything measurable.
CONFORMANCE_SLACK = 1e-6


@dataclass(frozen=True)
class _Run:
    achieved: float | None
    cpu_per_grant: float
    wall: float


def _make(name: str, burst: float, rate: float) -> AsyncCM:
    if name == AIOLIMITER:
        return AsyncLimiter(max_rate=burst, time_period=burst / rate)
    if name == OURS:
        return AdaptiveLimiter("b", rate=rate, burst=burst)
    return NoopCM()


async def _one(name: str, n: int, span: float) -> _Run:
    burst = n / 2
    rate = burst / span
    cm = _make(name, burst, rate)
    stamps: list[float] = []
    stamp = stamps.append
    perf = time.perf_counter

    async def task() -> None:
        async with cm:
            stamp(perf())

    cpu0 = time.process_time()
    wall0 = perf()
    tasks = [asyncio.create_task(task()) for _ in range(n)]
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu0
    wall = perf() - wall0
    assert len(stamps) == n
    achieved = None
    if name != NOOP:
        measured = max(stamps) - min(stamps)
        ideal = (n - burst) / rate
        achieved = ideal / measured if measured > 0 else float("inf")
    return _Run(achieved, cpu / n, wall)


def run(
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
    repeats: int = 3,
    span: float = 1.0,
) -> Section:
    rows: list[Row] = []
    checks: list[Check] = []
    largest = max(sizes)
    for name in CONTENDERS:  # warm up: lazy imports and first-use costs stay out of the figures
        asyncio.run(_one(name, 20, 0.01))
    for n in sizes:
        runs: dict[str, list[_Run]] = {name: [] for name in CONTENDERS}
        for r in range(repeats):
            for name in rotated(CONTENDERS, r):
                collect()
                runs[name].append(asyncio.run(_one(name, n, span)))
        progress(f"contended N={n:,} done")
        cpu = {name: median([x.cpu_per_grant for x in runs[name]]) for name in CONTENDERS}
        achieved: dict[str, list[float]] = {
            name: [x.achieved for x in runs[name] if x.achieved is not None] for name in CONTENDERS
        }
        for name in CONTENDERS:
            got = achieved[name]
            rows.append(
                {
                    "N": n,
                    "contender": name,
                    "CPU us/grant": cpu[name] * 1e6,
                    "CPU / no-op": cpu[name] / cpu[NOOP],
                    "achieved (median)": median(got) if got else None,
                    "achieved (min)": min(got) if got else None,
                    "achieved (max)": max(got) if got else None,
                    "wall s": median([x.wall for x in runs[name]]),
                }
            )
        checks += [
            Check(f"N={n:,}: ours achieved rate (median)", median(achieved[OURS]), 0.95, 1.0),
            Check(
                f"N={n:,}: ours achieved rate (max), conformance",
                max(achieved[OURS]),
                high=1.0 + CONFORMANCE_SLACK,
            ),
            Check(
                f"N={n:,}: CPU/grant ours / aiolimiter",
                cpu[OURS] / cpu[AIOLIMITER],
                high=0.75 if n == largest else None,
            ),
            Check(f"N={n:,}: CPU/grant ours / no-op", cpu[OURS] / cpu[NOOP]),
        ]
    return Section(
        key="contended",
        title="2. Contended: N tasks at once on rate = burst = N/2 per second",
        method=(
            f"N tasks created at once, each `async with X:` stamping perf_counter at grant; "
            f"burst N/2, rate N/2 per {span:g} s, so the ideal first-to-last grant span is "
            f"{span:g} s.  achieved = ideal span / measured span.  CPU/grant = process_time "
            f"from creating the tasks to the last finishing, / N.  Medians of {repeats} repeats "
            "(rotating order, a fresh event loop each, GC on, collected before each run)."
        ),
        params={"sizes": ",".join(map(str, sizes)), "repeats": repeats, "span_s": span},
        columns=(
            "N",
            "contender",
            "CPU us/grant",
            "CPU / no-op",
            "achieved (median)",
            "achieved (min)",
            "achieved (max)",
            "wall s",
        ),
        rows=rows,
        checks=checks,
        notes=[
            "admission: AdaptiveLimiter('b', rate=N/2, burst=N/2); "
            "aiolimiter: AsyncLimiter(max_rate=N/2, time_period=1).",
            "The target on CPU/grant (<= 0.75x aiolimiter) applies at the largest N only.",
        ],
        formats={
            "CPU us/grant": ".2f",
            "CPU / no-op": ".2f",
            "achieved (median)": ".5f",
            "achieved (min)": ".5f",
            "achieved (max)": ".5f",
            "wall s": ".3f",
        },
    )
