"""The soak's reference model of a limiter, written from DESIGN.md, not from the library.

It knows the limits as retuned, the requests queued per class in arrival
order, the permits in flight, and a token bucket per limiter and per class
that refills at the rate in force, clamps at the burst and loses exactly the
cost of every admission.  From that it judges every admission the library
makes (tokens there, a slot free under the caps and the other classes'
floors, the head of its class, every window conformant) and tells when a
waiter has waited past the time it could have been admitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Absolute float slack on tokens (the library compares with a 1e-9 relative
#: slack, and the model refills at other instants than the library does).
EPS = 1e-6
#: A head counts as surely admissible once its tokens are this far past its cost.
MARGIN = 2e-6

WAITING, HELD, DONE = "waiting", "held", "done"


class SoakFailure(AssertionError):
    """An invariant of the limiter did not hold."""


class ModelBucket:
    """Tokens, and the data for the every-window conformance check.

    Conformance over every window of grants ``s..e``: the cost admitted is at
    most the burst in force at ``s`` plus the rate integrated over
    ``[t_s, t_e]`` (DESIGN: ``burst + rate * T``, with retunes).  With
    ``S`` the cost admitted and ``R`` the integrated rate, that is
    ``S_e - R(t_e) <= min over s of (S_before_s - R(t_s) + burst_s)``: one
    running minimum checks every window in O(1).
    """

    __slots__ = ("at", "burst", "earned", "rate", "spent", "tokens", "window_at", "window_min")

    def __init__(self, rate: float, burst: float, at: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst  # a new bucket starts full
        self.at = at
        self.spent = 0.0
        self.earned = 0.0
        self.window_min = math.inf
        self.window_at = at

    def level(self, t: float) -> float:
        if t <= self.at:
            return self.tokens
        return min(self.burst, self.tokens + (t - self.at) * self.rate)

    def _sync(self, t: float) -> None:
        if t > self.at:
            self.tokens = min(self.burst, self.tokens + (t - self.at) * self.rate)
            self.earned += (t - self.at) * self.rate
            self.at = t

    def take(self, cost: float, t: float) -> tuple[float, float]:
        """Admit ``cost`` at ``t``: (tokens left, the worst window's excess)."""
        self._sync(t)
        key = self.spent - self.earned + self.burst
        if key < self.window_min:
            self.window_min, self.window_at = key, t
        self.tokens -= cost
        self.spent += cost
        return self.tokens, (self.spent - self.earned) - self.window_min

    def retune(self, t: float, rate: float | None, burst: float | None) -> None:
        """DESIGN: tokens earned so far count at the old rate, then clamp to the new burst."""
        self._sync(t)
        if rate is not None:
            self.rate = rate
        if burst is not None:
            self.burst = burst
            self.tokens = min(self.tokens, burst)

    def time_to(self, target: float, t: float) -> float:
        """When the bucket, left alone from ``t``, holds ``target`` tokens (inf: never)."""
        have = self.level(t)
        if have >= target:
            return t
        if target > self.burst:
            return math.inf
        return t + (target - have) / self.rate


@dataclass(eq=False)
class Request:
    """One request the soak makes, and what the model knows of it."""

    rid: int
    limiter: int
    cls: str
    cost: float
    timeout: float | None
    mode: str
    state: str = WAITING
    arrived: float = 0.0
    deadline: float = math.inf
    granted_at: float = math.nan
    oversized: bool = False
    #: The driver's handles: the task's cancel scope, a holder's release event, the permit.
    scope: object = None
    release: object = None
    permit: object = None


class ClassModel:
    """One workload class: its limits, its queue in arrival order, its permits."""

    __slots__ = (
        "admitted",
        "bucket",
        "cancelled",
        "cap",
        "floor",
        "in_flight",
        "name",
        "queue",
        "rejected",
        "share",
        "timed_out",
    )

    def __init__(
        self,
        name: str,
        *,
        share: float = 1.0,
        floor: int = 0,
        cap: int | None = None,
        bucket: ModelBucket | None = None,
    ) -> None:
        self.name = name
        self.share = share
        self.floor = floor
        self.cap = cap
        self.bucket = bucket
        self.queue: dict[int, Request] = {}
        self.in_flight = 0
        self.admitted = 0
        self.rejected = 0
        self.timed_out = 0
        self.cancelled = 0

    def head(self) -> Request | None:
        return next(iter(self.queue.values()), None)


class LimiterModel:
    """The model of one limiter; ``context`` goes into every failure message."""

    def __init__(
        self,
        name: str,
        *,
        rate: float,
        burst: float,
        cap: int | None,
        classes: list[ClassModel],
        at: float,
        context: str = "",
    ) -> None:
        self.name = name
        self.bucket = ModelBucket(rate, burst, at)
        self.cap = cap
        self.classes = {c.name: c for c in classes}
        self.in_flight = 0
        self.waiting = 0
        self.context = context
        self.checks = 0

    def fail(self, what: str, t: float) -> SoakFailure:
        return SoakFailure(f"{self.context} limiter {self.name!r} at t={t!r}: {what}")

    # -- the rules ----------------------------------------------------------------

    def burst_for(self, cls: ClassModel) -> float:
        """The largest cost the class can ever be admitted with."""
        if cls.bucket is None:
            return self.bucket.burst
        return min(self.bucket.burst, cls.bucket.burst)

    def slot_free(self, cls: ClassModel) -> bool:
        """DESIGN: the class's own cap, and the limiter's less the others' unmet floors."""
        if cls.cap is not None and cls.in_flight >= cls.cap:
            return False
        if self.cap is None:
            return True
        reserved = 0
        for other in self.classes.values():
            if other is not cls and other.floor > other.in_flight:
                reserved += other.floor - other.in_flight
        return self.cap - self.in_flight > reserved

    # -- what happened --------------------------------------------------------------

    def arrive(self, req: Request, t: float) -> None:
        cls = self.classes[req.cls]
        req.arrived = t
        req.oversized = req.cost > self.burst_for(cls)
        req.state = WAITING
        if req.timeout is not None:
            req.deadline = t + req.timeout
        cls.queue[req.rid] = req
        self.waiting += 1

    def leave(self, req: Request) -> None:
        """A waiter leaves without a permit (cancelled, timed out, failed)."""
        if req.state != WAITING:
            raise self.fail(f"request {req.rid} left the queue while {req.state}", req.arrived)
        del self.classes[req.cls].queue[req.rid]
        req.state = DONE
        self.waiting -= 1

    def grant(self, req: Request, t: float) -> None:
        """Admit ``req`` at ``t`` after checking that the library was allowed to."""
        cls = self.classes[req.cls]
        if req.state != WAITING:
            raise self.fail(f"request {req.rid} granted while {req.state}", t)
        if not self.slot_free(cls):
            raise self.fail(
                f"request {req.rid} of {cls.name!r} admitted without a free slot: "
                f"in flight {self.in_flight}/{self.cap}, class {cls.in_flight}/{cls.cap}, "
                f"floors {self.floors()}",
                t,
            )
        self.checks += 2
        self._take(self.bucket, req, t, "limiter")
        if cls.bucket is not None:
            self._take(cls.bucket, req, t, f"class {cls.name!r}")
        del cls.queue[req.rid]
        self.waiting -= 1
        cls.in_flight += 1
        cls.admitted += 1
        self.in_flight += 1
        req.state = HELD
        req.granted_at = t

    def _take(self, bucket: ModelBucket, req: Request, t: float, where: str) -> None:
        left, excess = bucket.take(req.cost, t)
        if left < -EPS:
            raise self.fail(
                f"request {req.rid} (cost {req.cost!r}) admitted by the {where} bucket "
                f"with only {left + req.cost!r} tokens",
                t,
            )
        if excess > EPS:
            raise self.fail(
                f"{where} conformance: the grants from t={bucket.window_at!r} to t={t!r} "
                f"exceed burst + rate*T by {excess!r}",
                t,
            )
        self.checks += 2

    def release(self, req: Request, t: float) -> None:
        if req.state != HELD:
            raise self.fail(f"request {req.rid} released while {req.state}", t)
        cls = self.classes[req.cls]
        cls.in_flight -= 1
        self.in_flight -= 1
        req.state = DONE

    def floors(self) -> dict[str, tuple[int, int]]:
        return {c.name: (c.in_flight, c.floor) for c in self.classes.values() if c.floor}

    # -- what must have happened by now -------------------------------------------------

    def newcomer_admissible(self, cls: ClassModel, cost: float, t: float) -> bool:
        """Would DESIGN admit a newcomer at once, beyond float doubt?

        Nobody of its class queued, no other class's head able to take the
        tokens (it would be overtaken), a slot, and the tokens in both buckets.
        """
        if cls.queue or any(self._eligible(c, t, sure=False) for c in self.classes.values()):
            return False
        return (
            self.slot_free(cls)
            and (cls.bucket is None or cls.bucket.level(t) >= min(cost + MARGIN, cls.bucket.burst))
            and self.bucket.level(t) >= min(cost + MARGIN, self.bucket.burst)
        )

    def _eligible(self, cls: ClassModel, t: float, *, sure: bool) -> bool:
        """Its head waits for nothing of its own class: a slot and its class's tokens."""
        head = cls.head()
        if head is None or not self.slot_free(cls):
            return False
        if cls.bucket is None:
            return True
        need = min(head.cost + MARGIN, cls.bucket.burst) if sure else head.cost - MARGIN
        return cls.bucket.level(t) >= need

    def overdue_at(self, t: float) -> float | None:
        """The first time from ``t`` at which, if nothing else happens, some waiter is overdue.

        DESIGN's order: a class head that has a slot and its class's tokens
        waits only for the shared tokens, and the limiter may keep every head
        waiting for the one it serves next (FIFO per class, fair queuing
        across), so nobody may overtake it.  A waiter is overdue when a head is
        surely eligible and every head that may be eligible surely has the
        shared tokens too: then someone must have been admitted.
        """
        if not self.waiting:
            return None
        heads: list[tuple[float, float, float]] = []  # (class sure, class maybe, shared sure)
        for cls in self.classes.values():
            head = cls.head()
            if head is None or not self.slot_free(cls):
                continue
            cost = head.cost
            if cls.bucket is None:
                sure = maybe = t
            else:
                sure = cls.bucket.time_to(min(cost + MARGIN, cls.bucket.burst), t)
                maybe = cls.bucket.time_to(cost - MARGIN, t)
            shared = self.bucket.time_to(min(cost + MARGIN, self.bucket.burst), t)
            heads.append((sure, maybe, shared))
        if not heads:
            return None
        for at in sorted({x for head in heads for x in head if x < math.inf}):
            if any(sure <= at for sure, _, _ in heads) and all(
                shared <= at for _, maybe, shared in heads if maybe <= at
            ):
                return at
        return None

    def describe_heads(self, t: float) -> str:
        parts = []
        for cls in self.classes.values():
            head = cls.head()
            if head is not None:
                class_tokens = None if cls.bucket is None else cls.bucket.level(t)
                parts.append(
                    f"{cls.name}: head {head.rid} cost {head.cost!r} since {head.arrived!r}, "
                    f"slot {self.slot_free(cls)}, class tokens {class_tokens!r}"
                )
        return f"shared tokens {self.bucket.level(t)!r}; " + "; ".join(parts)

    def retry_after_bounds(self, req: Request, t: float) -> tuple[float, float]:
        """``retry_after``: at least the wait for its own cost, at most the whole queue's."""
        cls = self.classes[req.cls]
        queued = sum(
            r.cost for c in self.classes.values() for r in c.queue.values() if r is not req
        )
        own_queued = sum(r.cost for r in cls.queue.values() if r is not req)
        shared = self.bucket.level(t)
        low = (req.cost - shared) / self.bucket.rate
        high = (queued + req.cost - shared) / self.bucket.rate
        if cls.bucket is not None:
            tokens = cls.bucket.level(t)
            low = max(low, (req.cost - tokens) / cls.bucket.rate)
            high = max(high, (own_queued + req.cost - tokens) / cls.bucket.rate)
        return max(0.0, low), max(0.0, high)
