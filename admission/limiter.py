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
import inspect
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

from admission._partition import (
    Partition,
)
from admission._scheduler import Scheduler
from admission.bucket import TOLERANCE, TokenBucket, check_burst, check_rate
from admission.classes import WorkloadClass, check_concurrency, check_floor, check_share
from admission.clock import Clock, get_default_clock
from admission.permit import Admission, Permit, check_timeout
from admission.snapshot import ClassSnapshot, LimiterSnapshot, percentile_of_sorted

if TYPE_CHECKING:
    from admission.distributed.base import SharedBackend

__all__ = ["AdaptiveLimiter", "Permit"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CLASS = "default"

# One token, less the float slack the bucket allows (see bucket.TOLERANCE).
_ONE = 1.0 - TOLERANCE


class AdaptiveLimiter(Scheduler):
    """Admission by rate, burst and concurrency, retunable while in use.

    ``async with limiter:`` admits one unit of the default (first) class;
    ``limiter.admit(cost=, workload_class=, timeout=)`` is the general form.
    ``backend=`` (e.g. ``RedisBackend``) makes ``rate`` and ``burst`` a budget
    shared by every process using the same name (see ``admission.distributed``).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, backend: SharedBackend | None = None, **kwargs: Any) -> Self:
        if backend is not None and cls is AdaptiveLimiter:
            # Imported here: a limiter without a backend never loads the shared machinery.
            from admission.distributed._limiter import SharedLimiter

            return super().__new__(SharedLimiter)  # type: ignore[return-value]
        return super().__new__(cls)

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
        backend: SharedBackend | None = None,
    ) -> None:
        if backend is not None:
            # Only AdaptiveLimiter itself turns into a shared limiter (see __new__).
            raise TypeError(f"{type(self).__name__} does not take backend=, got {backend!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        clock = clock if clock is not None else get_default_clock()
        now = clock.monotonic()
        bucket = TokenBucket(rate, burst, now=now, tokens=initial_tokens)
        cap = check_concurrency(max_concurrency)
        specs = [WorkloadClass(c) if isinstance(c, str) else c for c in (classes or ())]
        if not specs:
            specs = [WorkloadClass(DEFAULT_CLASS)]
        partitions: dict[str, Partition] = {}
        for spec in specs:
            if not isinstance(spec, WorkloadClass):
                raise TypeError(f"classes must hold WorkloadClass or str, got {spec!r}")
            if spec.name in partitions:
                raise ValueError(f"classes: duplicate workload class {spec.name!r}")
            partitions[spec.name] = Partition(spec, now)
        super().__init__(name, clock, bucket, cap, partitions)
        self._check_floors(cap)

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
        return self._total_in_flight()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def workload_classes(self) -> tuple[str, ...]:
        return tuple(self._partitions)

    def snapshot(self) -> LimiterSnapshot:
        """An immutable picture of the limiter and each of its classes."""
        now = self._now()
        # Each window sorted once, not once per percentile (the limiter-wide list is
        # then a merge of sorted runs): a status page snapshots on every read, and
        # the repeated sorts of full wait windows were most of its cost.
        waits = {name: sorted(p.recent_waits()) for name, p in self._partitions.items()}
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
                wait_p50_seconds=percentile_of_sorted(waits[p.name], 0.5),
                wait_p99_seconds=percentile_of_sorted(waits[p.name], 0.99),
            )
            for p in self._partitions.values()
        )
        every = sorted(itertools.chain.from_iterable(waits.values()))
        return LimiterSnapshot(
            name=self.name,
            rate=self._bucket.rate,
            burst=self._bucket.burst,
            tokens=self._bucket.peek(now),
            max_concurrency=self._max_concurrency,
            in_flight=sum(c.in_flight for c in classes),
            waiting=self._waiting,
            admitted_total=sum(c.admitted_total for c in classes),
            rejected_total=sum(c.rejected_total for c in classes),
            timed_out_total=sum(c.timed_out_total for c in classes),
            cancelled_total=sum(c.cancelled_total for c in classes),
            wait_p50_seconds=percentile_of_sorted(every, 0.5),
            wait_p99_seconds=percentile_of_sorted(every, 0.99),
            classes=classes,
        )

    def __repr__(self) -> str:
        cap = self._max_concurrency
        return (
            f"<AdaptiveLimiter {self.name!r} rate={self.rate!r} burst={self.burst!r} "
            f"max_concurrency={cap!r} in_flight={self.in_flight} waiting={self._waiting}>"
        )

    # -- admission -----------------------------------------------------------

    async def __aenter__(self) -> None:
        # The fast path, inlined on purpose (it is the floor every handler pays):
        # nobody queued, so nobody can be overtaken, and the default class has
        # no limits of its own to consult (and, being the only class, its
        # in-flight count is the limiter's).
        if self._open:
            cap = self._max_concurrency
            part = self._default
            if cap is None or part.in_flight < cap:
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

    def _check_floors(self, cap: int | None) -> None:
        if cap is None:
            return
        floors = sum(p.minimum_floor for p in self._partitions.values())
        if floors > cap:
            raise ValueError(
                f"max_concurrency={cap} is below the sum of the classes' minimum_floor ({floors})"
            )
        # Floors are reserved even while their class is idle: floors that fill
        # the cap would leave a class without a floor waiting forever.
        unfloored = [p.name for p in self._partitions.values() if not p.minimum_floor]
        if floors == cap and unfloored:
            raise ValueError(
                f"max_concurrency={cap} is all reserved by the classes' minimum_floor "
                f"({floors}): class {unfloored[0]!r} (minimum_floor=0) could never be admitted"
            )
