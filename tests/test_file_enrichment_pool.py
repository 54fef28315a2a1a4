"""The file_enrichment WorkerPool on the virtual clock: parallelism that follows the limiter."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from file_enrichment_helpers import event, registry
from limiter_helpers import running
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, WorkloadClass
from admission.testing import VirtualClock
from integrations.file_enrichment import EXPENSIVE, STANDARD, FileEnrichmentGate, WorkerPool
from integrations.file_enrichment.pool import TASK_FAILED

pytestmark = pytest.mark.anyio


def by_name(item: str) -> str:
    return EXPENSIVE if item.endswith(".zip") else STANDARD


def limiter(standard: int | None = 3, expensive: int | None = 1) -> AdaptiveLimiter:
    """Plenty of tokens: only the classes' caps bind."""
    return AdaptiveLimiter(
        "pool",
        rate=100,
        burst=100,
        classes=[
            WorkloadClass(STANDARD, max_concurrency=standard),
            WorkloadClass(EXPENSIVE, max_concurrency=expensive),
        ],
    )


def assert_idle(pool: WorkerPool[Any]) -> None:
    """Nothing left to drain: a lost item fails here instead of hanging the block's exit."""
    assert (dict(pool.running), dict(pool.queued)) == ({STANDARD: 0, EXPENSIVE: 0},) * 2


async def stop_after(clock: VirtualClock, guard: anyio.CancelScope, seconds: float) -> None:
    """Run the clock, then cancel ``guard``: an exit that never ends fails instead of hanging."""
    await clock.advance(seconds)
    guard.cancel()


class Work:
    """The handler: holds each item on the clock, noting starts, ends and the peak per class."""

    def __init__(
        self,
        clock: VirtualClock,
        hold: float | dict[str, float] = 10.0,
        classify: Callable[[Any], str] = by_name,
        fail: frozenset[str] = frozenset(),
    ) -> None:
        self.clock = clock
        self.hold = hold
        self.classify = classify
        self.fail = fail
        self.started: list[tuple[str, float]] = []
        self.done: list[tuple[str, float]] = []
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def __call__(self, item: Any) -> None:
        name = item["data"]["path"] if isinstance(item, dict) else item
        cls = self.classify(item)
        self.started.append((name, self.clock.monotonic()))
        self.now[cls] += 1
        self.peak[cls] = max(self.peak[cls], self.now[cls])
        try:
            await self.clock.sleep(self.hold if isinstance(self.hold, float) else self.hold[cls])
            if name in self.fail:
                raise ValueError(f"cannot enrich {name!r}")
        finally:
            self.now[cls] -= 1
        self.done.append((name, self.clock.monotonic()))

    def starts(self, suffix: str = "") -> list[tuple[str, float]]:
        """Starts by time (trio runs tasks started at one instant in any order)."""
        return sorted((s for s in self.started if s[0].endswith(suffix)), key=lambda s: s[::-1])


