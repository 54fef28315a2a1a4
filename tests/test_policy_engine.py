"""The pure state machine: sustain and cooldown windows to the second, hysteresis, records.

Every preset is exercised with its own thresholds and windows.  The engine is
pure: time is the ``now`` each call is given.
"""

from __future__ import annotations

import itertools

import pytest
from policy_helpers import LEVEL_NAMES, NEW_FILE, PRESETS, REASON_CODES, Run, one_queue

from admission.policy import Level, QueuePolicy


def _policy(preset: str) -> QueuePolicy:
    return one_queue(preset).get_preset(preset).queue_policy(NEW_FILE)


def _warning_value(policy: QueuePolicy) -> float:
    """A signal at the warning level and below critical's exit threshold."""
    value = (policy.warning_threshold + policy.exit(Level.CRITICAL)) / 2
    assert policy.warning_threshold <= value < policy.exit(Level.CRITICAL)
    return float(int(value))


def _escalated(preset: str, value: float) -> tuple[Run, QueuePolicy, float]:
    """A run whose queue reached the level of ``value`` (sampled every 5 s from 0)."""
    run, policy = Run(one_queue(preset)), _policy(preset)
    at = policy.sustained_seconds
    run.samples(NEW_FILE, 0, at + 1, value)
    assert run.level(NEW_FILE) == policy.recommend(value).value
    return run, policy, at


# -- sustain ------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("tick_has_sample", [False, True])
def test_critical_escalation_happens_exactly_at_sustained_seconds(
    preset: str, tick_has_sample: bool
) -> None:
    run, policy = Run(one_queue(preset)), _policy(preset)
    critical, sustained = policy.critical_threshold, policy.sustained_seconds
    run.samples(NEW_FILE, 0, sustained, critical)
    almost = sustained - 0.1
    if tick_has_sample:
        run.sample(NEW_FILE, almost, critical)
    else:
        run.tick(almost)
    assert run.level(NEW_FILE) == "normal"
    assert run.transitions == []
    window = run.engine.window(run.state.queues[NEW_FILE], almost, policy)
    assert window is not None
    assert (window.kind, window.pending_level, window.since) == ("sustained", Level.CRITICAL, 0)
    assert window.remaining_seconds == pytest.approx(0.1)

    run.sample(NEW_FILE, sustained, critical)
    assert run.level(NEW_FILE) == "critical"
    # Straight from normal to critical: no stop at warning.
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.from_level, record.to_level, record.at) == ("normal", "critical", sustained)
    assert record.reason == "sustained_pressure"
    assert record.signal == critical
    assert (record.warning_threshold, record.critical_threshold) == (
        policy.warning_threshold,
        critical,
    )
    assert run.state.queues[NEW_FILE].level_since == sustained
    assert run.engine.window(run.state.queues[NEW_FILE], sustained, policy) is None


