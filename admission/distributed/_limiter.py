"""The limiter whose limiter-wide bucket is shared through a backend.

Everything local stays local: FIFO per class, fair queuing across classes,
concurrency caps, floors, class buckets, timeouts.  What changes is where the
limiter-wide tokens come from.  The eligible head of the queue asks the backend
for its cost, and for those behind it that could start with it (one round
trip, at most one in flight per limiter, so nobody overtakes it); grants are
handed out at once, a refusal says when to ask again, and the limiter's one
timer sleeps until then (with jitter).  Tokens
never wait in the replica: a grant that finds nobody to use it (its waiter was
cancelled during the round trip) goes straight back to the backend.

When the backend does not answer, the limiter switches to a local bucket at the
backend's fallback rate, says so in its snapshot, and asks the backend again
after a backoff; the first answer switches it back.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence

import anyio
import anyio.lowlevel

from admission import events
from admission._partition import GRANTED, WAITING, Partition, Waiter
from admission.bucket import TOLERANCE, check_burst, check_rate
from admission.classes import WorkloadClass, check_concurrency
from admission.clock import Clock
from admission.distributed._batch import batch
from admission.distributed._buckets import FallbackBucket, SharedTokens
from admission.distributed.base import SharedBackend, TakeAnswer
from admission.limiter import AdaptiveLimiter
from admission.permit import Permit
from admission.snapshot import LimiterSnapshot

__all__ = ["SharedLimiter"]


class SharedLimiter(AdaptiveLimiter):
    """An :class:`AdaptiveLimiter` built with ``backend=``: the same interface, a shared budget.

    ``try_acquire`` never waits, so it cannot ask the backend: it admits only
    while the limiter runs on its local fallback.
    """

    __slots__ = (
        "_backend",
        "_credit",
        "_fallback",
        "_initial",
        "_key",
        "_probe_backoff",
        "_random",
        "_seen_tokens",
        "_synced",
        "_unavailable",
        "_version",
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
        backend: SharedBackend | None = None,
    ) -> None:
        if not isinstance(backend, SharedBackend):
            raise TypeError(f"backend must be a SharedBackend (e.g. RedisBackend), got {backend!r}")
        super().__init__(
            name,
            rate=rate,
            burst=burst,
            max_concurrency=max_concurrency,
            initial_tokens=initial_tokens,
            classes=classes,
            clock=clock,
        )
        now = self._now()
        local = self._bucket
        self._backend = backend
        self._key = backend.bucket_key(name)
        self._initial = local.tokens
        self._credit = SharedTokens(local.rate, local.burst, now=now, guard=1.0)
        self._fallback = FallbackBucket(*backend.fallback_limits(local.rate, local.burst), now=now)
        self._bucket = self._credit
        self._seen_tokens = local.tokens
        self._version = 0  # retunes made here; the backend has seen up to _synced
        self._synced = 0
        self._unavailable: tuple[str, float] | None = None  # (reason, since)
        self._probe_backoff = backend.retry_interval
        self._random = random.Random()

    # -- what a shared budget looks like ---------------------------------------

    @property
    def backend(self) -> SharedBackend:
        return self._backend

    @property
    def key(self) -> str:
        """Where the shared bucket lives in the backend."""
        return self._key

    @property
    def rate(self) -> float:
        return self._credit.rate

    @property
    def burst(self) -> float:
        return self._credit.burst

    @property
    def tokens(self) -> float:
        """The local fallback's tokens, or the shared bucket's as this replica last saw them."""
        if self._bucket is self._fallback:
            return self._fallback.peek(self._now())
        return self._seen_tokens

    @property
    def shared(self) -> bool:
        """Is the shared budget in use (``False``: the local fallback is)?"""
        return self._bucket is self._credit

    def snapshot(self) -> LimiterSnapshot:
        local = self._bucket is self._fallback
        return (
            super()
            .snapshot()
            .model_copy(
                update={
                    "rate": self.rate,
                    "burst": self.burst,
                    "tokens": self.tokens,
                    "shared_budget": "unavailable" if local else "shared",
                    "shared_budget_reason": self._unavailable[0] if self._unavailable else None,
                    "fallback_rate": self._fallback.rate,
                }
            )
        )

    def retune(
        self,
        *,
        rate: float | None = None,
        burst: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Change the limits; rate and burst change for every replica (next round trip).

        The shared bucket keeps its tokens (clamped to the new burst).  The
        new figures reach the backend with this replica's next admission or
        :meth:`sync`; other replicas take them up on their next round trip.
        """
        if rate is not None:
            check_rate(rate)
        if burst is not None:
            check_burst(burst)
        if max_concurrency is not None:
            check_concurrency(max_concurrency)
            self._check_floors(max_concurrency)
        credit = self._credit
        shrinks = burst is not None and burst < credit.burst
        if rate is not None or burst is not None:
            self._set_limits(
                rate if rate is not None else credit.rate,
                burst if burst is not None else credit.burst,
            )
            self._version += 1
        super().retune(max_concurrency=max_concurrency)
        if shrinks:
            self._settle(self._now(), check_fit=True)

    async def sync(self) -> None:
        """One round trip: push a pending retune, read the shared figures, or probe a lost backend.

        Never raises because the backend is away (it marks the budget unavailable).
        """
        if self._credit.fetching:
            return
        answer = await self._call(())
        now = self._now()
        if isinstance(answer, str):
            self._go_local(answer, now)
        else:
            self._learn(answer, now)
        self._dispatch(now, elect=True)

    # -- the scheduler's hooks -------------------------------------------------

    def _plain_default(self) -> bool:
        return False  # every admission asks the backend: no local fast path

    def _burst_limit(self) -> float:
        return self._credit.burst

    def _retry_after(
        self, part: Partition, cost: float, order: tuple[float, int], now: float
    ) -> float:
        floor = super()._retry_after(part, cost, order, now)
        if self._bucket is self._credit:
            return max(floor, self._credit.retry_at - now)
        return floor

    async def _acquire(self, part: Partition, cost: float, timeout: float | None) -> Permit:
        now = self._now()
        if self._bucket is self._fallback:
            if now >= self._fallback.probe_at and not self._credit.fetching:
                await self.sync()
                await anyio.lowlevel.checkpoint_if_cancelled()
                now = self._now()
            if self._bucket is self._fallback:
                return await super()._acquire(part, cost, timeout)
        self._check_cost(cost, part)
        # The deadline starts after the first round trip, so that timeout=0
        # still gets its one answer from the backend.
        waiter = self._enqueue(part, cost, None, now)
        try:
            if self._fetch_due(now):
                await self._fetch()
                await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self._abandon(waiter)
            await self._refund_unused()
            raise
        if waiter.state == GRANTED:  # the common case: one round trip, no wait
            return Permit(self, part, cost, waiter.waited)
        if waiter.state == WAITING:
            if timeout is not None:
                self._set_deadline(waiter, now + timeout)
            self._dispatch(self._now(), elect=False)
        return await self._wait(waiter)

    async def _wait(self, waiter: Waiter) -> Permit:
        try:
            return await super()._wait(waiter)
        finally:
            # A permit given back by a cancelled waiter that nobody queued could use.
            if self._credit.tokens > TOLERANCE:
                await self._refund_unused()

    async def _keep_time(self, waiter: Waiter) -> None:
        if not self._fetch_due(self._now()):
            await super()._keep_time(waiter)
            if waiter.state != WAITING or not self._fetch_due(self._now()):
                return
        if self._bucket is self._fallback:
            await self.sync()
        else:
            await self._fetch()
        await anyio.lowlevel.checkpoint_if_cancelled()
        if waiter.state != WAITING:
            self._elect()

    # -- talking to the backend ------------------------------------------------

    def _fetch_due(self, now: float) -> bool:
        """Should a waiting task ask the backend now?"""
        credit = self._credit
        if credit.fetching or not self._waiting:
            return False
        if self._bucket is self._fallback:
            return now >= self._fallback.probe_at
        if now < credit.retry_at:
            return False
        head = self._select(now)
        return head is not None and not credit.has(head.cost, now)

    async def _fetch(self) -> None:
        """Ask tokens for the eligible head (and those behind it); grant, or plan the next ask."""
        now = self._now()
        head = self._select(now)
        if head is None:
            return
        costs = batch(self, head, now)
        answer = await self._call(costs)
        now = self._now()
        if isinstance(answer, str):
            self._go_local(answer, now)
        else:
            self._learn(answer, now)
            credit = self._credit
            if answer.granted:
                credit.tokens += sum(costs[: answer.granted])
                # Granted before any deadline is expired: the answer was asked for in time.
                while self._waiting:
                    chosen = self._select(now)
                    if chosen is None or not credit.has(chosen.cost, now):
                        break
                    self._grant(chosen, now)
                if credit.tokens > TOLERANCE:
                    await self._refund_unused()
            if answer.granted < len(costs):
                stretch = 1.0 + self._random.uniform(0.0, self._backend.jitter)
                credit.retry_at = now + answer.retry_after * stretch
        if self._waiting:
            self._dispatch(self._now(), elect=True)

    async def _call(self, costs: Sequence[float]) -> TakeAnswer | str:
        """One round trip, shielded: an answer, or why there was none."""
        credit = self._credit
        version = self._version
        configure = version != self._synced
        credit.fetching = True
        try:
            # Shielded: a cancelled waiter must still learn whether tokens were
            # taken for it, or they would be lost to the whole fleet.
            with anyio.CancelScope(shield=True):
                answer = await self._backend.take(
                    self._key,
                    costs,
                    rate=credit.rate,
                    burst=credit.burst,
                    initial=self._initial,
                    configure=configure,
                )
        except Exception as exc:  # fail-safe: whatever went wrong, admission goes on locally
            return _reason(exc)
        finally:
            credit.fetching = False
        if configure:
            self._synced = max(self._synced, version)
        return answer

    async def _refund_unused(self) -> None:
        credit = self._credit
        leftover = credit.tokens
        if leftover <= TOLERANCE:
            return
        credit.tokens = 0.0
        try:
            with anyio.CancelScope(shield=True):
                await self._backend.refund(self._key, leftover)
        except Exception as exc:
            self._go_local(_reason(exc), self._now())

    def _learn(self, answer: TakeAnswer, now: float) -> None:
        """Take up the shared figures (another replica may have retuned them)."""
        self._seen_tokens = answer.tokens
        if self._unavailable is not None:
            self._restore(now)
        credit = self._credit
        if self._version == self._synced and (answer.rate, answer.burst) != (
            credit.rate,
            credit.burst,
        ):
            shrinks = answer.burst < credit.burst
            self._set_limits(answer.rate, answer.burst)
            if shrinks:
                self._settle(now, check_fit=True)

    def _set_limits(self, rate: float, burst: float) -> None:
        credit = self._credit
        credit.rate, credit.burst = rate, burst
        fallback_rate, fallback_burst = self._backend.fallback_limits(rate, burst)
        self._fallback.retune(self._now(), rate=fallback_rate, burst=fallback_burst)

    def _set_deadline(self, waiter: Waiter, deadline: float) -> None:
        waiter.deadline = deadline
        heapq.heappush(self._deadlines, (deadline, waiter.seq, waiter))

    def _go_local(self, reason: str, now: float) -> None:
        backend = self._backend
        fallback = self._fallback
        if self._unavailable is None:
            self._unavailable = (reason, now)
            self._probe_backoff = backend.retry_interval
            events.logger().warning(
                events.SHARED_BUDGET_UNAVAILABLE,
                limiter=self.name,
                key=self._key,
                reason=reason,
                fallback_rate=fallback.rate,
                fallback_burst=fallback.burst,
            )
        else:
            self._unavailable = (reason, self._unavailable[1])
            self._probe_backoff = min(self._probe_backoff * 2, backend.max_retry_interval)
        stretch = 1.0 + self._random.uniform(0.0, backend.jitter)
        fallback.probe_at = now + self._probe_backoff * stretch
        self._credit.retry_at = -math.inf
        self._bucket = fallback

    def _restore(self, now: float) -> None:
        assert self._unavailable is not None
        since = self._unavailable[1]
        self._unavailable = None
        self._fallback.probe_at = math.inf
        self._bucket = self._credit
        events.logger().info(
            events.SHARED_BUDGET_RESTORED,
            limiter=self.name,
            key=self._key,
            unavailable_seconds=max(0.0, now - since),
        )


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else f"{type(exc).__name__}: {exc}"
