"""Fail-safe: stale or failing telemetry, recovery, and missing data never read as empty."""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import NEW_FILE, PRESETS, Run, failure, one_queue, ready

from admission.policy import FailureKind, Level, QueuePolicy, QueueSample, builtin_presets

CONSERVATIVE = builtin_presets()["conservative"]


def _run(preset: str = "balanced", **overrides: Any) -> tuple[Run, QueuePolicy]:
    cfg = one_queue(preset, **overrides)
    return Run(cfg), cfg.get_preset(preset).queue_policy(NEW_FILE)


def _failing_run(preset: str = "balanced") -> tuple[Run, QueuePolicy]:
    """Fail-safe entered at t=15 by the third failed read (reads at 5, 10, 15)."""
    run, policy = _run(preset)
    run.sample(NEW_FILE, 0, 0)
    for t in (5, 10, 15):
        run.fail(NEW_FILE, t)
    assert run.state.queues[NEW_FILE].fail_safe
    return run, policy


# -- entering ---------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_fail_safe_at_once_when_the_last_good_sample_is_exactly_stale(preset: str) -> None:
    run, policy = _run(preset)
    stale = policy.stale_after_seconds
    assert stale == 15
    run.sample(NEW_FILE, 100, 10)
    run.tick(100 + stale - 0.1)
    assert run.level(NEW_FILE) == "normal"
    assert run.engine.health(run.state.queues[NEW_FILE], 100 + stale - 0.1, policy) == "ok"
    assert run.transitions == []
    run.tick(100 + stale)
    queue = run.state.queues[NEW_FILE]
    assert queue.fail_safe
    assert queue.display == "fail_safe"
    assert queue.fail_safe_since == 100 + stale
    assert queue.fail_safe_reason == "no good sample for 15s (stale after 15s)"
    assert run.engine.health(queue, 100 + stale, policy) == "stale"
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.from_level, record.to_level, record.at) == ("normal", "fail_safe", 115)
    assert record.reason == "telemetry_stale"
    assert record.signal == 10  # the last value seen


def test_fail_safe_from_any_level_and_staleness_follows_the_configured_value() -> None:
    run, _ = _run("balanced", stale_after_seconds=42, sustained_seconds=0)
    run.sample(NEW_FILE, 0, 500)
    assert run.level(NEW_FILE) == "critical"
    run.tick(41.9)
    assert run.level(NEW_FILE) == "critical"
    run.tick(42)
    assert run.level(NEW_FILE) == "fail_safe"
    assert run.queue_transitions(NEW_FILE)[-1].from_level == "critical"


@pytest.mark.parametrize("threshold", [1, 3, 5])
def test_fail_safe_at_the_nth_consecutive_failure_never_at_n_minus_one(threshold: int) -> None:
    run, policy = _run("balanced", failure_threshold=threshold)
    run.sample(NEW_FILE, 0, 0)
    for i in range(1, threshold):
        run.fail(NEW_FILE, i, "connection refused")
    assert run.level(NEW_FILE) == "normal"
    queue = run.state.queues[NEW_FILE]
    assert queue.consecutive_failures == threshold - 1
    if threshold > 1:
        assert queue.last_error == "timeout: connection refused"
        # Some failures but not enough: reported, not yet fail-safe.
        assert run.engine.health(queue, threshold - 1, policy) == "failing"
    run.fail(NEW_FILE, threshold, "connection refused")
    queue = run.state.queues[NEW_FILE]
    assert queue.fail_safe
    assert queue.consecutive_failures == threshold
    assert queue.fail_safe_reason == (
        f"{threshold} consecutive failed reads (timeout: connection refused)"
    )
    assert run.engine.health(queue, threshold, policy) == "failing"
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.reason, record.at) == ("telemetry_failing", threshold)


def test_a_good_sample_between_failures_resets_the_count() -> None:
    run, _ = _run()
    run.fail(NEW_FILE, 1)
    run.fail(NEW_FILE, 2)
    run.sample(NEW_FILE, 3, 0)
    assert run.state.queues[NEW_FILE].consecutive_failures == 0
    run.fail(NEW_FILE, 4)
    run.fail(NEW_FILE, 5)
    assert run.level(NEW_FILE) == "normal"
    run.fail(NEW_FILE, 6)
    assert run.level(NEW_FILE) == "fail_safe"


def test_failures_do_not_refresh_staleness() -> None:
    run, _ = _run("balanced", failure_threshold=100)
    run.sample(NEW_FILE, 0, 0)
    for t in (5, 10, 14.9):
        run.fail(NEW_FILE, t)
    assert run.level(NEW_FILE) == "normal"
    run.fail(NEW_FILE, 15)
    assert run.level(NEW_FILE) == "fail_safe"
    assert run.queue_transitions(NEW_FILE)[-1].reason == "telemetry_stale"


# -- missing data is never an empty queue ----------------------------------------


