"""The one timer of a workflow admission: execution limits, slept on the clock."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import anyio

from admission.clock import Clock
from integrations.document_conversion.records import WorkflowSlot

# A deadline this close counts as passed: float sums must not cost a second sleep.
_SLACK = 1e-9


class Deadlines:
    """Slots by deadline; :meth:`watch` interrupts each one still held past it."""

    __slots__ = ("_clock", "_heap", "_seq", "_timer_at", "_timer_scope")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, WorkflowSlot]] = []
        self._seq = itertools.count()
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_at: float | None = None

    def add(self, slot: WorkflowSlot) -> None:
        if slot.deadline is None:
            return
        heapq.heappush(self._heap, (slot.deadline, next(self._seq), slot))
        if self._timer_scope is not None and (
            self._timer_at is None or slot.deadline < self._timer_at
        ):
            self._timer_scope.cancel()  # the watcher re-plans at once

    async def watch(self, held: Callable[[], int]) -> None:
        """Sleep until the earliest deadline, interrupt what passed it; until cancelled.

        ``held`` counts the slots held now (finished ones are dropped lazily).
        """
        heap = self._heap
        while True:
            now = self._clock.monotonic()
            while heap and (heap[0][2].released or heap[0][0] <= now + _SLACK):
                slot = heapq.heappop(heap)[2]
                if not slot.released:
                    slot.expired = True
                    slot._scope.cancel()
            if len(heap) > 64 + 2 * held():
                # Finished workflows linger until their deadline comes up: drop them.
                heap[:] = [entry for entry in heap if not entry[2].released]
                heapq.heapify(heap)
            next_at = heap[0][0] if heap else None
            with anyio.CancelScope() as scope:
                self._timer_scope, self._timer_at = scope, next_at
                try:
                    if next_at is None:
                        await anyio.sleep_forever()
                    else:
                        await self._clock.sleep(next_at - now)
                finally:
                    self._timer_scope = self._timer_at = None
