"""AdaptiveLimiter: a token bucket with a concurrency cap, split into workload classes.

The semantics are DESIGN.md's "Token bucket and limiter semantics":

- conformance: over any interval ``T`` the admitted cost is at most
  ``burst + rate * T``;
- strict FIFO within a class; across classes start-time fair queuing by
  ``share``, so no newcomer overtakes a waiter it could starve;
- one timer per limiter: exactly one waiting task sleeps (on the clock) until
  the next waiter can be granted or the next deadline passes; every other
  waiter sleeps on its own event.  No polling.
- a waiter cancelled at any point holds no tokens and no slot.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import itertools
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

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
from admission.bucket import TOLERANCE, TokenBucket, check_burst, check_rate
from admission.classes import WorkloadClass, check_concurrency, check_floor, check_share
from admission.clock import Clock, get_default_clock
from admission.errors import AdmissionTimeout
from admission.permit import Admission, Permit, check_timeout
from admission.snapshot import ClassSnapshot, LimiterSnapshot, percentile

__all__ = ["AdaptiveLimiter", "Permit"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CLASS = "default"

# One token, less the float slack the bucket allows (see bucket.TOLERANCE).
_ONE = 1.0 - TOLERANCE


class AdaptiveLimiter:
    """Admission by rate, burst and concurrency, retunable while in use.

    ``async with limiter:`` admits one unit of the default (first) class;
    ``limiter.admit(cost=, workload_class=, timeout=)`` is the general form.
    """

    __slots__ = (
        "_bucket",
        "_clock",
        "_deadlines",
        "_default",
        "_fast",
        "_in_flight",
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
        *,
        rate: float,
        burst: float,
        max_concurrency: int | None = None,
        initial_tokens: float | None = None,
        classes: Iterable[WorkloadClass | str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self._clock = clock if clock is not None else get_default_clock()
        self._now = self._clock.monotonic
        now = self._now()
        self._bucket = TokenBucket(rate, burst, now=now, tokens=initial_tokens)
        self._max_concurrency = check_concurrency(max_concurrency)
        specs = [WorkloadClass(c) if isinstance(c, str) else c for c in (classes or ())]
        if not specs:
            specs = [WorkloadClass(DEFAULT_CLASS)]
        self._partitions: dict[str, Partition] = {}
        for spec in specs:
            if not isinstance(spec, WorkloadClass):
                raise TypeError(f"classes must hold WorkloadClass or str, got {spec!r}")
            if spec.name in self._partitions:
                raise ValueError(f"classes: duplicate workload class {spec.name!r}")
            self._partitions[spec.name] = Partition(spec, now)
        self._check_floors(self._max_concurrency)
        self._default = next(iter(self._partitions.values()))
        self._fast = self._plain_default()
        self._open = self._fast  # the fast path may run: plain default class, nobody queued
        self._in_flight = 0
        self._waiting = 0
        self._seq = itertools.count()
        self._vtime = 0.0
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._timer_owner: Waiter | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_at: float | None = None
        self._wake_at: float | None = None

    # -- introspection -------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def rate(self) -> float:
        return self._bucket.rate

    @property
    def burst(self) -> float:
        return self._bucket.burst

    @property
    def tokens(self) -> float:
        """The tokens in the limiter's bucket now (waiters queued may be owed them)."""
        return self._bucket.peek(self._now())

    @property
    def max_concurrency(self) -> int | None:
        return self._max_concurrency

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def workload_classes(self) -> tuple[str, ...]:
        return tuple(self._partitions)

    def snapshot(self) -> LimiterSnapshot:
        """An immutable picture of the limiter and each of its classes."""
        now = self._now()
        classes = tuple(
            ClassSnapshot(
                name=p.name,
                share=p.share,
                minimum_floor=p.minimum_floor,
                max_concurrency=p.max_concurrency,
                rate=p.bucket.rate if p.bucket else None,
                burst=p.bucket.burst if p.bucket else None,
                tokens=p.bucket.peek(now) if p.bucket else None,
                in_flight=p.in_flight,
                waiting=p.waiting,
                admitted_total=p.admitted_total,
                rejected_total=p.rejected_total,
                timed_out_total=p.timed_out_total,
                cancelled_total=p.cancelled_total,
                wait_p50_seconds=percentile(p.recent_waits(), 0.5),
                wait_p99_seconds=percentile(p.recent_waits(), 0.99),
            )
            for p in self._partitions.values()
        )
        waits = [w for p in self._partitions.values() for w in p.recent_waits()]
        return LimiterSnapshot(
            name=self.name,
            rate=self._bucket.rate,
            burst=self._bucket.burst,
            tokens=self._bucket.peek(now),
            max_concurrency=self._max_concurrency,
            in_flight=self._in_flight,
            waiting=self._waiting,
            admitted_total=sum(c.admitted_total for c in classes),
            rejected_total=sum(c.rejected_total for c in classes),
            timed_out_total=sum(c.timed_out_total for c in classes),
            cancelled_total=sum(c.cancelled_total for c in classes),
            wait_p50_seconds=percentile(waits, 0.5),
            wait_p99_seconds=percentile(waits, 0.99),
            classes=classes,
        )

    def __repr__(self) -> str:
        cap = self._max_concurrency
        return (
            f"<AdaptiveLimiter {self.name!r} rate={self.rate!r} burst={self.burst!r} "
            f"max_concurrency={cap!r} in_flight={self._in_flight} waiting={self._waiting}>"
        )

    # -- admission -----------------------------------------------------------

    async def __aenter__(self) -> None:
        # The fast path, inlined on purpose (it is the floor every handler pays):
        # nobody queued, so nobody can be overtaken, and the default class has
        # no limits of its own to consult.
        if self._open:
            cap = self._max_concurrency
            if cap is None or self._in_flight < cap:
                bucket = self._bucket
                now = self._now()
                tokens = bucket.tokens
                elapsed = now - bucket.updated_at
                if elapsed > 0:
                    tokens += elapsed * bucket.rate
                    if tokens > bucket.burst:
                        tokens = bucket.burst
                if tokens >= _ONE:
                    bucket.tokens = tokens - 1.0
                    bucket.updated_at = now
                    self._in_flight += 1
                    part = self._default
                    part.in_flight += 1
                    part.admitted_total += 1
                    return
        await self._acquire(self._default, 1.0, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._in_flight -= 1
        self._default.in_flight -= 1
        if self._waiting:
            self._dispatch(self._now(), elect=True)

    def admit(
        self, cost: float = 1, workload_class: str | None = None, timeout: float | None = None
    ) -> Admission:
        """``async with limiter.admit(...) as permit:`` admits, then releases on exit."""
        part = self._partition(workload_class)
        return Admission(self, part, self._check_cost(cost, part), check_timeout(timeout))

    async def acquire(
        self, cost: float = 1, workload_class: str | None = None, timeout: float | None = None
    ) -> Permit:
        """Wait for admission; the caller must ``release()`` the returned permit."""
        part = self._partition(workload_class)
        return await self._acquire(part, self._check_cost(cost, part), check_timeout(timeout))

    def try_acquire(self, cost: float = 1, workload_class: str | None = None) -> Permit | None:
        """Admit now or return ``None``; never waits and never overtakes a waiter."""
        part = self._partition(workload_class)
        cost = self._check_cost(cost, part)
        if self._may_enter(part, cost, self._now()):
            self._grant_now(part, cost)
            return Permit(self, part, cost, 0.0)
        part.rejected_total += 1
        return None

    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """``@limiter`` admits each call of an ``async def`` with cost 1 in the default class."""
        return self.limit()(func)

    def limit(
        self, cost: float = 1, workload_class: str | None = None, timeout: float | None = None
    ) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
        """A decorator admitting every call of an ``async def`` handler."""
        part = self._partition(workload_class)
        checked_cost = self._check_cost(cost, part)
        checked_timeout = check_timeout(timeout)

        def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"{self.name}: can only decorate an async def, got {func!r}")

            @functools.wraps(func)
            async def admitted(*args: P.args, **kwargs: P.kwargs) -> T:
                permit = await self._acquire(part, checked_cost, checked_timeout)
                try:
                    return await func(*args, **kwargs)
                finally:
                    permit.release()

            return admitted

        return decorate

    # -- retuning ------------------------------------------------------------

    def retune(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Change the limits now.  ``None`` leaves a limit as it is.

        Tokens earned so far count at the old rate and are clamped to the new
        burst; sleeping waiters are re-planned; lowering the cap cancels no
        work in flight.
        """
        if rate is not None:
            check_rate(rate)
        if burst is not None:
            check_burst(burst)
        if max_concurrency is not None:
            check_concurrency(max_concurrency)
            self._check_floors(max_concurrency)
            self._max_concurrency = max_concurrency
        now = self._now()
        shrinks = burst is not None and burst < self._bucket.burst
        self._bucket.retune(now, rate=rate, burst=burst)
        self._settle(now, check_fit=shrinks)

    def retune_class(
        self,
        name: str,
        *,
        rate: float | None = None,
        burst: float | None = None,
        max_concurrency: int | None = None,
        minimum_floor: int | None = None,
        share: float | None = None,
    ) -> None:
        """Change one class's limits now; ``None`` leaves a limit as it is."""
        part = self._partition(name)
        field = f"classes[{name!r}]"
        if rate is not None:
            check_rate(rate, field=f"{field}.rate")
        if burst is not None:
            check_burst(burst, field=f"{field}.burst")
            if rate is None and part.bucket is None:
                raise ValueError(f"{field}.burst={burst!r} needs a rate")
        if share is not None:
            check_share(share, field=f"{field}.share")
        cap = part.max_concurrency
        if max_concurrency is not None:
            cap = check_concurrency(max_concurrency, field=f"{field}.max_concurrency")
        floor = part.minimum_floor
        if minimum_floor is not None:
            floor = check_floor(minimum_floor, field=f"{field}.minimum_floor")
        if cap is not None and floor > cap:
            raise ValueError(f"{field}.minimum_floor={floor} is above its max_concurrency={cap}")
        previous_floor, part.minimum_floor = part.minimum_floor, floor
        try:
            self._check_floors(self._max_concurrency)
        except ValueError:
            part.minimum_floor = previous_floor
            raise
        part.max_concurrency = cap
        if share is not None:
            part.share = float(share)
        now = self._now()
        shrinks = part.bucket is None and rate is not None
        if part.bucket is None and rate is not None:
            part.bucket = TokenBucket(rate, burst if burst is not None else max(1.0, rate), now=now)
        elif part.bucket is not None:
            shrinks = burst is not None and burst < part.bucket.burst
            part.bucket.retune(now, rate=rate, burst=burst)
        self._fast = self._plain_default()
        self._open = self._fast and not self._waiting
        self._settle(now, check_fit=shrinks)

    # -- internals: validation ----------------------------------------------

    def _partition(self, name: str | None) -> Partition:
        if name is None:
            return self._default
        try:
            return self._partitions[name]
        except KeyError:
            known = ", ".join(map(repr, self._partitions))
            raise ValueError(
                f"{self.name}: unknown workload_class {name!r} (known: {known})"
            ) from None

    def _check_cost(self, cost: float, part: Partition) -> float:
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise TypeError(f"cost must be a number, got {cost!r}")
        if not math.isfinite(cost) or cost <= 0:
            raise ValueError(f"cost must be a finite number > 0, got {cost!r}")
        burst = self._bucket.burst
        if cost > burst:
            raise ValueError(f"cost={cost!r} exceeds the burst={burst!r} of limiter {self.name!r}")
        if part.bucket is not None and cost > part.bucket.burst:
            raise ValueError(
                f"cost={cost!r} exceeds the burst={part.bucket.burst!r} of class {part.name!r}"
            )
        return float(cost)

    def _check_floors(self, cap: int | None) -> None:
        if cap is None:
            return
        floors = sum(p.minimum_floor for p in self._partitions.values())
        if floors > cap:
            raise ValueError(
                f"max_concurrency={cap} is below the sum of the classes' minimum_floor ({floors})"
            )

    # -- internals: the grant rules -------------------------------------------

    def _plain_default(self) -> bool:
        """Is the default class limited by the limiter alone (so the fast path may skip it)?"""
        default = self._default
        return (
            default.bucket is None
            and default.max_concurrency is None
            and not any(p.minimum_floor for p in self._partitions.values())
        )

    def _slot_free(self, part: Partition) -> bool:
        if part.max_concurrency is not None and part.in_flight >= part.max_concurrency:
            return False
        cap = self._max_concurrency
        if cap is None:
            return True
        free = cap - self._in_flight
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
        self._in_flight += 1
        part.in_flight += 1
        part.admitted_total += 1

    def _release(self, part: Partition) -> None:
        self._in_flight -= 1
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
            return Permit(self, part, cost, waiter.waited)
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
            burst = min(self._bucket.burst, class_burst)
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
