"""Judging a limiter step by step: its log of events against the reference model.

Every request task writes to its limiter's log the moment something happens
to it: arrival (just before it calls the limiter), admission, timeout,
failure, cancellation, release; the driver writes its own releases, retunes
and ``try_acquire`` calls.  Entries made in the same call as the library's
action (an arrival, an admission that did not wait, a release, a retune, a
cancelled waiter leaving) are in the library's order.  An admission, timeout
or failure that a *waiting* task learns of is written when that task runs
again, later than the library made it: within one instant those removals
go first (the library expires deadlines before it grants), then the
admissions in the order written, each of which must be one of its class's
first ``k`` waiters, ``k`` the number of its class admitted in that instant.
The driver lets every task run before it does anything else to a limiter
whose log may still be incomplete, so one instant's entries are the
consequences of one action.

After every instant: nobody overdue, no deadline passed, every waiter whose
cost no longer fits failed.  After every step: the library's tokens, permits
in flight and waiters equal the model's; every 50th step and after every
retune, the whole snapshot (each class's limits, tokens, counters) does too.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable
from itertools import islice
from typing import Any

from soak_model import EPS, WAITING, LimiterModel, ModelBucket, Request

from admission import AdaptiveLimiter, AdmissionTimeout, Permit

ARRIVE, GRANT, TIMEOUT, INVALID, CANCELLED, RELEASE, TRY_OK, TRY_NONE, RETUNE = range(9)

#: How late past its deadline a waiter may still be waiting (the timer rounds up to 1 ns).
DEADLINE_SLACK = 2e-6

Entry = tuple[float, int, Request | None, Any]


class CheckedLimiter:
    """A library limiter, its model and its log; :meth:`process` judges the log."""

    def __init__(
        self,
        lib: AdaptiveLimiter,
        model: LimiterModel,
        stats: Counter[str],
        on_grant: Callable[[Request, Permit | None], None],
        snapshot_every: int = 50,
    ) -> None:
        self.lib = lib
        self.model = model
        self.stats = stats
        self.on_grant = on_grant
        self.snapshot_every = snapshot_every
        self.log: list[Entry] = []
        #: Something happened whose consequences a task has yet to write down.
        self.dirty = False
        self.next_check: float | None = None
        self._deadlines: list[tuple[float, int, Request]] = []
        self._expected_failures: set[Request] = set()
        self._processed = 0
        self._retuned = False

    def fail(self, what: str, t: float) -> AssertionError:
        return self.model.fail(what, t)

    # -- judging -------------------------------------------------------------------

    def process(self, now: float) -> None:
        """Judge everything logged since the last call; the limiter is quiet at ``now``."""
        if not self.log and not self.dirty and (self.next_check is None or now < self.next_check):
            return  # nothing happened to it, and nothing falls due yet
        if self.log:
            # Emptied in place: the request tasks hold on to this list.
            log = self.log.copy()
            self.log.clear()
            start = 0
            while start < len(log):
                t = log[start][0]
                end = start + 1
                while end < len(log) and log[end][0] == t:
                    end += 1
                self._instant(log[start:end], t)
                start = end
        self.dirty = False
        self._check_library(now)

    def _instant(self, entries: list[Entry], t: float) -> None:
        """One instant's entries: in the library's order, as far as the log can tell it.

        An entry written right after its own arrival did not wait: nothing came
        between.  A waiter's admission, timeout or failure is written when its
        task runs again, after the library made it: removals go first (the
        library expires deadlines before it grants), then the admissions in the
        order written, with whatever their tasks did next.
        """
        removals: list[Entry] = []
        later: list[Entry] = []
        admitted: set[Request] = set()
        previous: Entry | None = None
        for entry in entries:
            _, kind, req, _ = entry
            at_once = previous is not None and previous[1] == ARRIVE and previous[2] is req
            previous = entry
            if at_once or kind not in (GRANT, TIMEOUT, INVALID):
                if req in admitted:
                    later.append(entry)
                else:
                    self._apply(entry, t, at_once=at_once)
            elif kind == GRANT:
                assert req is not None
                admitted.add(req)
                later.append(entry)
            else:
                removals.append(entry)
        for entry in removals:
            self._removal(entry, t, at_once=False)
        if later:
            remaining = Counter(e[2].cls for e in later if e[1] == GRANT and e[2] is not None)
            for entry in later:
                self._apply(entry, t, at_once=False, among=remaining)
        self._after_instant(t)

    def _apply(
        self, entry: Entry, t: float, *, at_once: bool, among: Counter[str] | None = None
    ) -> None:
        _, kind, req, payload = entry
        model = self.model
        if kind == RETUNE:
            self._retune(payload, t)
            return
        assert req is not None
        if kind == ARRIVE:
            model.arrive(req, t)
            if req.timeout is not None:
                heapq.heappush(self._deadlines, (req.deadline, req.rid, req))
        elif kind == GRANT:
            if among is None:
                self._grant(req, payload, t, 1)
            else:
                self._grant(req, payload, t, among[req.cls])
                among[req.cls] -= 1
        elif kind in (TIMEOUT, INVALID):
            self._removal(entry, t, at_once=at_once)
        elif kind == CANCELLED:
            model.leave(req)
            model.classes[req.cls].cancelled += 1
            self.stats["cancelled"] += 1
        elif kind == RELEASE:
            model.release(req, t)
            self.stats["released"] += 1
        else:
            self._try(req, payload, t)

    def _grant(self, req: Request, permit: Permit | None, t: float, among: int) -> None:
        """Admit ``req``: one of its class's first ``among`` waiters (those admitted now)."""
        model = self.model
        queue = model.classes[req.cls].queue
        self.stats["check.fifo"] += 1
        if req not in islice(queue.values(), among):
            ahead = [r.rid for r in islice(queue.values(), among)]
            raise self.fail(
                f"class {req.cls!r}: request {req.rid} was admitted ahead of {ahead}, "
                "queued before it (FIFO per class)",
                t,
            )
        if req.oversized:
            raise self.fail(f"request {req.rid} admitted with cost {req.cost!r} > burst", t)
        if permit is not None:
            self._check_permit(req, permit, t)
        model.grant(req, t)
        self.stats["admitted"] += 1
        self.stats["admitted.waited" if t > req.arrived else "admitted.at_once"] += 1
        self.on_grant(req, permit)

    def _check_permit(self, req: Request, permit: Permit, t: float) -> None:
        waited = t - req.arrived
        if (
            permit.cost != req.cost
            or permit.workload_class != req.cls
            or (permit.released and req.mode != "admit")  # a holder may have let go since
            or abs(permit.waited_seconds - waited) > 1e-6
        ):
            raise self.fail(
                f"request {req.rid} (cost {req.cost!r}, class {req.cls!r}, waited {waited!r}) "
                f"got {permit!r} waited_seconds={permit.waited_seconds!r}",
                t,
            )

    def _removal(self, entry: Entry, t: float, *, at_once: bool) -> None:
        _, kind, req, error = entry
        assert req is not None
        model = self.model
        cls = model.classes[req.cls]
        if kind == INVALID:
            expected = req.oversized if at_once else req in self._expected_failures
            if not expected:
                raise self.fail(f"request {req.rid} failed unexpectedly: {error!r}", t)
            self._expected_failures.discard(req)
            model.leave(req)
            self.stats["invalid.cost" if at_once else "failed.after_retune"] += 1
            return
        assert isinstance(error, AdmissionTimeout)
        if t < req.deadline - 1e-9:
            raise self.fail(f"request {req.rid} timed out at {t!r}, before {req.deadline!r}", t)
        low, high = model.retry_after_bounds(req, t)
        slack = 1e-6 * (1.0 + high)
        model.leave(req)
        self.stats["check.timeout"] += 1
        if not low - slack <= error.retry_after <= high + slack:
            raise self.fail(
                f"request {req.rid}: retry_after={error.retry_after!r} outside [{low!r}, {high!r}]",
                t,
            )
        if (error.limiter, error.workload_class) != (model.name, req.cls):
            raise self.fail(f"request {req.rid}: {error!r} names the wrong limiter/class", t)
        if at_once and model.newcomer_admissible(cls, req.cost, t):
            raise self.fail(f"request {req.rid} timed out at once, yet could be admitted", t)
        cls.timed_out += 1
        self.stats["timed_out.at_once" if at_once else "timed_out.waiting"] += 1

    def _try(self, req: Request, permit: Permit | None, t: float) -> None:
        """``try_acquire``: admits only a newcomer that overtakes nobody, and then must."""
        model = self.model
        cls = model.classes[req.cls]
        self.stats["check.try"] += 1
        if permit is None:
            if model.newcomer_admissible(cls, req.cost, t):
                raise self.fail(f"try_acquire {req.rid} refused, yet could be admitted", t)
            cls.rejected += 1
            self.stats["try.refused"] += 1
            return
        for other in model.classes.values():
            if other.queue and (other is cls or model._eligible(other, t, sure=True)):
                raise self.fail(
                    f"try_acquire {req.rid} of {cls.name!r} overtook the waiting head of "
                    f"{other.name!r}: {model.describe_heads(t)}",
                    t,
                )
        model.arrive(req, t)
        self._grant(req, permit, t, 1)

    def _retune(self, payload: tuple[str | None, dict[str, Any]], t: float) -> None:
        name, changes = payload
        model = self.model
        rate, burst = changes.get("rate"), changes.get("burst")
        if name is None:
            model.bucket.retune(t, rate, burst)
            if changes.get("max_concurrency") is not None:
                model.cap = changes["max_concurrency"]
        else:
            cls = model.classes[name]
            if changes.get("max_concurrency") is not None:
                cls.cap = changes["max_concurrency"]
            if changes.get("minimum_floor") is not None:
                cls.floor = changes["minimum_floor"]
            if changes.get("share") is not None:
                cls.share = changes["share"]
            if cls.bucket is not None:
                cls.bucket.retune(t, rate, burst)
            elif rate is not None:
                cls.bucket = ModelBucket(rate, burst if burst is not None else max(1.0, rate), t)
        # DESIGN: a cost that no longer fits any burst fails at once, never waits forever.
        for cls in model.classes.values():
            for req in cls.queue.values():
                if req.cost > model.burst_for(cls):
                    self._expected_failures.add(req)
        self._retuned = True
        self.stats["retunes"] += 1

    def _after_instant(self, t: float) -> None:
        model = self.model
        self.stats["check.instant"] += 1
        if self._expected_failures:
            rids = sorted(r.rid for r in self._expected_failures)
            raise self.fail(f"requests {rids} no longer fit the burst but were not failed", t)
        at = model.overdue_at(t)
        if at is not None and at <= t:
            raise self.fail(f"a waiter could have been admitted: {model.describe_heads(t)}", t)
        deadlines = self._deadlines
        while deadlines and deadlines[0][2].state != WAITING:
            heapq.heappop(deadlines)
        if deadlines and deadlines[0][0] < t - DEADLINE_SLACK:
            req = deadlines[0][2]
            raise self.fail(f"request {req.rid} still waits past its deadline {req.deadline!r}", t)

    # -- the library's own account ----------------------------------------------------

    def _check_library(self, now: float) -> None:
        """Tokens and slots conserved: the library's books equal the model's."""
        lib, model = self.lib, self.model
        self._after_instant(now)
        tokens = lib.tokens
        expected = model.bucket.level(now)
        if abs(tokens - expected) > EPS:
            raise self.fail(f"tokens {tokens!r}, the model has {expected!r}", now)
        if lib.in_flight != model.in_flight or lib.waiting != model.waiting:
            raise self.fail(
                f"in flight {lib.in_flight}, waiting {lib.waiting}; the model has "
                f"{model.in_flight} in flight, {model.waiting} waiting",
                now,
            )
        if model.cap is not None and model.in_flight > model.cap:
            # Only a lowered cap leaves more in flight; the grants were each checked.
            self.stats["over_cap_after_lowering"] += 1
        self.stats["check.books"] += 1
        self._processed += 1
        if self._retuned or self._processed % self.snapshot_every == 0:
            self._retuned = False
            self.check_snapshot(now)
        at = model.overdue_at(now)
        deadlines = self._deadlines
        if deadlines:
            at = min(at if at is not None else math.inf, deadlines[0][0] + DEADLINE_SLACK)
        self.next_check = at

    def check_snapshot(self, now: float) -> None:
        """Every class's limits, tokens, slots, queue and counters, as the model has them."""
        lib, model = self.lib, self.model
        snap = lib.snapshot()
        self.stats["check.snapshot"] += 1
        got: list[object] = [snap.rate, snap.burst, snap.max_concurrency]
        want: list[object] = [model.bucket.rate, model.bucket.burst, model.cap]
        for c in snap.classes:
            m = model.classes[c.name]
            got += [c.share, c.minimum_floor, c.max_concurrency, c.in_flight, c.waiting]
            want += [m.share, m.floor, m.cap, m.in_flight, len(m.queue)]
            got += [c.admitted_total, c.rejected_total, c.timed_out_total, c.cancelled_total]
            want += [m.admitted, m.rejected, m.timed_out, m.cancelled]
            if m.bucket is None:
                got += [c.rate, c.burst, c.tokens is None]
                want += [None, None, True]
            else:
                got += [c.rate, c.burst, abs((c.tokens or 0.0) - m.bucket.level(now)) <= EPS]
                want += [m.bucket.rate, m.bucket.burst, True]
        if got != want:
            raise self.fail(f"snapshot {got} differs from the model {want}", now)
