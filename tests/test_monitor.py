"""The pressure monitor end to end on the virtual clock: poll, evaluate, retune."""

from __future__ import annotations

import anyio
import pytest
from monitor_helpers import NEW_FILE, RATE, TITUS, Pipeline, pipeline
from structlog.testing import capture_logs

from admission.monitor import PressureMonitor
from admission.policy import FailureKind
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


async def test_sustained_pressure_retunes_at_the_boundary_and_back_after_cooldown(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        assert p.expensive_rate() == RATE["normal"]
        p.source.set(NEW_FILE, 200)
        await p.until(5)  # the tick at t=5 reads 200: the sustained window opens
        await p.until(64.999)
        assert p.level() == "normal"
        assert p.expensive_rate() == RATE["normal"]
        await p.until(65)
        assert p.level() == "critical"
        assert p.expensive_rate() == RATE["critical"]
        assert p.limiter.snapshot().workload_class("expensive").max_concurrency == 1

        p.source.set(NEW_FILE, 0)
        await p.until(70)  # below the exit threshold from t=70: cooldown 120 s
        status = p.registry.status().queue(NEW_FILE)
        assert status.window is not None
        assert status.window.kind == "cooldown"
        assert status.cooldown_remaining_seconds == 120
        await p.until(189.999)
        assert p.expensive_rate() == RATE["critical"]
        await p.until(190)
        assert p.level() == "normal"
        assert p.expensive_rate() == RATE["normal"]
    reasons = [(t.name, t.to_level, t.reason) for t in p.registry.transitions()]
    assert (NEW_FILE, "critical", "sustained_pressure") in reasons
    assert (NEW_FILE, "normal", "cooldown_elapsed") in reasons


async def test_a_telemetry_outage_is_fail_safe_within_stale_after(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        await p.until(5)  # last good sample at t=5; stale after 15 s
        p.source.fail_all(FailureKind.CONNECTION, "connection refused")
        await p.until(15)
        status = p.registry.status()
        assert not status.fail_safe
        assert status.queue(NEW_FILE).telemetry.consecutive_failures == 2
        await p.until(20)
        status = p.registry.status()
        assert status.fail_safe
        assert status.telemetry_stale
        assert status.fail_safe_reason is not None
        assert NEW_FILE in status.fail_safe_reason
        assert status.queue(NEW_FILE).telemetry.last_error == "connection: connection refused"
        assert status.workload_class("expensive").level == "fail_safe"
        assert p.expensive_rate() == RATE["fail_safe"]
        # Missing data is not an empty queue: no sample was invented.
        assert status.queue(NEW_FILE).queued_messages == 0
        assert status.queue(NEW_FILE).telemetry.last_sample_age_seconds == 15

        p.source.heal_all()
        await p.until(25)  # good samples again; recovery takes the cooldown (120 s)
        await p.until(144.999)
        assert p.registry.status().fail_safe
        await p.until(145)
        assert not p.registry.status().fail_safe
        assert p.expensive_rate() == RATE["normal"]


async def test_one_failing_queue_does_not_stop_the_others(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock, NEW_FILE, TITUS)
    p.source.fail(TITUS, FailureKind.MISSING_QUEUE, "no such queue")
    async with p.monitor:
        p.source.set(NEW_FILE, 80)
        await p.until(5 + 60)
        assert p.level(NEW_FILE) == "warning"
        assert p.level(TITUS) == "fail_safe"
        entry = p.registry.status().queue(TITUS)
        assert entry.telemetry.health == "failing"
        assert entry.telemetry.last_error == "missing_queue: no such queue"


async def test_a_source_that_raises_is_a_failed_read_not_a_crash(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)

    async def broken(queues: object, *, now: float) -> object:
        raise RuntimeError("socket exploded")

    async with p.monitor:
        p.source.read = broken  # type: ignore[method-assign, assignment]
        with capture_logs() as logs:
            await p.until(15)
        entry = p.registry.status().queue(NEW_FILE)
        assert entry.telemetry.consecutive_failures == 3
        assert entry.telemetry.last_error == (
            "source_error: source raised RuntimeError: socket exploded"
        )
        assert entry.severity == "fail_safe"
        assert p.monitor.running
    errors = [e for e in logs if e["event"] == "admission.telemetry.error"]
    assert len(errors) == 1  # one event per failure streak, not one per tick
    assert errors[0]["queue"] == NEW_FILE
    assert errors[0]["kind"] == "source_error"


async def test_bad_answers_become_failures_with_reasons(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock, NEW_FILE, TITUS)
    from admission.policy import QueueSample

    answers: dict[str, object] = {}

    async def odd(queues: object, *, now: float) -> object:
        return dict(answers, **{NEW_FILE: QueueSample(TITUS, now, 1)})

    p.source.read = odd  # type: ignore[method-assign, assignment]
    answers[TITUS] = 42
    await p.monitor.tick()
    state = p.registry.state.queues
    assert state[NEW_FILE].last_error == (
        "source_error: the source answered for queue 'titus-titus_input'"
    )
    assert state[TITUS].last_error == ("source_error: the source answered a int, not a sample")
    answers.clear()
    await p.monitor.tick()
    assert p.registry.state.queues[TITUS].last_error == "no_sample: the source gave no answer"


async def test_an_exception_inside_a_tick_is_logged_counted_and_the_next_tick_runs(
    admission_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline(admission_clock)
    real = p.registry.observe
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ZeroDivisionError("engine bug")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(p.registry, "observe", flaky)
    with capture_logs() as logs:
        async with p.monitor:
            await p.until(10)
    assert calls["n"] == 3  # t=0, t=5 (raised), t=10
    stats = p.monitor.statistics()
    assert stats.failed_ticks == 1
    assert stats.consecutive_failed_ticks == 0
    tick_errors = [e for e in logs if e["event"] == "admission.monitor.tick_error"]
    assert len(tick_errors) == 1
    assert tick_errors[0]["error"] == "ZeroDivisionError: engine bug"
    assert isinstance(tick_errors[0]["exc_info"], ZeroDivisionError)


def _breakable(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The registry's ``observe`` raises while the returned ``["on"]`` is true."""
    real = p.registry.observe
    broken = {"on": False}

    def observe(*args: object, **kwargs: object) -> object:
        if broken["on"]:
            raise RuntimeError("boom")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(p.registry, "observe", observe)
    return broken


async def test_ticks_failing_in_a_row_put_the_classes_in_fail_safe(
    admission_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline(admission_clock, failed_ticks_to_fail_safe=2)
    broken = _breakable(p, monkeypatch)
    async with p.monitor:
        broken["on"] = True
        await p.until(5)
        assert p.expensive_rate() == RATE["normal"]
        await p.until(10)
        assert p.expensive_rate() == RATE["fail_safe"]
        assert p.registry.status().fail_safe_reason == (
            "pressure monitor stopped (2 ticks in a row failed: RuntimeError)"
        )
        broken["on"] = False
        await p.until(15)
        # The failed ticks stepped nothing since t=0: the 15 s without a step are a
        # stale gap (stale after 15 s), so the queue is fail-safe until it recovers.
        status = p.registry.status()
        assert status.monitor == "running"
        assert status.fail_safe_reason == (f"{NEW_FILE}: no good sample for 15s (stale after 15s)")
        assert p.expensive_rate() == RATE["fail_safe"]
        await p.until(15 + 120)
        assert p.expensive_rate() == RATE["normal"]
        assert not p.registry.status().fail_safe


async def test_one_failed_tick_is_no_gap(
    admission_clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline(admission_clock, failed_ticks_to_fail_safe=1)
    broken = _breakable(p, monkeypatch)
    async with p.monitor:
        broken["on"] = True
        await p.until(5)
        assert p.expensive_rate() == RATE["fail_safe"]  # the governor stopped
        broken["on"] = False
        await p.until(10)  # 10 s without a step: within stale after 15 s
        assert p.expensive_rate() == RATE["normal"]
        assert not p.registry.status().fail_safe


async def test_stopping_the_monitor_leaves_its_classes_in_fail_safe(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    assert p.registry.status().monitor == "absent"
    async with p.monitor:
        assert p.registry.status().monitor == "running"
        await p.until(5)
    status = p.registry.status()
    assert status.monitor == "stopped"
    assert status.fail_safe
    assert status.queue_pressure_level == "critical"  # what existing clients understand
    assert status.fail_safe_reason == "pressure monitor stopped (cancelled)"
    assert all(c.level == "fail_safe" for c in status.class_states)
    assert p.expensive_rate() == RATE["fail_safe"]
    expensive = p.limiter.snapshot().workload_class("expensive")
    assert expensive.max_concurrency == 1
    stopped = [t for t in p.registry.transitions() if t.reason == "monitor_stopped"]
    assert {t.name for t in stopped} == {"standard", "expensive"}


async def test_the_monitor_is_restartable(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        await p.until(5)
    assert p.expensive_rate() == RATE["fail_safe"]
    async with p.monitor:
        assert p.expensive_rate() == RATE["normal"]
        assert p.registry.status().monitor == "running"
        await p.until(20)
    assert p.monitor.statistics().ticks == 2 + 4  # t=0,5 then t=5,10,15,20
    restarted = [t for t in p.registry.transitions() if t.reason == "monitor_started"]
    assert {t.name for t in restarted} == {"standard", "expensive"}


async def test_started_in_a_task_group(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    async with anyio.create_task_group() as tg:
        await tg.start(p.monitor.run)
        assert p.monitor.running
        assert p.source.reads == 1  # started() comes after the first tick
        await p.until(10)
        assert p.source.reads == 3
        with pytest.raises(RuntimeError, match="already running"):
            await p.monitor.run()
        tg.cancel_scope.cancel()
    assert not p.monitor.running
    assert p.registry.status().monitor == "stopped"


async def test_a_crashing_monitor_says_why(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)

    class Broken:
        """The clock's sleep fails: the monitor's loop itself dies."""

        monotonic = staticmethod(admission_clock.monotonic)
        wall = staticmethod(admission_clock.wall)

        async def sleep(self, seconds: float) -> None:
            raise OSError("clock gone")

    p.registry._clock = Broken()
    with pytest.raises(BaseExceptionGroup) as raised:
        async with anyio.create_task_group() as tg:
            await tg.start(p.monitor.run)
    assert raised.group_contains(OSError, match="clock gone")
    status = p.registry.status()
    assert status.fail_safe_reason == "pressure monitor stopped (crashed: OSError: clock gone)"


async def test_polls_keep_their_cadence_with_jitter(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock, jitter=0.2, seed=7)
    async with p.monitor:
        await p.until(1000)
    ticks = p.monitor.statistics().ticks
    # 1000 s at 5 s ± 20 %: the mean gap stays 5 s, so about 200 polls.
    assert 180 <= ticks <= 222
    assert p.source.reads == ticks


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("interval", 0, "interval must be a positive number of seconds, got 0"),
        ("interval", float("nan"), "interval must be a positive number of seconds, got nan"),
        ("jitter", 1.0, r"jitter must be in \[0, 1\), got 1.0"),
        ("failed_ticks_to_fail_safe", 0, "failed_ticks_to_fail_safe must be >= 1, got 0"),
    ],
)
def test_bad_options_name_the_value(
    admission_clock: VirtualClock, option: str, value: object, message: str
) -> None:
    p = pipeline(admission_clock)
    with pytest.raises(ValueError, match=message):
        PressureMonitor(p.source, registry=p.registry, **{option: value})  # type: ignore[arg-type]


async def test_the_source_is_closed_when_the_monitor_stops(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    p.source.aclose = aclose  # type: ignore[method-assign]
    async with p.monitor:
        assert closed == []
    assert closed == [True]


async def test_an_error_in_the_body_comes_out_as_raised(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    with pytest.raises(KeyError, match="from the body"):
        async with p.monitor:
            raise KeyError("from the body")
    assert p.registry.status().monitor == "stopped"