# -- parallelism ----------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 3])
async def test_parallelism_is_what_the_class_cap_admits(
    admission_clock: VirtualClock, cap: int
) -> None:
    work = Work(admission_clock, hold=1.0)
    items = [f"{i}.txt" for i in range(7)]
    async with WorkerPool(limiter(standard=cap), work, classify=by_name) as pool:
        for item in items:
            await pool.put(item)
        await admission_clock.advance(0)
        assert pool.running == {STANDARD: cap, EXPENSIVE: 0}
        assert pool.queued == {STANDARD: 7 - cap, EXPENSIVE: 0}
        await admission_clock.advance(7)
        assert_idle(pool)
    assert work.peak[STANDARD] == cap
    # FIFO: each batch is the oldest items, started the instant the previous ones ended.
    assert work.starts() == [(item, float(i // cap)) for i, item in enumerate(items)]
    assert (pool.completed_total, pool.failed_total) == (7, 0)


async def test_each_class_is_served_in_the_order_it_was_put(admission_clock: VirtualClock) -> None:
    work = Work(admission_clock, hold=1.0)
    items = ["d.zip", "3.txt", "b.zip", "1.txt", "0.txt", "a.zip", "2.txt", "c.zip"]
    async with WorkerPool(limiter(standard=1, expensive=1), work, classify=by_name) as pool:
        for item in items:
            await pool.put(item)
        await admission_clock.advance(4)
        assert_idle(pool)
    assert work.starts(".zip") == [("d.zip", 0), ("b.zip", 1), ("a.zip", 2), ("c.zip", 3)]
    assert work.starts(".txt") == [("3.txt", 0), ("1.txt", 1), ("0.txt", 2), ("2.txt", 3)]


async def test_retunes_apply_at_once_and_a_shrink_cancels_nothing(
    admission_clock: VirtualClock,
) -> None:
    lim = limiter(standard=1)
    work = Work(admission_clock)
    async with WorkerPool(lim, work, classify=by_name) as pool:
        for i in range(5):
            await pool.put(f"{i}.txt")
        await admission_clock.advance(1)
        lim.retune_class(STANDARD, max_concurrency=3)
        await admission_clock.advance(0)
        assert pool.running[STANDARD] == 3  # two more started at once, at t=1
        await admission_clock.advance(1)
        lim.retune_class(STANDARD, max_concurrency=1)
        await admission_clock.advance(0)
        assert pool.running[STANDARD] == 3  # nothing cancelled
        await admission_clock.advance(30)
        assert_idle(pool)
    # 0.txt ends at 10 leaving two running (over the cap of 1): the next waits for both.
    assert work.starts() == [
        ("0.txt", 0),
        ("1.txt", 1),
        ("2.txt", 1),
        ("3.txt", 11),
        ("4.txt", 21),
    ]
    assert sorted(work.done) == [
        ("0.txt", 10),
        ("1.txt", 11),
        ("2.txt", 11),
        ("3.txt", 21),
        ("4.txt", 31),
    ]
    assert work.peak[STANDARD] == 3
    assert lim.in_flight == 0


async def test_the_pool_follows_the_policy_both_ways(admission_clock: VirtualClock) -> None:
    reg = registry("aggressive")  # expensive: 2 at once under normal, 1 under critical
    gate = FileEnrichmentGate(reg)
    work = Work(admission_clock, classify=gate.classify)
    async with gate.pool(work) as pool:
        for i in range(6):
            await pool.put(event(f"{i}.zip"))
        await admission_clock.advance(1)
        override = reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600)
        await admission_clock.advance(0)
        assert pool.running[EXPENSIVE] == 2  # the shrink cancels nothing
        await admission_clock.advance(24)
        reg.remove_override(override.id)  # t=25: back to 2 at once
        await admission_clock.advance(0)
        assert pool.running[EXPENSIVE] == 2
        await admission_clock.advance(20)
        assert_idle(pool)
    assert work.starts() == [
        ("0.zip", 0),
        ("1.zip", 0),
        ("2.zip", 10),  # critical: one at a time once both have ended
        ("3.zip", 20),
        ("4.zip", 25),  # normal again: a second one starts the moment the override is lifted
        ("5.zip", 30),
    ]
    assert work.peak[EXPENSIVE] == 2
    assert gate.limiter.in_flight == 0


# -- lanes and backpressure -------------------------------------------------------------------


async def test_a_full_expensive_lane_holds_back_neither_standard_work_nor_its_puts(
    admission_clock: VirtualClock,
) -> None:
    gate = FileEnrichmentGate(registry())  # balanced: standard 3 at once, expensive 1
    work = Work(admission_clock, hold={STANDARD: 1.0, EXPENSIVE: 10.0}, classify=gate.classify)
    put_at: list[float] = []

    async with running() as tg, gate.pool(work, maxsize=2) as pool:
        for path in ("a.zip", "B.ISO", "c.7z"):
            await pool.put(event(path))
        await admission_clock.advance(0)
        with pytest.raises(anyio.WouldBlock, match="the 'expensive' lane is full \\(2 items\\)"):
            pool.put_nowait(event("d.exe"))

        async def producer() -> None:
            await pool.put(event("d.exe"))
            put_at.append(admission_clock.monotonic())

        tg.start_soon(producer)
        for i in range(5):
            await pool.put(event(f"{i}.txt"))
        await admission_clock.advance(0)
        # Classified by extension: the archives wait in their own lane.
        assert pool.running == {STANDARD: 3, EXPENSIVE: 1}
        assert pool.queued == {STANDARD: 2, EXPENSIVE: 2}
        await admission_clock.advance(2)
        assert sorted(t for name, t in work.done if name.endswith(".txt")) == [1, 1, 1, 2, 2]
        assert put_at == []  # the expensive producer still waits for room in its lane
        await admission_clock.advance(40)
        assert_idle(pool)
    assert put_at == [10.0]  # a.zip ended, B.ISO left the lane: room for one
    assert work.starts(".txt")[-1] == ("4.txt", 1.0)
    assert [s for s in work.starts() if not s[0].endswith(".txt")] == [
        ("a.zip", 0),
        ("B.ISO", 10),
        ("c.7z", 20),
        ("d.exe", 30),
    ]
    assert work.peak == {STANDARD: 3, EXPENSIVE: 1}
    assert gate.limiter.snapshot().workload_class(EXPENSIVE).admitted_total == 4


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "3", None])
async def test_a_bad_maxsize_is_named(bad: Any) -> None:
    async def handle(item: object) -> None: ...

    with pytest.raises(
        ValueError, match=f"maxsize must be an int >= 1, got {re.escape(repr(bad))}"
    ):
        WorkerPool(limiter(), handle, maxsize=bad)


