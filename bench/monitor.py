"""Benchmark 6: the pressure monitor's overhead.

- tick cost: one ``PressureMonitor.tick()`` (read every queue, step the engine,
  record transitions, retune) over Q queues of a ``MemorySource`` whose ready
  counts swing through the thresholds, so windows open and levels move; and,
  where the machine's RabbitMQ answers, over 20 real queues through
  ``RabbitMQManagementSource`` (network included).
- admission throughput beside the monitor: W worker tasks loop ``async with
  limiter.admit(workload_class=...)`` on a governed limiter for S seconds, with
  no monitor, then with a monitor polling Q memory queues every I seconds on
  the system clock (its retunes land on the same limiter).  The cost is
  1 - (admissions/s with) / (admissions/s without); the target is < 5 %.
  Runs alternate, best of the repeats.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from admission import AdaptiveLimiter, WorkloadClass
from admission.clock import SystemClock
from admission.monitor import PressureMonitor
from admission.policy import parse_config
from admission.registry import Registry
from admission.telemetry.memory import MemorySource
from bench._common import Check, Row, Section, best, collect, median, progress

__all__ = ["run"]


# The preset's class limits are a few admissions per second; the benchmark wants
# the limiter's own cost, so its standard class is out of reach at every level
# (the expensive class still moves with the levels, so retunes still happen).
_OPEN = {"parallelism": 100_000, "rate": 1e9, "burst": 1e9}
_BENCH_PRESET = {
    "extends": "balanced",
    "classes": {"standard": {"normal": _OPEN, "warning": _OPEN, "critical": _OPEN}},
}


def _governed(queues: int) -> tuple[Registry, AdaptiveLimiter, MemorySource, list[str]]:
    names = [f"q{i:04d}" for i in range(queues)]
    config = parse_config(
        {
            "preset": "bench",
            "presets": {"bench": _BENCH_PRESET},
            "queues": [{"name": n} for n in names],
        }
    )
    registry = Registry(config, clock=SystemClock())
    limiter = AdaptiveLimiter(
        "bench",
        rate=1e9,
        burst=1e9,
        classes=[WorkloadClass("standard"), WorkloadClass("expensive")],
        clock=SystemClock(),
    )
    registry.add_limiter(limiter)
    source = MemorySource()
    return registry, limiter, source, names


def _swing(source: MemorySource, names: list[str], step: int) -> None:
    for i, name in enumerate(names):
        source.set(name, int(100 + 90 * math.sin((step + i) / 7.0)), unacked=3, consumers=2)


async def _tick_cost(queues: int, ticks: int) -> float:
    registry, _, source, names = _governed(queues)
    monitor = PressureMonitor(source, registry=registry, jitter=0.0, close_source=False)
    registry.watch(names)
    spans = []
    for step in range(ticks):
        _swing(source, names, step)
        start = time.perf_counter()
        await monitor.tick()
        spans.append(time.perf_counter() - start)
    return median(spans[ticks // 4 :])


async def _rabbitmq_tick(queues: int, ticks: int) -> float | None:
    try:
        import aio_pika

        from admission.telemetry import RabbitMQManagementSource
    except ImportError:
        return None
    try:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/", timeout=3)
    except Exception:
        return None
    suffix = uuid.uuid4().hex[:8]
    names = [f"bench-monitor-{i}-{suffix}" for i in range(queues)]
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.declare_queue(name, auto_delete=False)
        try:
            config = parse_config({"queues": [{"name": n} for n in names]})
            registry = Registry(config, clock=SystemClock())
            source = RabbitMQManagementSource(password="guest")
            monitor = PressureMonitor(source, registry=registry, jitter=0.0)
            # A new queue has no figures until the broker's next stats round (~5 s).
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                answers = await source.read(names, now=0.0)
                if all(hasattr(a, "messages_ready") for a in answers.values()):
                    break
                await asyncio.sleep(0.5)
            spans = []
            for _ in range(ticks):
                start = time.perf_counter()
                await monitor.tick()
                spans.append(time.perf_counter() - start)
            await source.aclose()
            failed = any(q.consecutive_failures for q in registry.state.queues.values())
            return None if failed else median(spans[1:])
        finally:
            for name in names:
                await channel.queue_delete(name)


async def _admissions(limiter: AdaptiveLimiter, workers: int, seconds: float) -> int:
    count = 0
    stop = time.perf_counter() + seconds

    async def worker(workload_class: str) -> None:
        nonlocal count
        admit = limiter.admit
        while time.perf_counter() < stop:
            for _ in range(50):
                async with admit(workload_class=workload_class):
                    pass
            count += 50
            await asyncio.sleep(0)

    await asyncio.gather(*(worker("standard") for _ in range(workers)))
    return count


async def _throughput(
    queues: int, workers: int, seconds: float, interval: float | None
) -> tuple[float, int]:
    registry, limiter, source, names = _governed(queues)
    _swing(source, names, 0)
    ticks = 0

    async def run_with(body: Callable[[], Awaitable[int]]) -> int:
        nonlocal ticks
        if interval is None:
            return await body()
        monitor = PressureMonitor(source, registry=registry, queues=names, interval=interval)

        async def swinging() -> int:
            task = asyncio.ensure_future(body())
            step = 0
            while not task.done():
                step += 1
                _swing(source, names, step)
                await asyncio.sleep(interval)
            return task.result()

        async with monitor:
            result = await swinging()
            ticks = monitor.statistics().ticks
        return result

    collect()
    start = time.perf_counter()
    count = await run_with(lambda: _admissions(limiter, workers, seconds))
    return count / (time.perf_counter() - start), ticks


def _quiet() -> dict[str, Any]:
    """Silence the library's events for the run (a benchmark measures, it does not log)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    return saved


