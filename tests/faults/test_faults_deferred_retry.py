"""A deferred event's ``retry_after`` counts the waiters ahead of it (found by the RabbitMQ faults).

In fail-safe the expensive class is deferred: the gate keeps its floor (one
event) waiting and hands the others back with ``retry_after``.  That estimate
used to be the wait for the *next* token, which the waiter ahead takes; it was
0.0 at the instant that token fell due, and ``amqp_consumer(requeue_delay=...)``
then nacked at once: on the virtual clock the message went round the broker
hundreds of times within one instant.  The estimate is now the wait for the
token after the waiters' ones, as the slot part of it already was.
"""

from __future__ import annotations

import anyio
import pytest
from file_enrichment_helpers import event, registry

from admission.testing import VirtualClock
from integrations.file_enrichment import EXPENSIVE, FileEnrichmentGate, RetryLater

pytestmark = pytest.mark.anyio


async def test_a_deferred_event_retries_after_the_tokens_of_the_waiters_ahead(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()
    # Critical: expensive at rate 0.5, burst 1, one at a time, floor 1, deferred.
    reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600)
    gate = FileEnrichmentGate(reg, max_wait=30)
    started: list[tuple[str, float]] = []

    async def run(path: str) -> None:
        async with gate.admit(event(path)):
            started.append((path, admission_clock.monotonic()))

    async with anyio.create_task_group() as tg:
        await run("a.zip")  # takes the only token
        tg.start_soon(run, "b.zip")  # the floor: waits for the token due at t=2
        await admission_clock.advance(0)
        with pytest.raises(RetryLater) as caught:
            await run("c.zip")
        assert caught.value.reason == "deferred"
        # b takes the token of t=2; c's is the one after: (1 ahead + 1) / 0.5.
        assert caught.value.retry_after == pytest.approx(4.0)
        await admission_clock.advance(2)
        assert started == [("a.zip", 0.0), ("b.zip", 2.0)]
        # What the old estimate (2 s) pointed at is gone to b.
        assert gate.limiter.try_acquire(workload_class=EXPENSIVE) is None
        await admission_clock.advance(2)
        await run("c.zip")  # retried when it said: admitted at once
    assert started[-1] == ("c.zip", 4.0)