def test_a_queue_with_no_samples_goes_to_fail_safe_not_to_normal_with_zero() -> None:
    run, policy = _run()
    run.tick(14.9)
    queue = run.state.queues[NEW_FILE]
    assert (queue.signal, queue.last_sample, queue.fail_safe) == (None, None, False)
    run.tick(15)
    queue = run.state.queues[NEW_FILE]
    assert queue.fail_safe
    assert queue.signal is None
    assert queue.fail_safe_reason == "no sample yet after 15s (stale after 15s)"
    assert run.engine.health(queue, 15, policy) == "stale"
    assert run.class_level("standard") == "fail_safe"
    assert run.class_level("expensive") == "fail_safe"
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.reason, record.signal) == ("telemetry_stale", None)


def test_a_queue_seen_only_in_observations_still_gets_a_staleness_clock() -> None:
    run, _ = _run()
    run.step(3, {"surprise": ready("surprise", 3, 1)})
    run.tick(17.9)
    assert run.level("surprise") == "normal"
    run.tick(18)
    assert run.level("surprise") == "fail_safe"


def test_a_sample_whose_signal_is_unknown_counts_as_a_failed_read() -> None:
    run, policy = _run("balanced", signal="drain_time")
    unknown = QueueSample(NEW_FILE, 1, messages_ready=10, deliver_rate=None)
    run.step(1, {NEW_FILE: unknown})
    queue = run.state.queues[NEW_FILE]
    assert queue.consecutive_failures == 1
    assert queue.signal is None
    assert queue.last_good_at is None
    assert queue.last_error is not None
    assert queue.last_error.startswith(FailureKind.UNKNOWN_SIGNAL.value)
    assert "drain_time" in queue.last_error
    run.step(2, {NEW_FILE: QueueSample(NEW_FILE, 2, 10)})
    run.step(3, {NEW_FILE: QueueSample(NEW_FILE, 3, 10)})
    assert run.level(NEW_FILE) == "fail_safe"
    assert run.queue_transitions(NEW_FILE)[-1].reason == "telemetry_failing"
    assert run.engine.health(run.state.queues[NEW_FILE], 3, policy) == "failing"


def test_a_known_signal_is_a_good_sample_even_with_unknown_extras() -> None:
    run, _ = _run("balanced", signal="drain_time")
    run.step(1, {NEW_FILE: QueueSample(NEW_FILE, 1, 100, deliver_rate=4.0)})
    queue = run.state.queues[NEW_FILE]
    assert (queue.signal, queue.consecutive_failures, queue.last_good_at) == (25, 0, 1)


# -- recovery -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(0, "normal"), (60, "warning"), (130, "critical")])
def test_recovery_takes_recovery_seconds_into_the_level_the_samples_support(
    value: float, expected: str
) -> None:
    run, policy = _failing_run()
    recovery = policy.recovery_seconds
    assert recovery == policy.cooldown_seconds == 120
    first = 20
    run.samples(NEW_FILE, first, first + recovery, value)
    window = run.engine.window(run.state.queues[NEW_FILE], first + recovery - 0.1, policy)
    assert window is not None
    assert (window.kind, window.since, window.pending_level.value) == ("recovery", first, expected)
    run.tick(first + recovery - 0.1)
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, first + recovery, value)
    queue = run.state.queues[NEW_FILE]
    assert not queue.fail_safe
    assert queue.fail_safe_reason is None
    assert queue.level.value == expected
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.from_level, record.to_level, record.at) == ("fail_safe", expected, 140)
    assert (record.reason, record.signal) == ("telemetry_recovered", value)
    assert run.engine.health(queue, 140, policy) == "ok"


def test_a_failure_during_recovery_restarts_it() -> None:
    run, _ = _failing_run()
    run.samples(NEW_FILE, 20, 50, 0)
    run.fail(NEW_FILE, 50)
    restart = 55
    run.samples(NEW_FILE, restart, restart + 120, 0)
    run.tick(restart + 119.9)
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, restart + 120, 0)
    assert run.level(NEW_FILE) == "normal"


def test_staleness_during_recovery_restarts_it() -> None:
    run, _ = _failing_run()
    run.samples(NEW_FILE, 20, 40, 0)  # last good sample at 35
    run.tick(50)  # 15 s without a sample: stale again
    restart = 60
    run.samples(NEW_FILE, restart, restart + 120, 0)
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, restart + 120, 0)
    assert run.level(NEW_FILE) == "normal"


def test_the_reason_stays_truthful_while_recovering() -> None:
    run, _ = _failing_run()
    reason = run.state.queues[NEW_FILE].fail_safe_reason
    assert reason == "3 consecutive failed reads (timeout: read timed out)"
    run.sample(NEW_FILE, 20, 0)
    queue = run.state.queues[NEW_FILE]
    assert queue.fail_safe
    assert queue.consecutive_failures == 0
    assert queue.fail_safe_reason is not None
    assert "0 consecutive" not in queue.fail_safe_reason
    assert "None" not in queue.fail_safe_reason


