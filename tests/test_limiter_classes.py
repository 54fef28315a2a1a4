"""Workload classes: floors, shares, class caps and rates, borrowing, retune_class."""

from __future__ import annotations

import math
from collections import Counter

import anyio
import pytest
from limiter_helpers import Holders, Job, running, start_in_order

from admission import AdaptiveLimiter, WorkloadClass
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- floors ---------------------------------------------------------------------------


async def test_a_floor_holds_while_another_class_saturates(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "floors",
        rate=1000,
        burst=100,
        max_concurrency=4,
        classes=["bulk", WorkloadClass("urgent", minimum_floor=1)],
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        for _ in range(10):
            tg.start_soon(holders.job("bulk"))
        await admission_clock.advance(5)
        bulk = limiter.snapshot().workload_class("bulk")
        # One slot of the four stays reserved for urgent.
        assert (bulk.in_flight, bulk.waiting) == (3, 7)
        urgent = limiter.try_acquire(workload_class="urgent")
        assert urgent is not None
        assert limiter.in_flight == 4
        # Past its floor, urgent competes like anyone: the cap is full.
        assert limiter.try_acquire(workload_class="urgent") is None
        urgent.release()
        await admission_clock.advance(1)
        # The reserved slot went back to reserve, not to the bulk waiters.
        assert limiter.snapshot().workload_class("bulk").in_flight == 3
        async with limiter.admit(workload_class="urgent"):
            assert limiter.in_flight == 4
        tg.cancel_scope.cancel()


async def test_a_floor_of_several_slots(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "floor2",
        rate=1000,
        burst=100,
        max_concurrency=5,
        classes=["bulk", WorkloadClass("urgent", minimum_floor=2)],
    )
    bulk = [limiter.try_acquire(workload_class="bulk") for _ in range(5)]
    assert [p is not None for p in bulk] == [True, True, True, False, False]
    first = limiter.try_acquire(workload_class="urgent")
    assert first is not None
    # One urgent slot is still owed: bulk cannot have it.
    assert limiter.try_acquire(workload_class="bulk") is None
    second = limiter.try_acquire(workload_class="urgent")
    assert second is not None
    assert limiter.in_flight == 5
    first.release()
    assert limiter.try_acquire(workload_class="bulk") is None
    assert limiter.snapshot().workload_class("urgent").minimum_floor == 2


async def test_a_waiting_class_gets_its_floor_at_once(admission_clock: VirtualClock) -> None:
    """Even with the other class's waiters queued ahead, the floor admits without waiting."""
    limiter = AdaptiveLimiter(
        "floor-queue",
        rate=1000,
        burst=100,
        max_concurrency=3,
        classes=["bulk", WorkloadClass("urgent", minimum_floor=1)],
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *(holders.job("bulk") for _ in range(5)))
        await start_in_order(admission_clock, tg, holders.job("urgent"))
        assert holders.order() == ["bulk", "bulk", "urgent"]
        assert limiter.waiting == 3
        tg.cancel_scope.cancel()


async def test_floors_bind_the_fast_path_too(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "fast-floor",
        rate=1000,
        burst=100,
        max_concurrency=2,
        classes=["main", WorkloadClass("side", minimum_floor=1)],
    )
    async with limiter:
        assert limiter.in_flight == 1
        # The second slot is side's floor: the default class may not take it.
        assert limiter.try_acquire() is None
        assert limiter.try_acquire(workload_class="side") is not None


async def test_retune_refuses_a_cap_below_the_floors(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "floor-cap",
        rate=1000,
        burst=100,
        max_concurrency=4,
        classes=[WorkloadClass("a", minimum_floor=2), WorkloadClass("b", minimum_floor=1)],
    )
    with pytest.raises(ValueError, match=r"max_concurrency=2.*\(3\)"):
        limiter.retune(max_concurrency=2)
    assert limiter.max_concurrency == 4
    limiter.retune(max_concurrency=3)
    assert limiter.max_concurrency == 3


async def test_floors_may_not_reserve_every_slot_from_a_class_without_one(
    admission_clock: VirtualClock,
) -> None:
    """Found by the soak: floors filling the cap left the class without one waiting forever."""
    classes: list[WorkloadClass | str] = ["standard", WorkloadClass("expensive", minimum_floor=2)]
    with pytest.raises(ValueError, match=r"max_concurrency=2 .*\(2\).*'standard'"):
        AdaptiveLimiter("starved", rate=100, burst=10, max_concurrency=2, classes=classes)
    limiter = AdaptiveLimiter("starved", rate=100, burst=10, max_concurrency=3, classes=classes)
    with pytest.raises(ValueError, match=r"max_concurrency=2 .*'standard'"):
        limiter.retune(max_concurrency=2)
    with pytest.raises(ValueError, match=r"max_concurrency=3 .*\(3\).*'standard'"):
        limiter.retune_class("expensive", minimum_floor=3)
    snapshot = limiter.snapshot()
    assert (snapshot.max_concurrency, snapshot.workload_class("expensive").minimum_floor) == (3, 2)
    # The one slot the floors leave is standard's, even with expensive idle.
    permit = limiter.try_acquire(workload_class="standard")
    assert permit is not None
    assert limiter.try_acquire(workload_class="standard") is None
    permit.release()
    # With a floor of its own, every class keeps a slot: floors may fill the cap.
    limiter.retune_class("standard", minimum_floor=1)
    limiter.retune(max_concurrency=3)
    assert limiter.try_acquire(workload_class="standard") is not None


# -- shares and fairness ---------------------------------------------------------------


async def test_shares_split_the_rate(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "shares",
        rate=1,
        burst=1,
        initial_tokens=0,
        classes=[WorkloadClass("gold", share=3), WorkloadClass("bronze", share=1)],
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        for _ in range(30):
            tg.start_soon(holders.job("gold"))
            tg.start_soon(holders.job("bronze"))
        await admission_clock.advance(20.5)
        assert Counter(holders.order()) == {"gold": 15, "bronze": 5}
        tg.cancel_scope.cancel()


async def test_equal_shares_alternate_for_slots(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "alternate", rate=1000, burst=100, max_concurrency=1, classes=["a", "b"]
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(
            admission_clock,
            tg,
            *(holders.job("a") for _ in range(6)),
            *(holders.job("b") for _ in range(6)),
        )
        for _ in range(11):
            holders.release()
            await admission_clock.advance(0)
        assert holders.order() == ["a", "a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "b"]
        tg.cancel_scope.cancel()


async def test_shares_weigh_by_cost(admission_clock: VirtualClock) -> None:
    """A class of big requests gets the same token share as one of small requests."""
    limiter = AdaptiveLimiter(
        "by-cost", rate=1, burst=5, initial_tokens=0, classes=["big", "small"]
    )
    admitted: Counter[str] = Counter()

    def worker(workload_class: str, cost: float) -> Job:
        async def run() -> None:
            while True:
                async with limiter.admit(cost, workload_class):
                    admitted[workload_class] += int(cost)

        return run

    async with running() as tg:
        tg.start_soon(worker("big", 5))
        tg.start_soon(worker("small", 1))
        await admission_clock.advance(200)
        tg.cancel_scope.cancel()
    assert admitted["big"] + admitted["small"] == pytest.approx(200, abs=6)
    assert admitted["big"] == pytest.approx(100, abs=10)
    assert admitted["small"] == pytest.approx(100, abs=10)


async def test_a_late_class_is_not_starved_by_a_backlog(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "backlog", rate=1, burst=1, initial_tokens=0, classes=["batch", "interactive"]
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        for _ in range(100):
            tg.start_soon(holders.job("batch"))
        await admission_clock.advance(10.5)
        tg.start_soon(holders.job("interactive"))
        await admission_clock.advance(2)
        # Served at the next token, ahead of the 90 batch requests still queued.
        assert ("interactive", 11.0) in holders.granted
        assert limiter.snapshot().workload_class("batch").waiting == 89
        tg.cancel_scope.cancel()


async def test_every_class_progresses_under_overload(admission_clock: VirtualClock) -> None:
    classes = [WorkloadClass(f"c{i}", share=i + 1) for i in range(4)]
    limiter = AdaptiveLimiter("overload", rate=10, burst=1, initial_tokens=0, classes=classes)
    admitted: Counter[str] = Counter()

    def worker(workload_class: str) -> Job:
        async def run() -> None:
            while True:
                async with limiter.admit(workload_class=workload_class):
                    admitted[workload_class] += 1

        return run

    async with running() as tg:
        for spec in classes:
            for _ in range(3):
                tg.start_soon(worker(spec.name))
        await admission_clock.advance(100)
        tg.cancel_scope.cancel()
    total = sum(admitted.values())
    assert total == pytest.approx(1000, abs=2)
    for i, spec in enumerate(classes):
        assert admitted[spec.name] / total == pytest.approx((i + 1) / 10, abs=0.01)


# -- class caps and rates ----------------------------------------------------------------


async def test_a_class_cap_holds_without_blocking_other_classes(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter(
        "class-cap",
        rate=1000,
        burst=100,
        max_concurrency=10,
        classes=[WorkloadClass("a", max_concurrency=1), "b"],
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(admission_clock, tg, holders.job("a"), holders.job("a"))
        await start_in_order(admission_clock, tg, *(holders.job("b") for _ in range(3)))
        assert holders.order() == ["a", "b", "b", "b"]
        assert limiter.snapshot().workload_class("a").waiting == 1
        holders.release("a")
        await admission_clock.advance(0)
        assert holders.order()[-1] == "a"
        assert limiter.snapshot().workload_class("a").in_flight == 1
        tg.cancel_scope.cancel()


async def test_a_class_rate_paces_the_class_alone(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "class-rate", rate=100, burst=10, classes=[WorkloadClass("slow", rate=0.5), "quick"]
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *(holders.job("slow") for _ in range(4)))
        await start_in_order(admission_clock, tg, *(holders.job("quick") for _ in range(5)))
        # The slow class's waiters hold up nobody else.
        assert [t for name, t in holders.granted if name == "quick"] == [0.0] * 5
        await admission_clock.advance(10)
    assert [t for name, t in holders.granted if name == "slow"] == [0.0, 2.0, 4.0, 6.0]
    slow = limiter.snapshot().workload_class("slow")
    assert (slow.rate, slow.burst) == (0.5, 1.0)
    assert slow.tokens == 1.0
    assert limiter.snapshot().workload_class("quick").tokens is None


async def test_a_class_burst(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "class-burst", rate=100, burst=10, classes=[WorkloadClass("b", rate=1, burst=3)]
    )
    assert [limiter.try_acquire() is not None for _ in range(4)] == [True, True, True, False]
    await admission_clock.advance(1)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None


async def test_a_class_rate_below_the_limiter_rate_holds_in_the_long_run(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter(
        "long", rate=5, burst=5, classes=[WorkloadClass("capped", rate=1, burst=2), "free"]
    )
    admitted: Counter[str] = Counter()

    def worker(workload_class: str) -> Job:
        async def run() -> None:
            while True:
                async with limiter.admit(workload_class=workload_class):
                    admitted[workload_class] += 1

        return run

    async with running() as tg:
        tg.start_soon(worker("capped"))
        tg.start_soon(worker("free"))
        await admission_clock.advance(100)
        tg.cancel_scope.cancel()
    assert admitted["capped"] == pytest.approx(2 + 100, abs=1)
    assert admitted["capped"] + admitted["free"] == pytest.approx(5 + 500, abs=1)


# -- borrowing ------------------------------------------------------------------------


async def test_an_idle_class_lends_its_rate(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("lend-rate", rate=2, burst=1, initial_tokens=0, classes=["a", "b"])
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        for _ in range(10):
            tg.start_soon(holders.job("a"))
        await admission_clock.advance(5)
        # All of the limiter's rate, not half of it.
        assert len(holders.granted) == 10
        tg.cancel_scope.cancel()


async def test_a_borrower_gives_slots_back_as_its_permits_end(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter(
        "lend-slots", rate=1000, burst=100, max_concurrency=4, classes=["a", "b"]
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *(holders.job("a") for _ in range(4)))
        assert limiter.in_flight == 4
        await start_in_order(admission_clock, tg, holders.job("b"))
        # No preemption: a keeps all four while they run.
        assert limiter.snapshot().workload_class("a").in_flight == 4
        assert limiter.snapshot().workload_class("b").waiting == 1
        await start_in_order(admission_clock, tg, holders.job("a"))
        holders.release("a")
        await admission_clock.advance(0)
        # The slot a gave back went to b, not to a's own newcomer.
        assert holders.order()[-1] == "b"
        holders.release("a")
        await admission_clock.advance(0)
        assert holders.order()[-2:] == ["b", "a"]
        tg.cancel_scope.cancel()


# -- retune_class ---------------------------------------------------------------------


@pytest.mark.parametrize(("new_rate", "due"), [(0.2, 7.0), (0.05, 16.0)])
async def test_retune_class_replans_a_sleeping_waiter(
    admission_clock: VirtualClock, new_rate: float, due: float
) -> None:
    limiter = AdaptiveLimiter(
        "class-replan", rate=1000, burst=100, classes=[WorkloadClass("c", rate=0.1)]
    )
    first = limiter.try_acquire(workload_class="c")
    assert first is not None
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        tg.start_soon(holders.job("c"))
        await admission_clock.advance(4)
        limiter.retune_class("c", rate=new_rate)
        await admission_clock.advance(20)
    [(name, at)] = holders.granted
    assert name == "c"
    assert at == pytest.approx(due, abs=1e-6)
    assert limiter.snapshot().workload_class("c").rate == new_rate


async def test_retune_class_adds_a_rate_to_a_class(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("add-rate", rate=1000, burst=100, classes=["a"])
    limiter.retune_class("a", rate=0.5)
    snapshot = limiter.snapshot().workload_class("a")
    assert (snapshot.rate, snapshot.burst, snapshot.tokens) == (0.5, 1.0, 1.0)
    assert limiter.try_acquire() is not None
    assert limiter.try_acquire() is None
    limiter.retune_class("a", burst=4)
    assert limiter.snapshot().workload_class("a").burst == 4.0
    await admission_clock.advance(8)
    assert [limiter.try_acquire() is not None for _ in range(5)] == [True] * 4 + [False]


async def test_retune_class_cap_raises_and_lowers(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "class-cap-retune", rate=1000, burst=100, classes=[WorkloadClass("a", max_concurrency=1)]
    )
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *(holders.job("a") for _ in range(3)))
        assert len(holders.granted) == 1
        limiter.retune_class("a", max_concurrency=3)
        await admission_clock.advance(0)
        assert len(holders.granted) == 3
        limiter.retune_class("a", max_concurrency=1)
        # Nothing in flight is cancelled.
        assert limiter.in_flight == 3
        await start_in_order(admission_clock, tg, holders.job("a"))
        holders.release()
        holders.release()
        await admission_clock.advance(0)
        assert len(holders.granted) == 3
        holders.release()
        await admission_clock.advance(0)
        assert len(holders.granted) == 4
        tg.cancel_scope.cancel()


async def test_retune_class_of_the_default_binds_async_with(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("default-retune", rate=1000, burst=100)
    limiter.retune_class("default", max_concurrency=1)
    entered: list[float] = []
    release = anyio.Event()

    async def worker() -> None:
        async with limiter:
            entered.append(admission_clock.monotonic())
            await release.wait()

    async with running() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
        await admission_clock.advance(1)
        assert entered == [0.0]
        assert limiter.waiting == 1
        release.set()
        await admission_clock.advance(1)
    assert entered == [0.0, 1.0]
    limiter.retune_class("default", max_concurrency=5, rate=1)
    async with limiter:
        pass
    assert limiter.try_acquire() is None  # the class bucket (burst 1) is empty now


async def test_retune_class_floor(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "floor-retune",
        rate=1000,
        burst=100,
        max_concurrency=3,
        classes=["bulk", WorkloadClass("urgent")],
    )
    limiter.retune_class("urgent", minimum_floor=1)
    assert [limiter.try_acquire(workload_class="bulk") is not None for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert limiter.snapshot().workload_class("urgent").minimum_floor == 1
    with pytest.raises(ValueError, match=r"max_concurrency=3.*\(4\)"):
        limiter.retune_class("urgent", minimum_floor=4)
    assert limiter.snapshot().workload_class("urgent").minimum_floor == 1
    limiter.retune_class("urgent", minimum_floor=0)
    assert limiter.try_acquire(workload_class="bulk") is not None


async def test_retune_class_share(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "share-retune", rate=1, burst=1, initial_tokens=0, classes=["gold", "bronze"]
    )
    limiter.retune_class("gold", share=3)
    assert limiter.snapshot().workload_class("gold").share == 3.0
    holders = Holders(limiter, admission_clock)
    async with running() as tg:
        for _ in range(30):
            tg.start_soon(holders.job("gold"))
            tg.start_soon(holders.job("bronze"))
        await admission_clock.advance(20.5)
        assert Counter(holders.order()) == {"gold": 15, "bronze": 5}
        tg.cancel_scope.cancel()


async def test_retune_class_burst_below_a_waiters_cost_fails_it(
    admission_clock: VirtualClock,
) -> None:
    limiter = AdaptiveLimiter(
        "class-shrink", rate=1000, burst=100, classes=[WorkloadClass("c", rate=1, burst=3)]
    )
    assert limiter.try_acquire(3, "c") is not None
    errors: list[ValueError] = []

    async def waiter() -> None:
        try:
            await limiter.acquire(3, "c")
        except ValueError as exc:
            errors.append(exc)

    async with running() as tg:
        tg.start_soon(waiter)
        await admission_clock.advance(1)
        limiter.retune_class("c", burst=2)
        await admission_clock.advance(0)
    assert len(errors) == 1
    assert "'c'" in str(errors[0])
    assert limiter.waiting == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": math.nan}, r"classes\['a'\]\.rate.*nan"),
        ({"rate": -1}, r"classes\['a'\]\.rate.*-1"),
        ({"burst": 3}, r"classes\['a'\]\.burst=3 needs a rate"),
        ({"rate": 1, "burst": 0.5}, r"classes\['a'\]\.burst.*0\.5"),
        ({"share": 0}, r"classes\['a'\]\.share.*0"),
        ({"max_concurrency": 0}, r"classes\['a'\]\.max_concurrency.*0"),
        ({"minimum_floor": -1}, r"classes\['a'\]\.minimum_floor.*-1"),
        ({"max_concurrency": 1, "minimum_floor": 2}, r"minimum_floor=2 is above"),
    ],
)
async def test_retune_class_refuses_bad_values(
    admission_clock: VirtualClock, kwargs: dict[str, float], match: str
) -> None:
    limiter = AdaptiveLimiter(
        "class-bad", rate=1000, burst=100, max_concurrency=10, classes=["a", "b"]
    )
    with pytest.raises(ValueError, match=match):
        limiter.retune_class("a", **kwargs)  # type: ignore[arg-type]
    snapshot = limiter.snapshot().workload_class("a")
    assert (snapshot.rate, snapshot.share, snapshot.max_concurrency, snapshot.minimum_floor) == (
        None,
        1.0,
        None,
        0,
    )


# -- the WorkloadClass spec -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "share": 0}, r"classes\['x'\]\.share.*0"),
        ({"name": "x", "share": math.nan}, r"share.*nan"),
        ({"name": "x", "share": math.inf}, r"share.*inf"),
        ({"name": "x", "minimum_floor": -1}, r"minimum_floor.*-1"),
        ({"name": "x", "max_concurrency": 0}, r"max_concurrency.*0"),
        ({"name": "x", "minimum_floor": 3, "max_concurrency": 2}, r"minimum_floor=3 is above"),
        ({"name": "x", "rate": math.nan}, r"rate.*nan"),
        ({"name": "x", "rate": 0}, r"rate.*0"),
        ({"name": "x", "burst": 2}, r"burst=2 needs a rate"),
        ({"name": "x", "rate": 1, "burst": 0.5}, r"burst.*0\.5"),
    ],
)
def test_workload_class_refuses_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WorkloadClass(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"share": "1"}, {"minimum_floor": 1.5}, {"max_concurrency": True}, {"share": True}],
)
def test_workload_class_refuses_wrong_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        WorkloadClass("x", **kwargs)  # type: ignore[arg-type]


def test_workload_class_is_frozen_with_defaults() -> None:
    spec = WorkloadClass("x")
    assert (spec.share, spec.minimum_floor, spec.max_concurrency, spec.rate, spec.burst) == (
        1.0,
        0,
        None,
        None,
        None,
    )
    with pytest.raises(AttributeError):
        spec.share = 2  # type: ignore[misc]


def test_class_snapshot_reports_the_spec(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "spec",
        rate=10,
        burst=10,
        max_concurrency=8,
        classes=[
            WorkloadClass("a", share=2, minimum_floor=1, max_concurrency=4, rate=2, burst=3),
            "b",
        ],
    )
    a = limiter.snapshot().workload_class("a")
    assert (a.name, a.share, a.minimum_floor, a.max_concurrency) == ("a", 2.0, 1, 4)
    assert (a.rate, a.burst, a.tokens) == (2.0, 3.0, 3.0)
    b = limiter.snapshot().workload_class("b")
    assert (b.share, b.minimum_floor, b.max_concurrency, b.rate, b.burst) == (
        1.0,
        0,
        None,
        None,
        None,
    )
