"""The demo's recorder: the registry's status every few scenario seconds.

The samples feed the live view, the timeline plot and the tests, which wait on
them (``await recorder.wait_until(lambda s: s.headline == "fail_safe")``)
instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.abc import TaskStatus

from admission.demo.pipeline import Pipeline
from admission.status import Status

__all__ = ["LEVEL_RANK", "Figures", "Recorder", "Sample", "headline"]

#: Levels from calm to blind: fail-safe outranks critical (its limits are the strictest).
LEVEL_RANK: Final = {"normal": 0, "warning": 1, "critical": 2, "fail_safe": 3}


def headline(status: Status) -> str:
    """The pipeline's level in one word: ``fail_safe`` if any queue is, else the top level."""
    return "fail_safe" if status.fail_safe else status.queue_pressure_level


@dataclass(frozen=True, slots=True)
class Figures:
    """The pipeline's counters at one instant."""

    produced: int
    processed: dict[str, int]
    redelivered: dict[str, int]
    handed_back: dict[str, int]


@dataclass(frozen=True, slots=True)
class Sample:
    """The status at scenario time ``t``, the phase running, the counters."""

    index: int
    t: float
    phase: str
    outage: bool
    status: Status
    figures: Figures

    @property
    def headline(self) -> str:
        return headline(self.status)


class Recorder:
    """Samples ``pipeline``'s registry every ``every`` scenario seconds while it runs."""

    def __init__(self, pipeline: Pipeline, *, every: float = 2.0) -> None:
        if not (isinstance(every, int | float) and 0 < every < float("inf")):
            raise ValueError(f"every must be a positive number of seconds, got {every!r}")
        self.pipeline = pipeline
        self.every = float(every)
        self.samples: list[Sample] = []
        self.closed = False
        self._new = anyio.Event()
        self._scope: anyio.CancelScope | None = None

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def take(self) -> Sample:
        """Record one sample now (the run loop calls it; so does the demo at its end)."""
        pipeline = self.pipeline
        t = pipeline.now()
        stats = pipeline.stats.values()
        figures = Figures(
            produced=pipeline.published[pipeline.stats["file_enrichment"].queue],
            processed={s.stage: s.processed for s in stats},
            redelivered={s.stage: s.redelivered for s in stats},
            handed_back={s.stage: sum(s.handed_back.values()) for s in stats},
        )
        sample = Sample(
            len(self.samples),
            t,
            pipeline.scenario.phase_at(t).name,
            pipeline.outage,
            pipeline.registry.status(),
            figures,
        )
        self.samples.append(sample)
        self._new.set()
        self._new = anyio.Event()
        return sample

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Sample at once, then every ``every`` seconds (on the tick, no drift) until cancelled."""
        clock = self.pipeline.clock
        start = clock.monotonic()
        with anyio.CancelScope() as self._scope:
            self.take()
            task_status.started()
            ticks = 0
            while not self.closed:
                ticks += 1
                await clock.sleep(max(0.0, start + ticks * self.every - clock.monotonic()))
                self.take()

    def close(self) -> None:
        """Stop sampling: whoever waits for a sample past the last gets ``EOFError``."""
        self.closed = True
        self._new.set()
        if self._scope is not None:
            self._scope.cancel()

    async def next_after(self, index: int) -> Sample:
        """The first sample after number ``index`` (waiting for it; ``EOFError`` once closed)."""
        while len(self.samples) <= index + 1:
            if self.closed:
                raise EOFError("the demo has ended: no more samples")
            await self._new.wait()
        return self.samples[index + 1]

    async def wait_until(self, predicate: Callable[[Sample], bool]) -> Sample:
        """The first sample, from now on, for which ``predicate`` holds."""
        index = len(self.samples) - 1
        while True:
            sample = await self.next_after(index)
            if predicate(sample):
                return sample
            index = sample.index