def test_zero_recovery_seconds_ends_fail_safe_on_the_first_good_sample() -> None:
    run, _ = _run("balanced", recovery_seconds=0)
    for t in (1, 2, 3):
        run.fail(NEW_FILE, t)
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, 4, 0)
    assert run.level(NEW_FILE) == "normal"


def test_stale_fail_safe_recovers_from_fresh_samples() -> None:
    run, _ = _run("conservative")
    run.tick(15)
    assert run.level(NEW_FILE) == "fail_safe"
    run.samples(NEW_FILE, 20, 20 + 90, 30)  # conservative: recovery = cooldown = 90 s
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, 110, 30)
    assert run.level(NEW_FILE) == "warning"  # 30 >= conservative's warning (20)


# -- what fail-safe does to the classes ------------------------------------------------


@pytest.mark.parametrize("preset", ["balanced", "aggressive", "conservative"])
def test_fail_safe_classes_get_the_conservative_critical_limits(preset: str) -> None:
    run, _ = _failing_run(preset)
    for name in ("standard", "expensive"):
        state = run.state.classes[name]
        assert state.fail_safe
        assert state.display == "fail_safe"
        assert state.limits == CONSERVATIVE.classes[name].critical
        assert "fail-safe" in state.reason
        assert NEW_FILE in state.reason
    requested = builtin_presets()[preset]
    if preset != "conservative":
        # Not the requested preset's limits: conservative's are tighter.
        assert run.state.classes["standard"].limits != requested.classes["standard"].critical
        assert (
            run.state.classes["standard"].limits.parallelism
            < requested.classes["standard"].critical.parallelism
        )
    expensive = run.state.classes["expensive"].limits
    assert expensive.parallelism >= expensive.minimum_floor >= 1
    assert run.last.limits == {n: c.limits for n, c in run.state.classes.items()}


def test_classes_leave_fail_safe_with_their_queue() -> None:
    run, _ = _failing_run("aggressive")
    run.samples(NEW_FILE, 20, 20 + 121, 0)
    standard = run.state.classes["standard"]
    assert not standard.fail_safe
    assert standard.level is Level.NORMAL
    assert standard.limits == builtin_presets()["aggressive"].classes["standard"].normal
    reasons = {(t.name, t.reason) for t in run.transitions if t.scope == "class"}
    assert ("standard", "telemetry_recovered") in reasons


def test_fail_safe_ignores_failures_of_unrelated_reads() -> None:
    run, _ = _run()
    other = "other-queue"
    for t in (1, 2, 3):
        run.step(t, {NEW_FILE: ready(NEW_FILE, t, 0), other: failure(other, t)})
    assert run.level(NEW_FILE) == "normal"
    assert run.level(other) == "fail_safe"


def test_the_reason_keeps_the_failure_after_the_samples_go_stale() -> None:
    run, _ = _failing_run()
    assert run.state.queues[NEW_FILE].fail_safe_reason == (
        "3 consecutive failed reads (timeout: read timed out)"
    )
    run.fail(NEW_FILE, 20)
    # Stale now (last good sample at 0): the reason still names what failed.
    assert run.state.queues[NEW_FILE].fail_safe_reason == (
        "no good sample for 20s (stale after 15s); 4 failed reads, the last: "
        "timeout: read timed out"
    )
    run.tick(25)  # no read at all: the failures seen so far still explain it
    assert run.state.queues[NEW_FILE].fail_safe_reason == (
        "no good sample for 25s (stale after 15s); 4 failed reads, the last: "
        "timeout: read timed out"
    )


def test_a_gap_no_step_saw_is_judged_before_the_sample_that_ends_it() -> None:
    # Nothing stepped between 0 and 20 (say the monitor's ticks raised): the
    # sample at 20 must not take up the old levels as if no gap had been.
    run, _ = _run("balanced", sustained_seconds=0)
    run.sample(NEW_FILE, 0, 500)
    assert run.level(NEW_FILE) == "critical"
    run.sample(NEW_FILE, 20, 0)
    queue = run.state.queues[NEW_FILE]
    assert queue.fail_safe
    assert queue.fail_safe_since == 20
    [*_, entered] = run.queue_transitions(NEW_FILE)
    assert (entered.from_level, entered.to_level, entered.reason) == (
        "critical",
        "fail_safe",
        "telemetry_stale",
    )
    assert entered.detail == "no good sample for 20s (stale after 15s)"
    # The sample at 20 began the recovery: 120 s of good samples end it.
    run.samples(NEW_FILE, 25, 140, 0)
    assert run.level(NEW_FILE) == "fail_safe"
    run.sample(NEW_FILE, 140, 0)
    assert run.level(NEW_FILE) == "normal"
    assert run.queue_transitions(NEW_FILE)[-1].reason == "telemetry_recovered"


def test_a_sample_within_stale_after_of_the_last_is_no_gap() -> None:
    run, _ = _run("balanced", sustained_seconds=0)
    run.sample(NEW_FILE, 0, 500)
    run.sample(NEW_FILE, 14.9, 500)
    assert run.level(NEW_FILE) == "critical"
    assert not run.state.queues[NEW_FILE].fail_safe
