"""The soak's driver: random limiters, a random workload, and the loop that moves virtual time.

The loop always moves to the earliest of: the driver's next action, the
clock's next sleeper (the limiters' timers) and the model's next check (when
a waiter would become overdue, or a deadline pass).  So every instant at
which something happens is an instant at which everything is judged.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Callable

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from soak_checker import (
    ARRIVE,
    CANCELLED,
    GRANT,
    INVALID,
    RELEASE,
    RETUNE,
    TIMEOUT,
    TRY_NONE,
    TRY_OK,
    CheckedLimiter,
)
from soak_model import HELD, WAITING, Request, SoakFailure
from soak_scenario import Workload, build_limiters, random_retune

from admission import AdmissionTimeout, Permit
from admission.testing import VirtualClock

#: Beyond this many waiters a limiter's newcomers use try_acquire (bounds the tasks alive).
MAX_WAITING = 24
#: Checkpoints before asyncio's wait_all_tasks_blocked (see Soak._settle).
CHECKPOINTS = 3

Action = tuple[int, int, int, Callable[[], None]]


class Soak:
    """One run: ``await Soak(clock, shift, admissions, seed, backend).run()``: the figures."""

    def __init__(
        self,
        clock: VirtualClock,
        shift: Callable[[float], None],
        admissions: int,
        seed: int,
        label: str,
    ) -> None:
        self.clock = clock
        #: time-machine's shift: moves the clock when no task can run and nobody falls due.
        self._shift = shift
        self.admissions = admissions
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.context = f"[soak {label} seed={seed}]"
        self.limiters: list[CheckedLimiter] = []
        self.work: list[Workload] = []
        for lib, model, work in build_limiters(self.rng, clock, self.context):
            self.limiters.append(CheckedLimiter(lib, model, self.stats, self._granted))
            self.work.append(work)
        # trio's wait_all_tasks_blocked is the scheduler's own: no checkpoints needed.
        self._checkpoints = 0 if label == "trio" else CHECKPOINTS
        self._heap: list[Action] = []
        self._seq = itertools.count()
        self._rids = itertools.count()
        self._tg: TaskGroup | None = None
        self.live: dict[int, Request] = {}
        self.stopping = False
        self._next_retune = self.rng.randint(100, 400)

    # -- time ---------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.monotonic()

    def now_ns(self) -> int:
        return round(self.clock.monotonic() * 1e9)

    def _at(self, seconds_from_now: float, li: int, action: Callable[[], None]) -> None:
        at = self.now_ns() + math.ceil(seconds_from_now * 1e9)
        heapq.heappush(self._heap, (at, next(self._seq), li, action))

    # -- the loop -------------------------------------------------------------------

    async def run(self) -> Counter[str]:
        for li, work in enumerate(self.work):
            self._at(self.rng.expovariate(work.arrival_rate() or 1.0), li, self._arrival(li))
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self._loop()
                self._final()
            except Exception as exc:
                failure = exc  # raised below, not wrapped in the task group's ExceptionGroup
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return self.stats

    async def _loop(self) -> None:
        clock, heap = self.clock, self._heap
        while True:
            now = self.now_ns()
            target = heap[0][0] if heap else math.inf
            sleeper = clock.next_deadline()
            if sleeper is not None:
                target = min(target, round(sleeper * 1e9))
            for lim in self.limiters:
                if lim.next_check is not None:
                    target = min(target, math.ceil(lim.next_check * 1e9) + 1)
            if target == math.inf:
                if not any(lim.dirty for lim in self.limiters):
                    return
                target = now  # let the tasks write down the last actions' consequences
            if target > now or not heap:
                if any(lim.dirty for lim in self.limiters):
                    # First what is pending now: it may put a new sleeper on the clock.
                    await self._settle()
                elif sleeper is not None and round(sleeper * 1e9) <= target:
                    await clock.advance((int(target) - now) / 1e9)
                    self.stats["steps.advance"] += 1
                else:
                    # Every task is blocked and no sleeper falls due: only time moves.
                    self._shift((int(target) - now) / 1e9)
                    if self.now_ns() != target:
                        raise SoakFailure(
                            f"{self.context} shifted to {self.now_ns()}, not {target}"
                        )
                    self.stats["steps.shift"] += 1
                self._process_all()
                continue
            if not heap or heap[0][0] > now:
                raise SoakFailure(f"{self.context} a sleeper or a check fell due before {now} ns")
            _, _, li, action = heapq.heappop(heap)
            lim = self.limiters[li]
            if lim.dirty:
                # Its log may lack what tasks have yet to write: let them run first.
                await self._settle()
                self._process_all()
            action()
            self.stats["steps.action"] += 1
            if not lim.dirty:
                lim.process(self.now())

    async def _settle(self) -> None:
        """Let every task run until it blocks, at this instant (as ``clock.advance(0)`` does).

        A few checkpoints first: they let the tasks just woken run, so that
        ``wait_all_tasks_blocked`` (which on asyncio sleeps 0.1 s of real time
        while a task is ready) mostly finds them blocked already.
        """
        for _ in range(self._checkpoints):
            await anyio.lowlevel.checkpoint()
        started = time.perf_counter()
        await anyio.wait_all_tasks_blocked()
        if time.perf_counter() - started > 0.05:
            self.stats["steps.settle_slow"] += 1
        self.stats["steps.settle"] += 1

    def _process_all(self) -> None:
        now = self.now()
        for lim in self.limiters:
            lim.process(now)

    def _final(self) -> None:
        now = self.now()
        if self.live:
            stuck = [(r.rid, r.mode, r.cls, r.state, r.arrived) for r in self.live.values()]
            limits = {
                lim.model.name: (lim.model.cap, lim.model.in_flight, lim.model.floors())
                for lim in self.limiters
            }
            raise SoakFailure(
                f"{self.context} {len(stuck)} request tasks never finished, "
                f"e.g. {stuck[:3]}; (cap, in flight, floors) {limits}"
            )
        for lim in self.limiters:
            model = lim.model
            if model.waiting or model.in_flight or lim.lib.waiting or lim.lib.in_flight:
                raise SoakFailure(
                    f"{self.context} {model.name}: still {model.waiting} waiting and "
                    f"{model.in_flight} in flight at the end: {model.describe_heads(now)}"
                )
            lim.check_snapshot(now)
            self.stats["checks.model"] += model.checks
        if self.clock.sleepers:
            raise SoakFailure(f"{self.context} {self.clock.sleepers} sleepers left on the clock")
        self.stats["virtual_seconds"] = round(now)

    # -- the workload ---------------------------------------------------------------

    def _arrival(self, li: int) -> Callable[[], None]:
        def arrive() -> None:
            if self.stopping:
                return
            work = self.work[li]
            work.maybe_new_phase(self.rng, self.now(), self.limiters[li].model)
            burst = 1 if self.rng.random() > 0.05 else self.rng.randint(2, 6)
            for _ in range(burst):
                self._request(li)
            rate = work.arrival_rate()
            delay = self.rng.expovariate(rate) if rate else work.phase_left(self.now())
            self._at(delay, li, arrive)

        return arrive

    def _request(self, li: int) -> None:
        lim, work, rng = self.limiters[li], self.work[li], self.rng
        model = lim.model
        mode = work.mode(rng)
        name = next(iter(model.classes)) if mode == "with" else work.workload_class(rng)
        cost = 1.0 if mode == "with" else work.cost(rng, model, name)
        if model.waiting >= MAX_WAITING:
            mode = "try"
        timeout = work.timeout(rng) if mode in ("acquire", "admit") else None
        req = Request(next(self._rids), li, name, cost, timeout, mode)
        self.stats[f"requests.{mode}"] += 1
        if mode == "try":
            self._try(lim, req)
            return
        req.scope = anyio.CancelScope()
        req.release = anyio.Event()
        assert self._tg is not None
        self.live[req.rid] = req
        self._tg.start_soon(self._task, lim, req)
        lim.dirty = True
        if rng.random() < 0.07:
            self._at(work.cancel_delay(rng), li, lambda: self._cancel(li, req))

    def _try(self, lim: CheckedLimiter, req: Request) -> None:
        try:
            permit = lim.lib.try_acquire(req.cost, req.cls)
        except ValueError as exc:
            if req.cost <= lim.model.burst_for(lim.model.classes[req.cls]):
                raise SoakFailure(f"{self.context} try_acquire {req.rid} refused: {exc}") from exc
            self.stats["invalid.cost"] += 1
            return
        lim.log.append((self.now(), TRY_NONE if permit is None else TRY_OK, req, permit))

    async def _task(self, lim: CheckedLimiter, req: Request) -> None:
        """One request: writes down what happens to it the moment it happens."""
        log, clock, lib = lim.log, self.clock, lim.lib
        assert isinstance(req.scope, anyio.CancelScope)
        assert isinstance(req.release, anyio.Event)
        granted = False
        try:
            with req.scope:
                log.append((clock.monotonic(), ARRIVE, req, None))
                try:
                    if req.mode == "acquire":
                        permit = await lib.acquire(req.cost, req.cls, req.timeout)
                        log.append((clock.monotonic(), GRANT, req, permit))
                        return
                    if req.mode == "admit":
                        async with lib.admit(req.cost, req.cls, req.timeout) as held:
                            granted = True
                            log.append((clock.monotonic(), GRANT, req, held))
                            try:
                                await req.release.wait()
                            finally:
                                log.append((clock.monotonic(), RELEASE, req, None))
                        return
                    async with lib:
                        granted = True
                        log.append((clock.monotonic(), GRANT, req, None))
                        try:
                            await req.release.wait()
                        finally:
                            log.append((clock.monotonic(), RELEASE, req, None))
                except AdmissionTimeout as exc:
                    log.append((clock.monotonic(), TIMEOUT, req, exc))
                except ValueError as exc:
                    log.append((clock.monotonic(), INVALID, req, exc))
                except anyio.get_cancelled_exc_class():
                    if not granted:
                        log.append((clock.monotonic(), CANCELLED, req, None))
                    raise
        finally:
            del self.live[req.rid]

    def _granted(self, req: Request, permit: Permit | None) -> None:
        """The model saw ``req`` admitted: plan its release, and now and then a retune."""
        req.permit = permit
        work = self.work[req.limiter]
        hold = 0.0 if self.rng.random() < 0.2 else self.rng.expovariate(1 / work.mean_hold)
        self._at(hold, req.limiter, lambda: self._release(req))
        admitted = self.stats["admitted"]
        if admitted >= self.admissions:
            self.stopping = True
        elif admitted >= self._next_retune:
            self._next_retune += self.rng.randint(100, 400)
            li = self.rng.randrange(len(self.limiters))
            self._at(0.0, li, lambda: self._retune(li))

    def _release(self, req: Request) -> None:
        if req.state != HELD:
            return  # a holder cancelled in the instant it was admitted has let go already
        lim = self.limiters[req.limiter]
        if req.mode in ("admit", "with"):
            assert isinstance(req.release, anyio.Event)
            req.release.set()
            lim.dirty = True
        else:
            assert isinstance(req.permit, Permit)
            waiters = lim.lib.waiting
            lim.log.append((self.now(), RELEASE, req, None))
            req.permit.release()
            if self.rng.random() < 0.01:
                req.permit.release()  # DESIGN: a slot comes back exactly once
                self.stats["released.twice"] += 1
            lim.dirty = waiters > 0
        if lim.lib.waiting and self.rng.random() < 0.05:
            # Cancel a head in the very instant the release may admit it.
            heads = [h for c in lim.model.classes.values() if (h := c.head()) is not None]
            self._cancel(req.limiter, self.rng.choice(heads))
            self.stats["cancel.racing_a_release"] += 1

    def _cancel(self, li: int, req: Request) -> None:
        if req.state == WAITING and isinstance(req.scope, anyio.CancelScope):
            req.scope.cancel()
            self.limiters[li].dirty = True
            self.stats["cancel.sent"] += 1

    def _retune(self, li: int) -> None:
        lim = self.limiters[li]
        name, changes, bad = random_retune(self.rng, lim.model, self.work[li])
        if bad is not None:
            try:
                if name is None:
                    lim.lib.retune(**changes)
                else:
                    lim.lib.retune_class(name, **changes)
            except ValueError as exc:
                if bad not in str(exc):
                    raise SoakFailure(f"{self.context} {changes}: {exc} names no {bad}") from exc
                self.stats["retunes.refused"] += 1
                lim.check_snapshot(self.now())
                return
            raise SoakFailure(f"{self.context} {lim.model.name}: {name} {changes} was accepted")
        waiters = lim.lib.waiting
        lim.log.append((self.now(), RETUNE, None, (name, changes)))
        if name is None:
            lim.lib.retune(**changes)
        else:
            lim.lib.retune_class(name, **changes)
        lim.dirty = waiters > 0