async def test_misuse_is_named(admission_clock: VirtualClock) -> None:
    work = Work(admission_clock)
    pool = WorkerPool(limiter(), work, classify=lambda item: "huge")
    with pytest.raises(RuntimeError, match="enter the pool first"):
        await pool.put("a.txt")
    with pytest.raises(RuntimeError, match="enter the pool first"):
        pool.put_nowait("a.txt")
    async with pool:
        unknown = r"pool: unknown workload_class 'huge' \(known: 'standard', 'expensive'\)"
        with pytest.raises(ValueError, match=unknown):
            await pool.put("a.txt")
        with pytest.raises(ValueError, match=unknown):
            pool.put_nowait("a.txt")
        with pytest.raises(RuntimeError, match="can be entered only once"):
            async with pool:
                pass
        assert pool.queued == {STANDARD: 0, EXPENSIVE: 0}
    with pytest.raises(anyio.ClosedResourceError):
        await pool.put("a.txt")
    with pytest.raises(anyio.ClosedResourceError):
        pool.put_nowait("a.txt")
    assert work.started == []


# -- draining, joining, leaving early ----------------------------------------------------------


@pytest.mark.parametrize("close", [False, True])
async def test_join_waits_for_all_and_leaving_drains_every_item_once(
    admission_clock: VirtualClock, close: bool
) -> None:
    lim = limiter(standard=2)
    work = Work(admission_clock, hold=1.0)
    joined: list[float] = []
    left: list[float] = []
    with anyio.CancelScope() as guard:
        async with anyio.create_task_group() as tg:
            async with WorkerPool(lim, work) as pool:  # no classify: the limiter's first class
                for i in range(5):
                    await pool.put(f"{i}.txt")

                async def join() -> None:
                    await pool.join()
                    joined.append(admission_clock.monotonic())

                tg.start_soon(join)
                await admission_clock.advance(10)
                assert joined == [3.0]
                for i in range(5, 9):
                    await pool.put(f"{i}.txt")
                await admission_clock.advance(0)
                assert pool.running == {STANDARD: 2, EXPENSIVE: 0}
                if close:  # what was put still runs
                    pool.close()
                    with pytest.raises(anyio.ClosedResourceError, match="pool is closed"):
                        pool.put_nowait("9.txt")
                tg.start_soon(stop_after, admission_clock, guard, 10)
            left.append(admission_clock.monotonic())
    assert left == [12.0]  # the block waited for the last two
    await pool.join()  # nothing pending: returns at once
    assert Counter(name for name, _ in work.done) == {f"{i}.txt": 1 for i in range(9)}
    assert (pool.completed_total, pool.failed_total, pool.unfinished) == (9, 0, ())
    assert (lim.in_flight, lim.snapshot().workload_class(STANDARD).admitted_total) == (0, 9)


