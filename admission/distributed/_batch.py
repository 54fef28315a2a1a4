"""Which waiters one round trip asks tokens for: the head and those behind it that could start."""

from __future__ import annotations

import math

from admission._partition import WAITING, Partition, Waiter
from admission._scheduler import Scheduler

__all__ = ["MAX_BATCH", "batch"]

#: The most waiters one round trip asks tokens for.
MAX_BATCH = 64


def batch(limiter: Scheduler, head: Waiter, now: float) -> list[float]:
    """The costs of ``head`` and of those behind it in its class that could start with it.

    One round trip then admits a crowd; a guess too generous costs a refund.
    """
    part = head.partition
    room = min(MAX_BATCH, _free_slots(limiter, part))
    class_tokens = part.bucket.peek(now) if part.bucket is not None else math.inf
    costs: list[float] = []
    total = 0.0
    for waiter in part.queue:
        if len(costs) >= room:
            break
        if waiter.state != WAITING:
            continue
        total += waiter.cost
        if costs and total > class_tokens:
            break
        costs.append(waiter.cost)
    return costs


def _free_slots(limiter: Scheduler, part: Partition) -> float:
    """How many permits ``part`` could start now (the rules of ``_slot_free``)."""
    free = math.inf
    if part.max_concurrency is not None:
        free = part.max_concurrency - part.in_flight
    cap = limiter._max_concurrency
    if cap is not None:
        reserved = sum(
            other.unmet_floor()
            for other in limiter._partitions.values()
            if other is not part and other.minimum_floor
        )
        free = min(free, cap - limiter._total_in_flight() - reserved)
    return max(1.0, free)