@pytest.mark.parametrize("preset", PRESETS)
def test_warning_escalation_happens_exactly_at_sustained_seconds(preset: str) -> None:
    run, policy = Run(one_queue(preset)), _policy(preset)
    sustained, value = policy.sustained_seconds, policy.warning_threshold
    run.samples(NEW_FILE, 0, sustained, value)
    run.tick(sustained - 0.1)
    assert run.level(NEW_FILE) == "normal"
    run.sample(NEW_FILE, sustained, value)
    assert run.level(NEW_FILE) == "warning"
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.from_level, record.to_level, record.reason) == (
        "normal",
        "warning",
        "sustained_pressure",
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_warning_first_when_only_warning_is_sustained(preset: str) -> None:
    run, policy = Run(one_queue(preset)), _policy(preset)
    sustained = policy.sustained_seconds
    # At warning from 0, at critical only from 30 s on.
    run.samples(NEW_FILE, 0, 30, policy.warning_threshold)
    run.samples(NEW_FILE, 30, sustained + 1, policy.critical_threshold)
    assert run.level(NEW_FILE) == "warning"
    run.samples(NEW_FILE, sustained + 5, 30 + sustained, policy.critical_threshold)
    run.tick(30 + sustained - 0.1)
    assert run.level(NEW_FILE) == "warning"
    run.sample(NEW_FILE, 30 + sustained, policy.critical_threshold)
    assert run.level(NEW_FILE) == "critical"
    steps = [(t.from_level, t.to_level, t.at) for t in run.queue_transitions(NEW_FILE)]
    assert steps == [("normal", "warning", sustained), ("warning", "critical", 30 + sustained)]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_dip_below_the_threshold_restarts_the_sustain_window(preset: str) -> None:
    run, policy = Run(one_queue(preset)), _policy(preset)
    critical, sustained = policy.critical_threshold, policy.sustained_seconds
    run.samples(NEW_FILE, 0, sustained - 5, critical)
    run.sample(NEW_FILE, sustained - 5, 0)  # the dip
    restart = sustained  # the next sample at/above the threshold
    run.samples(NEW_FILE, restart, restart + sustained, critical)
    run.tick(restart + sustained - 0.1)
    assert run.level(NEW_FILE) == "normal"
    assert run.transitions == []
    window = run.engine.window(run.state.queues[NEW_FILE], restart + 1, policy)
    assert window is not None
    assert window.since == restart
    run.sample(NEW_FILE, restart + sustained, critical)
    assert run.level(NEW_FILE) == "critical"


@pytest.mark.parametrize("preset", PRESETS)
def test_a_dip_below_critical_only_still_lets_warning_through(preset: str) -> None:
    run, policy = Run(one_queue(preset)), _policy(preset)
    critical, sustained = policy.critical_threshold, policy.sustained_seconds
    run.samples(NEW_FILE, 0, sustained - 5, critical)
    run.sample(NEW_FILE, sustained - 5, policy.warning_threshold)  # below critical only
    run.sample(NEW_FILE, sustained, critical)
    # Warning was held the whole time; critical restarted at `sustained`.
    assert run.level(NEW_FILE) == "warning"
    run.samples(NEW_FILE, sustained + 5, 2 * sustained, critical)
    assert run.level(NEW_FILE) == "warning"
    run.sample(NEW_FILE, 2 * sustained, critical)
    assert run.level(NEW_FILE) == "critical"


# -- cooldown -----------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("lands_on", ["normal", "warning"])
def test_cooldown_from_critical_ends_exactly_at_cooldown_seconds(
    preset: str, lands_on: str
) -> None:
    run, policy, at = _escalated(preset, _policy(preset).critical_threshold)
    run.samples(NEW_FILE, at + 5, at + 15, policy.critical_threshold)
    below = at + 15  # the first sample below critical's exit threshold
    value = 0.0 if lands_on == "normal" else _warning_value(policy)
    cooldown = policy.cooldown_seconds
    run.samples(NEW_FILE, below, below + cooldown, value)
    run.tick(below + cooldown - 0.1)
    assert run.level(NEW_FILE) == "critical"
    window = run.engine.window(run.state.queues[NEW_FILE], below + cooldown - 0.1, policy)
    assert window is not None
    assert (window.kind, window.since, window.pending_level.value) == ("cooldown", below, lands_on)
    assert window.remaining_seconds == pytest.approx(0.1)

    run.sample(NEW_FILE, below + cooldown, value)
    assert run.level(NEW_FILE) == lands_on
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.from_level, record.to_level, record.at) == (
        "critical",
        lands_on,
        below + cooldown,
    )
    assert record.reason == "cooldown_elapsed"
    assert record.signal == value
    assert record.exit_ratio == policy.exit_ratio


