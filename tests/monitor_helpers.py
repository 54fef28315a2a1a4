"""A governed pipeline on the virtual clock: registry, one limiter, a memory source.

The balanced preset watches ``files-new_file`` (warning 50, critical 120,
sustained 60 s, cooldown 120 s, stale after 15 s, 3 failures, polled every 5 s).
Its ``expensive`` class runs at rate 2 (normal), 1 (warning), 0.5 (critical);
fail-safe gives conservative's critical rate, 0.25.
"""

from __future__ import annotations

from dataclasses import dataclass

from admission import AdaptiveLimiter, WorkloadClass
from admission.monitor import PressureMonitor
from admission.policy import parse_config
from admission.registry import Registry
from admission.telemetry.memory import MemorySource
from admission.testing import VirtualClock

NEW_FILE = "files-new_file"
TITUS = "titus-titus_input"
RATE = {"normal": 2.0, "warning": 1.0, "critical": 0.5, "fail_safe": 0.25}


@dataclass
class Pipeline:
    clock: VirtualClock
    registry: Registry
    limiter: AdaptiveLimiter
    source: MemorySource
    monitor: PressureMonitor

    def expensive_rate(self) -> float | None:
        return self.limiter.snapshot().workload_class("expensive").rate

    def level(self, queue: str = NEW_FILE) -> str:
        return self.registry.status().queue(queue).severity

    async def until(self, at: float) -> None:
        """Advance the virtual clock to the absolute instant ``at``."""
        await self.clock.advance(at - self.clock.monotonic())


def pipeline(
    clock: VirtualClock, *queues: str, preset: str = "balanced", **monitor: object
) -> Pipeline:
    names = queues or (NEW_FILE,)
    config = parse_config({"preset": preset, "queues": [{"name": q} for q in names]})
    registry = Registry(config, clock=clock)
    limiter = AdaptiveLimiter(
        "file_enrichment",
        rate=100,
        burst=100,
        max_concurrency=10,
        classes=[WorkloadClass("standard"), WorkloadClass("expensive")],
        clock=clock,
    )
    registry.add_limiter(limiter)
    source = MemorySource()
    for name in names:
        source.set(name, 0, unacked=0, consumers=1)
    options: dict[str, object] = {"jitter": 0.0, **monitor}
    return Pipeline(
        clock,
        registry,
        limiter,
        source,
        PressureMonitor(source, registry=registry, **options),  # type: ignore[arg-type]
    )
