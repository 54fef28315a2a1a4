"""Faults inside the process, against the assembled system (tests/faults/fault_pipeline.py).

Each test runs the whole worker on the virtual clock (queue, gate, handler,
monitor on the balanced preset, status over HTTP), injects one fault mid-run and
checks: fail-safe within the bound the configuration gives, the status saying
why, the limiter at the conservative limits while it lasts (handlers running,
admissions conforming to them), nothing lost, and normal operation back after
recovery.  The figures of each run are printed (``pytest -s``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from fault_checks import (
    as_limits,
    assert_conservative_while,
    assert_limits,
    assert_normal,
    assert_normal_parallelism_returns,
    assert_nothing_lost,
    class_entry,
    fail_safe_bound,
    policy,
    report,
)
from fault_pipeline import NEW_FILE, Message, System
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, WorkloadClass
from admission.policy import FailureKind
from admission.telemetry import Reading
from admission.telemetry.memory import MemorySource
from admission.testing import VirtualClock
from integrations.file_enrichment import (
    EXPENSIVE,
    STANDARD,
    AmqpEvent,
    FileClassifier,
    WorkerPool,
)
from integrations.file_enrichment.amqp import HANDLER_FAILED, decode_cloud_event

pytestmark = pytest.mark.anyio


def last_good_sample(system: System, status: Mapping[str, Any]) -> float:
    """When the queue's last good sample was taken, as the status tells its age."""
    age = status["queue_states"][0]["telemetry"]["last_sample_age_seconds"]
    assert isinstance(age, float)
    return system.clock.monotonic() - age