@pytest.mark.parametrize("preset", PRESETS)
def test_cooldown_from_warning_ends_exactly_at_cooldown_seconds(preset: str) -> None:
    policy = _policy(preset)
    run, _, at = _escalated(preset, policy.warning_threshold)
    below = at + 5
    value = policy.exit(Level.WARNING) - 1
    run.samples(NEW_FILE, below, below + policy.cooldown_seconds, value)
    run.tick(below + policy.cooldown_seconds - 0.1)
    assert run.level(NEW_FILE) == "warning"
    run.sample(NEW_FILE, below + policy.cooldown_seconds, value)
    assert run.level(NEW_FILE) == "normal"
    assert run.queue_transitions(NEW_FILE)[-1].reason == "cooldown_elapsed"


@pytest.mark.parametrize("preset", PRESETS)
def test_one_warning_sample_in_the_cooldown_window_lands_on_warning(preset: str) -> None:
    policy = _policy(preset)
    run, _, at = _escalated(preset, policy.critical_threshold)
    below, cooldown = at + 5, policy.cooldown_seconds
    run.samples(NEW_FILE, below, below + 30, 0)
    run.sample(NEW_FILE, below + 30, _warning_value(policy))  # one sample at warning
    run.samples(NEW_FILE, below + 35, below + cooldown + 1, 0)
    assert run.level(NEW_FILE) == "warning"
    assert run.queue_transitions(NEW_FILE)[-1].at == below + cooldown


@pytest.mark.parametrize("preset", PRESETS)
def test_the_cooldown_window_slides_after_a_partial_drop(preset: str) -> None:
    # Landed on warning because one sample in the window reached it; warning's own
    # cooldown has run since the next sample fell below its exit, so normal comes
    # one cooldown after that sample, not a second full window after the drop.
    policy = _policy(preset)
    run, _, at = _escalated(preset, policy.critical_threshold)
    below, cooldown = at + 5, policy.cooldown_seconds
    run.samples(NEW_FILE, below, below + 30, 0)
    run.sample(NEW_FILE, below + 30, _warning_value(policy))
    quiet = below + 35
    run.samples(NEW_FILE, quiet, below + cooldown + 1, 0)
    assert run.level(NEW_FILE) == "warning"
    window = run.engine.window(run.state.queues[NEW_FILE], below + cooldown, policy)
    assert window is not None
    assert (window.kind, window.pending_level, window.since) == ("cooldown", "normal", quiet)
    assert window.remaining_seconds == pytest.approx(quiet + cooldown - (below + cooldown))
    run.samples(NEW_FILE, below + cooldown + 5, quiet + cooldown, 0)
    run.tick(quiet + cooldown - 0.1)
    assert run.level(NEW_FILE) == "warning"
    run.sample(NEW_FILE, quiet + cooldown, 0)
    assert run.level(NEW_FILE) == "normal"
    assert run.queue_transitions(NEW_FILE)[-1].at == quiet + cooldown


@pytest.mark.parametrize("preset", PRESETS)
def test_a_sample_at_the_exit_threshold_restarts_the_cooldown(preset: str) -> None:
    policy = _policy(preset)
    run, _, at = _escalated(preset, policy.critical_threshold)
    cooldown, exit_value = policy.cooldown_seconds, policy.exit(Level.CRITICAL)
    run.samples(NEW_FILE, at + 5, at + 5 + cooldown - 10, 0)
    run.sample(NEW_FILE, at + cooldown - 5, exit_value)  # not below the exit: contradicts
    restart = at + cooldown
    run.samples(NEW_FILE, restart, restart + cooldown, 0)
    run.tick(restart + cooldown - 0.1)
    assert run.level(NEW_FILE) == "critical"
    run.sample(NEW_FILE, restart + cooldown, 0)
    assert run.level(NEW_FILE) == "normal"


