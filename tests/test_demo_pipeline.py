"""The demo's pipeline on the virtual clock: it ends settled, however far behind it fell."""

from __future__ import annotations

import anyio
import pytest

from admission.demo.broker import MemoryBroker
from admission.demo.pipeline import SETTLE_LIMIT, Pipeline
from admission.demo.scenario import QUEUES, Scenario
from admission.policy import parse_config
from admission.registry import Registry
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


async def _play(clock: VirtualClock, duration: float) -> tuple[Pipeline, float, bool]:
    """Play the scenario; the pipeline, when ``play`` returned, and whether it had settled."""
    registry = Registry(parse_config({"preset": "balanced"}), clock=clock)
    pipeline = Pipeline(Scenario.build(duration), MemoryBroker(QUEUES), registry)
    ended: list[tuple[float, bool]] = []
    async with pipeline:

        async def play() -> None:
            await pipeline.play()
            ended.append((pipeline.now(), pipeline.settled()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(play)
            while not ended:
                await clock.advance(1.0)
    return pipeline, *ended[0]


async def test_the_full_scenario_settles_by_its_end(admission_clock: VirtualClock) -> None:
    pipeline, ended, settled = await _play(admission_clock, 600.0)
    assert ended == pytest.approx(600.0, abs=1.0)
    assert settled
    assert all(a.lost == 0 and a.still_queued == 0 for a in pipeline.accounts)


async def test_a_scenario_that_ends_under_pressure_runs_on_until_it_settles(
    admission_clock: VirtualClock,
) -> None:
    # Squeezed into 300 s, the burst ends too late for the 120 s cooldown to run:
    # a machine that falls behind the scaled clock lands in the same place.
    pipeline, ended, settled = await _play(admission_clock, 300.0)
    assert 300.0 + 60.0 < ended < 300.0 + SETTLE_LIMIT
    assert settled
    last = [t for t in pipeline.registry.transitions() if t.scope == "queue"][-1]
    assert (last.to_level, last.reason) == ("normal", "cooldown_elapsed")
    assert all(a.lost == 0 and a.still_queued == 0 for a in pipeline.accounts)