def next_poll(system: System, after: float) -> float:
    """The monitor's next tick after ``after`` (no jitter: every ``interval`` from 0)."""
    interval = system.monitor.interval
    return (after // interval + 1) * interval


class RaisingSource:
    """A source that breaks its promise to return failures: ``read`` raises while ``broken``."""

    def __init__(self, inner: MemorySource) -> None:
        self.inner = inner
        self.broken: str | None = None
        self.raised = 0

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        if self.broken is not None:
            self.raised += 1
            raise ConnectionResetError(self.broken)
        return await self.inner.read(queues, now=now)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_source_that_raises_is_fail_safe_within_the_bound_and_recovers(
    admission_clock: VirtualClock,
) -> None:
    system = System(admission_clock)
    source = RaisingSource(system.memory)
    system.source = system.monitor.source = source
    p = policy(system)
    async with system.running():
        await system.until(32.5)
        await assert_normal(system)
        fault = admission_clock.monotonic()
        source.broken = "connection reset by the management API"
        await system.until(fault + fail_safe_bound(system))
        entered = system.transition_at(NEW_FILE, "fail_safe", after=fault)
        assert entered is not None
        status = await system.status()
        last_good = last_good_sample(system, status)
        assert entered - last_good <= fail_safe_bound(system)
        assert status["fail_safe"] is True
        assert status["monitor"] == "running"
        assert status["active_preset"] == "conservative"
        assert status["fail_safe_reason"] == (
            f"{NEW_FILE}: {p.failure_threshold} consecutive failed reads (source_error: "
            "source raised ConnectionResetError: connection reset by the management API)"
        )
        queue = status["queue_states"][0]
        assert queue["telemetry"]["health"] == "failing"
        assert queue["queued_messages"] is not None  # the last good reading, not an empty queue
        assert [c["level"] for c in status["class_states"]] == ["fail_safe", "fail_safe"]
        assert_limits(system, "fail_safe")
        assert system.monitor.running
        system.publish_burst(12, STANDARD)  # load the standard class past its safe cap

        await system.until(82.5)
        heal = admission_clock.monotonic()
        source.broken = None
        await system.until(heal + system.monitor.interval + p.recovery_seconds)
        left = system.left_fail_safe_at(NEW_FILE, after=heal)
        assert left is not None
        assert left - heal <= system.monitor.interval + p.recovery_seconds
        assert system.monitor.statistics().failed_ticks == 0  # a raising read is not a tick crash
        ran = assert_conservative_while(system, entered, left)
        assert (
            system.work.peak(STANDARD, entered, left)
            == system.fail_safe_limits(STANDARD).parallelism
        )
        await assert_normal(system)
        await assert_normal_parallelism_returns(system, left + 5)
        figures = await assert_nothing_lost(system)
    report(
        "source raises",
        bound_s=fail_safe_bound(system),
        fail_safe_after_fault_s=entered - fault,
        fail_safe_after_last_good_s=entered - last_good,
        recovery_window_s=p.recovery_seconds,
        recovered_after_heal_s=left - heal,
        raised_reads=source.raised,
        runs_in_fail_safe=ran,
        **figures,
    )


class FlakyLimiter(AdaptiveLimiter):
    """A limiter whose class retunes raise while ``broken`` (a store it must write to is down)."""

    __slots__ = ("attempts", "broken")

    def __init__(self) -> None:
        super().__init__(
            "file_enrichment",
            rate=100,
            burst=100,
            classes=[WorkloadClass(STANDARD), WorkloadClass(EXPENSIVE)],
        )
        self.broken: str | None = None
        self.attempts = 0

    def retune_class(self, name: str, **limits: Any) -> None:
        self.attempts += 1
        if self.broken is not None:
            raise RuntimeError(self.broken)
        super().retune_class(name, **limits)


async def test_a_retune_that_raises_is_shown_retried_at_every_poll_and_applied_once_it_works(
    admission_clock: VirtualClock,
) -> None:
    limiter = FlakyLimiter()
    system = System(admission_clock, limiter=limiter)
    p = policy(system)
    async with system.running():
        await system.until(12.5)
        fault = admission_clock.monotonic()
        limiter.broken = "limits store unreachable"
        system.memory.fail_all(FailureKind.CONNECTION, "connection refused")
        await system.until(fault + fail_safe_bound(system))
        entered = system.transition_at(NEW_FILE, "fail_safe", after=fault)
        assert entered is not None
        status = await system.status()
        assert entered - last_good_sample(system, status) <= fail_safe_bound(system)
        assert status["fail_safe"] is True
        # The policy wants the safe limits; the limiter could not take them, and says so.
        expensive = class_entry(status, EXPENSIVE)
        assert expensive["rate"] == system.fail_safe_limits(EXPENSIVE).rate
        assert system.limits(EXPENSIVE) == as_limits(system.normal_limits(EXPENSIVE))
        assert expensive["limiters"][0]["retune_error"] == "RuntimeError: limits store unreachable"
        assert (
            "file_enrichment/expensive: retune to the expensive limits failed "
            "(RuntimeError: limits store unreachable); it keeps its previous limits, "
            "retried at every poll"
        ) in status["warnings"]
        assert system.monitor.running
        assert system.monitor.statistics().failed_ticks == 0

        attempts = limiter.attempts
        await system.until(entered + 2 * system.monitor.interval)
        assert limiter.attempts == attempts + 2 * 2  # both classes, at each of two polls
        assert system.limits(EXPENSIVE) == as_limits(system.normal_limits(EXPENSIVE))

        await system.until(37.5)
        fixed = admission_clock.monotonic()
        limiter.broken = None
        applied = next_poll(system, fixed)
        await system.until(applied - 0.5)
        assert system.limits(EXPENSIVE) == as_limits(system.normal_limits(EXPENSIVE))
        await system.until(applied)
        assert_limits(system, "fail_safe")
        status = await system.status()
        assert all(e["retune_error"] is None for e in class_entry(status, EXPENSIVE)["limiters"])
        assert not any("retune" in w for w in status["warnings"])
        system.publish_burst(12, STANDARD)

        await system.until(42.5)
        heal = admission_clock.monotonic()
        system.memory.heal_all()
        await system.until(heal + system.monitor.interval + p.recovery_seconds)
        left = system.left_fail_safe_at(NEW_FILE, after=heal)
        assert left is not None
        ran = assert_conservative_while(system, applied, left)
        await assert_normal(system)
        await assert_normal_parallelism_returns(system, left + 5)
        figures = await assert_nothing_lost(system)
    report(
        "retune raises",
        bound_s=fail_safe_bound(system),
        policy_fail_safe_after_fault_s=entered - fault,
        applied_after_retune_fixed_s=applied - fixed,
        apply_bound_s=system.monitor.interval,
        recovered_after_heal_s=left - heal,
        registry_retune_errors=system.registry.retune_errors,
        runs_in_fail_safe=ran,
        **figures,
    )


class FlakyHook:
    """A classify hook of the user's that raises for every fourth file while ``broken``."""

    def __init__(self, classifier: FileClassifier) -> None:
        self.classifier = classifier
        self.broken = False
        self.victims: set[int] = set()
        self.raised = 0

    def __call__(self, event: AmqpEvent) -> str:
        file_id = int(event.data["id"])
        if self.broken and file_id % 4 == 1:
            self.raised += 1
            self.victims.add(file_id)
            raise LookupError(f"classification service down (file {file_id})")
        return self.classifier(event)


@pytest.mark.parametrize("path", ["gate", "pool"])
async def test_a_class_hook_that_raises_hands_the_message_back_and_the_rest_flows(
    admission_clock: VirtualClock, path: str
) -> None:
    hook = FlakyHook(FileClassifier([".zip"]))
    system = System(admission_clock, classify=hook)
    failed: list[str] = []

    async def processed_then_acked(event: AmqpEvent) -> None:
        await system.work(event)
        await event.message.ack()

    def never_fails(event: AmqpEvent, exc: Exception) -> None:
        raise AssertionError(f"the handler never fails here: {exc!r}")

    pool: WorkerPool[AmqpEvent] = system.gate.pool(
        processed_then_acked, maxsize=64, on_error=never_fails
    )

    async def into_pool(message: Message) -> None:
        # The pool path's subscription layer: a put that raises (the pool's
        # classify is the hook) gives the message back, as amqp_consumer does.
        event = decode_cloud_event(message)  # type: ignore[arg-type]
        try:
            await pool.put(event)
        except Exception as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            await message.nack(requeue=True)

    consume = system.deliver if path == "gate" else into_pool
    with capture_logs() as logs:
        async with pool, system.running(consume):
            await system.until(10.5)
            broken_at = admission_clock.monotonic()
            hook.broken = True
            await system.until(40.5)
            healed_at = admission_clock.monotonic()
            hook.broken = False
            status = await system.status()
            # Not telemetry: the policy is untouched, nothing goes fail-safe.
            assert status["fail_safe"] is False
            assert [c["level"] for c in status["class_states"]] == ["normal", "normal"]
            assert_limits(system, "normal")
            await system.until(60)
            figures = await assert_nothing_lost(system)
            await pool.join()
    assert hook.raised >= len(hook.victims) > 0
    # A victim ran only once the hook worked again; everything else kept flowing meanwhile.
    victim_runs = [r for r in system.work.runs if r.id in hook.victims]
    assert min(r.start for r in victim_runs) >= healed_at
    others = [
        r for r in system.work.runs if r.id not in hook.victims and broken_at <= r.start < healed_at
    ]
    published_meanwhile = int(healed_at - broken_at)  # one a second
    assert len(others) >= published_meanwhile - len(hook.victims) - 2
    if path == "gate":
        assert system.consumer.failed_total == hook.raised
        errors = [e for e in logs if e["event"] == HANDLER_FAILED]
        assert len(errors) == hook.raised
        assert errors[0]["error"].startswith("LookupError: classification service down")
        assert errors[0]["requeue"] is True
    else:
        assert len(failed) == hook.raised
        assert pool.completed_total == figures["published"]
    report(
        f"class hook raises ({path})",
        broken_s=healed_at - broken_at,
        hook_raised=hook.raised,
        victims=len(hook.victims),
        others_run_meanwhile=len(others),
        first_victim_run_after_heal_s=min(r.start for r in victim_runs) - healed_at,
        **figures,
    )


class SlowSource:
    """The memory source; while ``slow``, a read takes ``delay`` seconds (an HTTP round trip)."""

    def __init__(self, inner: MemorySource, clock: VirtualClock, delay: float = 1.0) -> None:
        self.inner = inner
        self.clock = clock
        self.delay = delay
        self.slow = False
        self.reading = 0

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        self.reading += 1
        try:
            if self.slow:
                await self.clock.sleep(self.delay)
            return await self.inner.read(queues, now=now)
        finally:
            self.reading -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_cancelled_monitor_is_fail_safe_at_once_and_a_restart_recovers(
    admission_clock: VirtualClock,
) -> None:
    system = System(admission_clock)
    source = SlowSource(system.memory, admission_clock)
    system.source = system.monitor.source = source
    p = policy(system)
    async with system.running():
        await system.until(27.5)
        await assert_normal(system)
        source.slow = True
        await system.until(30.5)
        assert source.reading == 1  # the tick of t=30 is reading (until 31)
        last_good = last_good_sample(system, await system.status())
        cancelled_at = admission_clock.monotonic()
        system.cancel_monitor()
        await admission_clock.advance(0)
        assert source.reading == 0
        entered = system.transition_at(EXPENSIVE, "fail_safe", after=cancelled_at)
        assert entered == cancelled_at  # at once: no bound to wait for
        assert not system.monitor.running
        status = await system.status()
        assert status["monitor"] == "stopped"
        assert status["fail_safe"] is True
        assert status["fail_safe_reason"] == "pressure monitor stopped (cancelled)"
        assert status["queue_pressure_level"] == "critical"
        expensive = class_entry(status, EXPENSIVE)
        assert expensive["reason"] == (
            "fail-safe: pressure monitor stopped (cancelled); conservative critical limits"
        )
        assert_limits(system, "fail_safe")
        system.publish_burst(12, STANDARD)

        source.slow = False
        await system.until(60.5)  # stopped for longer than stale_after
        restarted_at = admission_clock.monotonic()
        await system.start_monitor()
        status = await system.status()
        assert status["monitor"] == "running"
        # The last good sample went stale while nobody watched: fail-safe
        # goes on until recovery_seconds of good samples, not straight back.
        assert status["fail_safe"] is True
        assert status["fail_safe_reason"] == (
            f"{NEW_FILE}: no good sample for {restarted_at - last_good:g}s "
            f"(stale after {p.stale_after_seconds:g}s)"
        )
        assert status["queue_states"][0]["window"]["kind"] == "recovery"
        assert_limits(system, "fail_safe")

        await system.until(restarted_at + p.recovery_seconds)
        left = system.left_fail_safe_at(NEW_FILE, after=restarted_at)
        assert left == restarted_at + p.recovery_seconds
        ran = assert_conservative_while(system, entered, left)
        await assert_normal(system)
        await assert_normal_parallelism_returns(system, left + 5)
        figures = await assert_nothing_lost(system)
    reasons = [(t.name, t.reason) for t in system.registry.transitions()]
    assert (EXPENSIVE, "monitor_stopped") in reasons
    assert (NEW_FILE, "telemetry_stale") in reasons
    assert (NEW_FILE, "telemetry_recovered") in reasons
    report(
        "monitor cancelled",
        bound_s=0.0,
        fail_safe_after_cancel_s=entered - cancelled_at,
        stopped_s=restarted_at - cancelled_at,
        recovery_window_s=p.recovery_seconds,
        recovered_after_restart_s=left - restarted_at,
        runs_in_fail_safe=ran,
        **figures,
    )