def run(
    *,
    tick_queues: int = 100,
    ticks: int = 200,
    rabbit_queues: int = 20,
    rabbit_ticks: int = 10,
    workers: int = 8,
    seconds: float = 3.0,
    interval: float = 1.0,
    repeats: int = 5,
) -> Section:
    saved = _quiet()
    try:
        return _run(
            tick_queues, ticks, rabbit_queues, rabbit_ticks, workers, seconds, interval, repeats
        )
    finally:
        structlog.configure(**saved)


def _run(
    tick_queues: int,
    ticks: int,
    rabbit_queues: int,
    rabbit_ticks: int,
    workers: int,
    seconds: float,
    interval: float,
    repeats: int,
) -> Section:
    progress("monitor: tick cost")
    tick = asyncio.run(_tick_cost(tick_queues, ticks))
    rabbit = asyncio.run(_rabbitmq_tick(rabbit_queues, rabbit_ticks)) if rabbit_queues else None
    without: list[float] = []
    with_monitor: list[float] = []
    ticked = 0
    for r in range(repeats):
        progress(f"monitor: throughput repeat {r + 1}/{repeats}")
        order = (None, interval) if r % 2 == 0 else (interval, None)
        for every in order:
            rate, n = asyncio.run(_throughput(tick_queues, workers, seconds, every))
            (without if every is None else with_monitor).append(rate)
            ticked = max(ticked, n)
    cost = 1.0 - best(with_monitor) / best(without)
    rows: list[Row] = [
        {
            "measurement": f"tick, {tick_queues} memory queues",
            "value": tick * 1e6,
            "unit": "us / tick",
        },
        {
            "measurement": f"tick, {tick_queues} memory queues, per queue",
            "value": tick * 1e6 / tick_queues,
            "unit": "us / queue",
        },
        {
            "measurement": f"tick, {rabbit_queues} real RabbitMQ queues",
            "value": None if rabbit is None else rabbit * 1e3,
            "unit": "ms / tick",
        },
        {
            "measurement": "admissions/s, no monitor (best)",
            "value": best(without),
            "unit": "1/s",
        },
        {
            "measurement": f"admissions/s, monitor every {interval:g} s (best)",
            "value": best(with_monitor),
            "unit": "1/s",
        },
        {
            "measurement": "admissions/s, no monitor (median)",
            "value": median(without),
            "unit": "1/s",
        },
        {
            "measurement": f"admissions/s, monitor every {interval:g} s (median)",
            "value": median(with_monitor),
            "unit": "1/s",
        },
    ]
    notes = [
        f"the monitor ticked {ticked} times in the longest run with it "
        f"({tick_queues} queues swinging through the thresholds)",
    ]
    if rabbit is None:
        notes.append("RabbitMQ was not reachable: the real-queue tick was not measured")
    return Section(
        key="monitor",
        title="6. Pressure monitor overhead",
        method=(
            f"(a) median PressureMonitor.tick() over {tick_queues} MemorySource queues swinging "
            f"through the thresholds ({ticks} ticks), and over {rabbit_queues} real RabbitMQ "
            f"queues via the management API ({rabbit_ticks} ticks). (b) {workers} tasks "
            f"looping `async with limiter.admit()` for {seconds:g} s on a governed limiter, "
            f"without and with a monitor polling every {interval:g} s on the system clock, "
            f"{repeats} alternating repeats, best of each."
        ),
        params={
            "tick_queues": tick_queues,
            "rabbit_queues": rabbit_queues,
            "workers": workers,
            "seconds": seconds,
            "interval": interval,
            "repeats": repeats,
        },
        columns=("measurement", "value", "unit"),
        rows=rows,
        checks=[Check("monitor cost: 1 - with/without admissions/s", cost, high=0.05)],
        notes=notes,
        formats={"value": ",.1f"},
    )
