"""The mechanism under :class:`~admission.limiter.AdaptiveLimiter`: queues, grants, one timer.

The public class validates and retunes; this base decides who goes when:

- a waiter may go when its class has a slot (its own cap, the limiter's cap
  less the slots other classes' floors reserve) and its class's bucket has
  the tokens; among those, the smallest start tag (start-time fair queuing by
  ``share``; FIFO within a class) takes the shared bucket's tokens, and if they
  are not there nobody overtakes it;
- one timer: exactly one waiting task (the last in line) sleeps on the clock
  until the next grant or deadline, every other waiter on its own event;
- a waiter leaving with an exception gives back whatever it was granted.
"""

from __future__ import annotations

import heapq
import itertools
import math

import anyio

from admission._partition import (
    CANCELLED,
    FAILED,
    GRANTED,
    TIMED_OUT,
    WAITING,
    Partition,
    Waiter,
)
from admission.bucket import TokenBucket
from admission.clock import Clock
from admission.errors import AdmissionTimeout
from admission.permit import Permit

__all__ = ["Scheduler"]


class Scheduler:
    """Waiters, partitions and the timer of one limiter (no validation here)."""

    __slots__ = (
        "_bucket",
        "_clock",
        "_deadlines",
        "_default",
        "_fast",
        "_max_concurrency",
        "_now",
        "_open",
        "_partitions",
        "_seq",
        "_timer_at",
        "_timer_owner",
        "_timer_scope",
        "_vtime",
        "_waiting",
        "_wake_at",
        "name",
    )

    def __init__(
        self,
        name: str,
        clock: Clock,
        bucket: TokenBucket,
        max_concurrency: int | None,
        partitions: dict[str, Partition],
    ) -> None:
        self.name = name
        self._clock = clock
        self._now = clock.monotonic
        self._bucket = bucket
        self._max_concurrency = max_concurrency
        self._partitions = partitions
        self._default = next(iter(partitions.values()))
        self._fast = self._plain_default()
        self._open = self._fast  # the fast path may run: plain default class, nobody queued
        self._waiting = 0
        self._seq = itertools.count()
        self._vtime = 0.0
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._timer_owner: Waiter | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_at: float | None = None
        self._wake_at: float | None = None

    def _check_cost(self, cost: float, part: Partition) -> float:
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise TypeError(f"cost must be a number, got {cost!r}")
        if not math.isfinite(cost) or cost <= 0:
            raise ValueError(f"cost must be a finite number > 0, got {cost!r}")
        burst = self._burst_limit()
        if cost > burst:
            raise ValueError(f"cost={cost!r} exceeds the burst={burst!r} of limiter {self.name!r}")
        if part.bucket is not None and cost > part.bucket.burst:
            raise ValueError(
                f"cost={cost!r} exceeds the burst={part.bucket.burst!r} of class {part.name!r}"
            )
        return float(cost)

    def _burst_limit(self) -> float:
        """The limiter-wide burst a cost must fit (a shared budget's, not a fallback's)."""
        return self._bucket.burst

    # -- internals: the grant rules -------------------------------------------

    def _total_in_flight(self) -> int:
        return sum(p.in_flight for p in self._partitions.values())

    def _plain_default(self) -> bool:
        """May the fast path run: one class, limited by the limiter alone?"""
        default = self._default
        return (
            len(self._partitions) == 1
            and default.bucket is None
            and default.max_concurrency is None
            and not default.minimum_floor
        )

    def _slot_free(self, part: Partition) -> bool:
        if part.max_concurrency is not None and part.in_flight >= part.max_concurrency:
            return False
        cap = self._max_concurrency
        if cap is None:
            return True
        free = cap - self._total_in_flight()
        if free <= 0:
            return False
        # Slots other classes are owed by their floor stay theirs.
        reserved = 0
        for other in self._partitions.values():
            if other is not part and other.minimum_floor:
                reserved += other.unmet_floor()
        return free > reserved

    def _admissible(self, part: Partition, cost: float, now: float) -> bool:
        return (
            self._slot_free(part)
            and (part.bucket is None or part.bucket.has(cost, now))
            and self._bucket.has(cost, now)
        )

    def _may_enter(self, part: Partition, cost: float, now: float) -> bool:
        """Could a newcomer be admitted now without overtaking anyone?"""
        if self._waiting:
            if part.head() is not None:
                return False
            # A head that could use the tokens now is waiting for them.
            for other in self._partitions.values():
                head = other.head()
                if head is not None and self._eligible(other, head, now):
                    return False
        return self._admissible(part, cost, now)

    def _eligible(self, part: Partition, waiter: Waiter, now: float) -> bool:
        """Not held back by anything of its own class: only the shared bucket may stop it."""
        return self._slot_free(part) and (part.bucket is None or part.bucket.has(waiter.cost, now))

    def _grant_now(self, part: Partition, cost: float) -> None:
        self._bucket.tokens -= cost
        if part.bucket is not None:
            part.bucket.tokens -= cost
        part.in_flight += 1
        part.admitted_total += 1

    def _release(self, part: Partition) -> None:
        part.in_flight -= 1
        if self._waiting:
            self._dispatch(self._now(), elect=True)

    # -- internals: waiting ----------------------------------------------------

    async def _acquire(self, part: Partition, cost: float, timeout: float | None) -> Permit:
        now = self._now()
        if self._may_enter(part, cost, now):
            self._grant_now(part, cost)
            return Permit(self, part, cost, 0.0)
        # The cost was checked when admit()/limit() was called; a retune since
        # may have lowered a burst under it, and that must not be an endless wait.
        self._check_cost(cost, part)
        if timeout is not None and timeout <= 0:
            part.timed_out_total += 1
            raise AdmissionTimeout(
                self._retry_after(part, cost, (math.inf, 0), now),
                limiter=self.name,
                workload_class=part.name,
            )
        waiter = self._enqueue(part, cost, timeout, now)
        self._dispatch(now, elect=False)
        return await self._wait(waiter)

    async def _wait(self, waiter: Waiter) -> Permit:
        """Wait until ``waiter`` is settled: its permit, or the error it ends with."""
        part = waiter.partition
        try:
            while waiter.state == WAITING:
                if self._timer_owner is None and self._wake_at is not None:
                    await self._keep_time(waiter)
                else:
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.state == GRANTED:
            return Permit(self, part, waiter.cost, waiter.waited)
        if waiter.state == TIMED_OUT:
            raise AdmissionTimeout(waiter.retry_after, limiter=self.name, workload_class=part.name)
        assert waiter.error is not None
        raise waiter.error

    def _enqueue(self, part: Partition, cost: float, timeout: float | None, now: float) -> Waiter:
        tag = max(self._vtime, part.last_finish)
        part.last_finish = tag + cost / part.share
        waiter = Waiter(part, cost, next(self._seq), tag, now)
        part.queue.append(waiter)
        part.waiting += 1
        self._waiting += 1
        self._open = False
        if timeout is not None:
            waiter.deadline = now + timeout
            heapq.heappush(self._deadlines, (waiter.deadline, waiter.seq, waiter))
        return waiter

    async def _keep_time(self, waiter: Waiter) -> None:
        """Sleep on the limiter's one timer, then settle whatever fell due."""
        wake_at = self._wake_at
        assert wake_at is not None
        self._timer_owner = waiter
        self._timer_at = wake_at
        try:
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                await self._clock.sleep(wake_at - self._now())
        finally:
            if self._timer_owner is waiter:
                self._timer_owner = None
                self._timer_scope = None
                self._timer_at = None
        self._dispatch(self._now(), elect=False)
        if waiter.state != WAITING:
            # Settled (granted, timed out) by that very dispatch or before it: the
            # timer is free and the waiters left behind need someone to keep it.
            self._elect()

    def _abandon(self, waiter: Waiter) -> None:
        """The waiting task is leaving with an exception (cancellation, mostly)."""
        part = waiter.partition
        if waiter.state == GRANTED:
            # Granted while the cancellation was already on its way: undo it all.
            self._bucket.give_back(waiter.cost)
            if part.bucket is not None:
                part.bucket.give_back(waiter.cost)
            part.admitted_total -= 1
            part.cancelled_total += 1
            self._release(part)
            return
        if waiter.state == WAITING:
            self._settle_waiter(waiter, CANCELLED)
            part.cancelled_total += 1
        self._dispatch(self._now(), elect=True)

    def _settle_waiter(self, waiter: Waiter, state: int) -> None:
        waiter.state = state
        part = waiter.partition
        part.waiting -= 1
        self._waiting -= 1
        if not self._waiting:
            self._open = self._fast
        waiter.wake()

    def _settle(self, now: float, *, check_fit: bool) -> None:
        """After a retune: fail waiters that can never fit (if a burst shrank), re-plan."""
        for part in self._partitions.values() if check_fit else ():
            class_burst = part.bucket.burst if part.bucket is not None else math.inf
            burst = min(self._burst_limit(), class_burst)
            for waiter in part.queue:
                if waiter.state == WAITING and waiter.cost > burst:
                    waiter.error = ValueError(
                        f"cost={waiter.cost!r} no longer fits limiter {self.name!r}/"
                        f"{part.name!r} after retune (burst {burst!r})"
                    )
                    self._settle_waiter(waiter, FAILED)
        self._dispatch(now, elect=True)

    def _dispatch(self, now: float, *, elect: bool) -> None:
        """Expire deadlines, grant every waiter that may go, and plan the timer."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            waiter = heapq.heappop(deadlines)[2]
            if waiter.state == WAITING:
                part = waiter.partition
                waiter.retry_after = self._retry_after(
                    part, waiter.cost, (waiter.tag, waiter.seq), now
                )
                part.timed_out_total += 1
                self._settle_waiter(waiter, TIMED_OUT)
        blocked: Waiter | None = None
        while self._waiting:
            chosen = self._select(now)
            if chosen is None:
                break
            if not self._bucket.has(chosen.cost, now):
                blocked = chosen
                break
            self._grant(chosen, now)
        self._plan(now, blocked, elect)

    def _select(self, now: float) -> Waiter | None:
        """The eligible class head with the smallest start tag."""
        best: Waiter | None = None
        for part in self._partitions.values():
            head = part.head()
            if head is None or not self._eligible(part, head, now):
                continue
            if best is None or (head.tag, head.seq) < (best.tag, best.seq):
                best = head
        return best

    def _grant(self, waiter: Waiter, now: float) -> None:
        part = waiter.partition
        part.queue.popleft()
        self._grant_now(part, waiter.cost)
        waiter.waited = now - waiter.enqueued_at
        part.waits.append((part.admitted_total, waiter.waited))
        self._vtime = waiter.tag
        self._settle_waiter(waiter, GRANTED)

    def _plan(self, now: float, blocked: Waiter | None, elect: bool) -> None:
        wake_at: float | None = None
        if blocked is not None:
            wake_at = now + self._bucket.delay_until(blocked.cost, now)
        for part in self._partitions.values():
            if part.bucket is None:
                continue
            head = part.head()
            if head is not None and self._slot_free(part):
                at = now + part.bucket.delay_until(head.cost, now)
                if at > now and (wake_at is None or at < wake_at):
                    wake_at = at
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].state != WAITING:
            heapq.heappop(deadlines)
        if deadlines and (wake_at is None or deadlines[0][0] < wake_at):
            wake_at = deadlines[0][0]
        self._wake_at = wake_at
        owner = self._timer_owner
        if owner is not None:
            # Wake the timekeeper if it was granted (its caller is waiting on
            # it) or if the plan moved earlier; a later plan it finds by itself
            # when it wakes, which costs less than waking it twice.
            timer_at = self._timer_at
            if owner.state != WAITING or (
                wake_at is not None and timer_at is not None and wake_at < timer_at
            ):
                assert self._timer_scope is not None
                self._timer_scope.cancel()
        elif wake_at is not None and elect:
            self._elect()

    def _elect(self) -> None:
        """Wake one parked waiter so that it takes the timer.

        The last in line is chosen: it will be granted last, so it keeps the
        timer for the whole queue instead of handing it on after every grant.
        """
        if self._timer_owner is not None or self._wake_at is None:
            return
        for part in reversed(self._partitions.values()):
            for waiter in reversed(part.queue):
                if waiter.state == WAITING and waiter.event is not None:
                    waiter.event.set()
                    return

    def _retry_after(
        self, part: Partition, cost: float, order: tuple[float, int], now: float
    ) -> float:
        """Seconds until ``cost`` more fits once everything queued ahead has gone."""
        ahead = 0.0
        own_ahead = 0.0
        for other in self._partitions.values():
            for waiter in other.queue:
                # (tag, seq) is the order _select serves in: equal tags go by arrival.
                if (waiter.tag, waiter.seq) >= order:
                    break
                if waiter.state == WAITING:
                    ahead += waiter.cost
                    if other is part:
                        own_ahead += waiter.cost
        needed = ahead + cost - self._bucket.peek(now)
        delay = max(0.0, needed / self._bucket.rate)
        if part.bucket is not None:
            class_needed = own_ahead + cost - part.bucket.peek(now)
            delay = max(delay, class_needed / part.bucket.rate)
        return delay
