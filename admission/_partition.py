"""The mutable insides of a limiter: waiters and the per-class partitions."""

from __future__ import annotations

from collections import deque
from typing import Final

import anyio

from admission.bucket import TokenBucket
from admission.classes import WorkloadClass

WAITING: Final = 0
GRANTED: Final = 1
TIMED_OUT: Final = 2
FAILED: Final = 3
CANCELLED: Final = 4

#: How many recent admissions each class keeps for its wait percentiles.
WAIT_WINDOW: Final = 1024


class Waiter:
    """One queued request.  Its state moves once, away from ``WAITING``."""

    __slots__ = (
        "cost",
        "deadline",
        "enqueued_at",
        "error",
        "event",
        "partition",
        "retry_after",
        "seq",
        "state",
        "tag",
        "waited",
    )

    def __init__(self, partition: Partition, cost: float, seq: int, tag: float, now: float) -> None:
        self.partition = partition
        self.cost = cost
        self.seq = seq
        self.tag = tag
        self.enqueued_at = now
        self.state = WAITING
        self.event: anyio.Event | None = None
        self.deadline: float | None = None
        self.retry_after = 0.0
        self.waited = 0.0
        self.error: BaseException | None = None

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


class Partition:
    """The running state of one workload class."""

    __slots__ = (
        "admitted_total",
        "bucket",
        "cancelled_total",
        "in_flight",
        "last_finish",
        "max_concurrency",
        "minimum_floor",
        "name",
        "queue",
        "rejected_total",
        "share",
        "timed_out_total",
        "waiting",
        "waits",
    )

    def __init__(self, spec: WorkloadClass, now: float) -> None:
        self.name = spec.name
        self.share = spec.share
        self.minimum_floor = spec.minimum_floor
        self.max_concurrency = spec.max_concurrency
        self.bucket: TokenBucket | None = None
        if spec.rate is not None:
            burst = spec.burst if spec.burst is not None else max(1.0, spec.rate)
            self.bucket = TokenBucket(spec.rate, burst, now=now)
        self.queue: deque[Waiter] = deque()
        self.waiting = 0
        self.in_flight = 0
        self.last_finish = 0.0
        # (admission number, seconds waited) of admissions that queued; the
        # immediate ones are the admission numbers missing here, so the fast
        # path records nothing and the window is still exact.
        self.waits: deque[tuple[int, float]] = deque(maxlen=WAIT_WINDOW)
        self.admitted_total = 0
        self.rejected_total = 0
        self.timed_out_total = 0
        self.cancelled_total = 0

    def head(self) -> Waiter | None:
        """The first live waiter; settled ones left behind are dropped here."""
        queue = self.queue
        while queue:
            waiter = queue[0]
            if waiter.state == WAITING:
                return waiter
            queue.popleft()
        return None

    def recent_waits(self) -> list[float]:
        """Seconds waited by each of the last ``WAIT_WINDOW`` admissions."""
        total = self.admitted_total
        first = total - WAIT_WINDOW
        waited = [wait for number, wait in self.waits if number > first]
        return waited + [0.0] * (min(total, WAIT_WINDOW) - len(waited))

    def unmet_floor(self) -> int:
        return max(0, self.minimum_floor - self.in_flight)