@pytest.mark.parametrize("how", ["error", "cancelled"])
async def test_leaving_early_cancels_the_work_and_hands_back_what_did_not_finish(
    admission_clock: VirtualClock, how: str
) -> None:
    lim = limiter(standard=2)
    work = Work(admission_clock, hold=1.0)
    items = [f"{i}.txt" for i in range(6)]
    caught: list[BaseException] = []
    left: list[float] = []
    with anyio.CancelScope() as guard:
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                try:
                    async with WorkerPool(lim, work) as pool:
                        for item in items:
                            await pool.put(item)
                        await admission_clock.advance(1.5)
                        tg.start_soon(stop_after, admission_clock, guard, 10)
                        if how == "error":
                            raise LookupError("boom")
                        scope.cancel()
                        await anyio.sleep_forever()
                except LookupError as exc:
                    caught.append(exc)
            left.append(admission_clock.monotonic())
    assert left == [1.5]  # at once: the running work was cancelled, not waited for
    assert scope.cancelled_caught is (how == "cancelled")
    assert [str(exc) for exc in caught] == (["boom"] if how == "error" else [])
    assert sorted(work.done) == [("0.txt", 1.0), ("1.txt", 1.0)]
    assert work.starts()[2:] == [("2.txt", 1.0), ("3.txt", 1.0)]  # cancelled while running
    assert sorted(pool.unfinished) == items[2:]  # two cancelled, two never started
    assert sorted([name for name, _ in work.done] + list(pool.unfinished)) == items
    assert (pool.completed_total, pool.failed_total) == (2, 0)
    assert (lim.in_flight, lim.waiting) == (0, 0)
    with pytest.raises(anyio.ClosedResourceError):
        await pool.put("6.txt")


# -- failing handlers ---------------------------------------------------------------------------


@pytest.mark.parametrize("on_error", [True, False])
async def test_a_failing_handler_is_reported_and_the_pool_goes_on(
    admission_clock: VirtualClock, on_error: bool
) -> None:
    lim = limiter(standard=2)
    work = Work(admission_clock, hold=1.0, fail=frozenset({"1.txt", "4.txt"}))
    errors: list[tuple[str, Exception]] = []

    def report(item: str, exc: Exception) -> None:
        errors.append((item, exc))

    with capture_logs() as logs:
        async with WorkerPool(lim, work, on_error=report if on_error else None) as pool:
            for i in range(6):
                await pool.put(f"{i}.txt")
            await admission_clock.advance(3)
            assert_idle(pool)
    assert sorted(name for name, _ in work.done) == ["0.txt", "2.txt", "3.txt", "5.txt"]
    assert (pool.completed_total, pool.failed_total, pool.unfinished) == (4, 2, ())
    assert (lim.in_flight, lim.snapshot().workload_class(STANDARD).admitted_total) == (0, 6)
    failed = [log for log in logs if log["event"] == TASK_FAILED]
    if on_error:
        assert [(item, repr(exc)) for item, exc in errors] == [
            ("1.txt", "ValueError(\"cannot enrich '1.txt'\")"),
            ("4.txt", "ValueError(\"cannot enrich '4.txt'\")"),
        ]
        assert failed == []
    else:
        assert [
            (log["item"], log["error"], log["log_level"], log["limiter"]) for log in failed
        ] == [
            ("'1.txt'", "ValueError: cannot enrich '1.txt'", "error", "pool"),
            ("'4.txt'", "ValueError: cannot enrich '4.txt'", "error", "pool"),
        ]
        assert isinstance(failed[0]["exc_info"], ValueError)