# -- hysteresis ---------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("level", [Level.WARNING, Level.CRITICAL])
def test_oscillating_between_exit_and_enter_threshold_never_flaps(
    preset: str, level: Level
) -> None:
    policy = _policy(preset)
    run, _, at = _escalated(preset, policy.enter(level))
    before = len(run.transitions)
    low, high = policy.exit(level), policy.enter(level)
    # Long dwells on both sides (each longer than both windows), and fast flips.
    dwell = max(policy.sustained_seconds, policy.cooldown_seconds) + 30
    values = itertools.cycle(
        [low] * int(dwell // 5)
        + [high] * int(dwell // 5)
        + [low, high] * 20
        + [(low + high) / 2] * int(dwell // 5)
    )
    start = at + 5
    for i in range(2000):  # 10 000 s of samples every 5 s
        run.sample(NEW_FILE, start + 5 * i, next(values))
    assert run.level(NEW_FILE) == level.value
    assert run.transitions[before:] == []


def test_without_the_dead_band_the_same_signal_would_move() -> None:
    """The control for the test above: just below the exit threshold, the level does leave."""
    policy = _policy("balanced")
    run, _, at = _escalated("balanced", policy.critical_threshold)
    run.samples(
        NEW_FILE, at + 5, at + 5 + policy.cooldown_seconds + 1, policy.exit(Level.CRITICAL) - 1
    )
    assert run.level(NEW_FILE) == "warning"


# -- views and records ----------------------------------------------------------


def test_no_window_runs_on_a_calm_queue() -> None:
    run = Run(one_queue("balanced"))
    run.samples(NEW_FILE, 0, 600, 10)
    assert run.engine.window(run.state.queues[NEW_FILE], 600, _policy("balanced")) is None
    assert run.transitions == []
    assert run.state.queues[NEW_FILE].signal == 10


def test_the_state_is_never_mutated() -> None:
    run = Run(one_queue("balanced"))
    first = run.state
    run.samples(NEW_FILE, 0, 61, 200)
    assert first.queues[NEW_FILE].level is Level.NORMAL
    assert first.at == 0
    assert run.state.queues[NEW_FILE].level is Level.CRITICAL
    assert run.state is not first


def test_every_transition_record_is_complete() -> None:
    policy = _policy("balanced")
    run = Run(one_queue("balanced"))
    run.samples(NEW_FILE, 0, 61, policy.critical_threshold)  # -> critical
    run.samples(NEW_FILE, 65, 65 + 121, 60)  # -> warning
    run.samples(NEW_FILE, 190, 190 + 121, 0)  # -> normal
    for t in range(315, 331, 5):  # -> fail-safe
        run.fail(NEW_FILE, t)
    run.samples(NEW_FILE, 335, 335 + 121, 0)  # -> recovered
    queue_moves = [(t.from_level, t.to_level) for t in run.queue_transitions(NEW_FILE)]
    assert queue_moves == [
        ("normal", "critical"),
        ("critical", "warning"),
        ("warning", "normal"),
        ("normal", "fail_safe"),
        ("fail_safe", "normal"),
    ]
    times = set()
    for record in run.transitions:
        assert record.scope in ("queue", "class")
        assert record.name in (NEW_FILE, "standard", "expensive")
        assert record.from_level in LEVEL_NAMES
        assert record.to_level in LEVEL_NAMES
        assert record.from_level != record.to_level
        assert record.reason in REASON_CODES
        assert record.detail
        # The signal and the thresholds that caused it, for queues and classes alike.
        assert record.signal is not None, record
        assert record.warning_threshold == policy.warning_threshold, record
        assert record.critical_threshold == policy.critical_threshold, record
        assert record.exit_ratio == policy.exit_ratio, record
        times.add(record.at)
    assert times == {60, 185, 310, 325, 455}
    classes = [(t.name, t.to_level, t.reason) for t in run.transitions if t.scope == "class"]
    assert ("standard", "critical", "watched_queue") in classes
    assert ("expensive", "fail_safe", "fail_safe") in classes
    assert ("expensive", "normal", "telemetry_recovered") in classes
    reasons = [t.reason for t in run.queue_transitions(NEW_FILE)]
    assert reasons == [
        "sustained_pressure",
        "cooldown_elapsed",
        "cooldown_elapsed",
        "telemetry_failing",
        "telemetry_recovered",
    ]
