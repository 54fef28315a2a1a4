"""Policy configuration models, the built-in presets and the pressure signals."""

from __future__ import annotations

import math
from typing import Any

import pytest
from policy_helpers import CONVERSION, NEW_FILE, PRESETS, TITUS
from pydantic import ValidationError

from admission.policy import (
    ClassPolicy,
    Level,
    LevelLimits,
    QueuePolicy,
    QueueSample,
    Signal,
    builtin_presets,
    signal_value,
)

# DESIGN.md "Policy semantics (exact)", the built-in presets table.
DESIGN_TABLE: dict[str, dict[str, Any]] = {
    "conservative": {
        "thresholds": {NEW_FILE: (20, 40), CONVERSION: (10, 20), TITUS: (8, 16), "": (20, 40)},
        "windows": (45, 90),
        "parallelism": (2, 1),
    },
    "balanced": {
        "thresholds": {NEW_FILE: (50, 120), CONVERSION: (30, 80), TITUS: (20, 60), "": (50, 120)},
        "windows": (60, 120),
        "parallelism": (3, 1),
    },
    "aggressive": {
        "thresholds": {
            NEW_FILE: (80, 180),
            CONVERSION: (60, 140),
            TITUS: (40, 100),
            "": (80, 180),
        },
        "windows": (90, 120),
        "parallelism": (4, 2),
    },
}

EXPENSIVE_EXTENSIONS = (".zip", ".7z", ".rar", ".iso", ".vhd", ".vhdx", ".dll", ".exe")


def _policy(**values: Any) -> QueuePolicy:
    base: dict[str, Any] = {
        "warning_threshold": 50,
        "critical_threshold": 120,
        "sustained_seconds": 60,
        "cooldown_seconds": 120,
        "stale_after_seconds": 15,
        "recovery_seconds": 120,
    }
    return QueuePolicy.model_validate({**base, **values})


def test_levels_are_ordered_normal_warning_critical() -> None:
    assert Level.NORMAL < Level.WARNING < Level.CRITICAL
    assert Level.CRITICAL > Level.WARNING > Level.NORMAL
    assert max(Level.WARNING, Level.CRITICAL, Level.NORMAL) is Level.CRITICAL
    assert sorted([Level.CRITICAL, Level.NORMAL, Level.WARNING]) == [
        Level.NORMAL,
        Level.WARNING,
        Level.CRITICAL,
    ]
    assert [lv.rank for lv in Level] == [0, 1, 2]


def test_the_three_builtin_presets_ship() -> None:
    assert set(builtin_presets()) == set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_builtin_presets_match_the_design_table(name: str) -> None:
    preset = builtin_presets()[name]
    row = DESIGN_TABLE[name]
    for queue, (warning, critical) in row["thresholds"].items():
        policy = preset.queue_policy(queue or "some-other-queue")
        assert (policy.warning_threshold, policy.critical_threshold) == (warning, critical), queue
        assert (policy.sustained_seconds, policy.cooldown_seconds) == row["windows"]
        assert policy.signal is Signal.MESSAGES_READY
        assert policy.exit_ratio == 0.8
        assert policy.failure_threshold == 3
        # Defaults: recovery = the cooldown; stale after 3 polls of 5 s, at least 15 s.
        assert policy.recovery_seconds == policy.cooldown_seconds
        assert policy.stale_after_seconds == 15
    baseline, expensive = row["parallelism"]
    assert preset.classes["standard"].normal.parallelism == baseline
    assert preset.classes["expensive"].normal.parallelism == expensive


@pytest.mark.parametrize("name", PRESETS)
def test_builtin_class_limits_follow_the_design(name: str) -> None:
    preset = builtin_presets()[name]
    standard, expensive = preset.classes["standard"], preset.classes["expensive"]
    assert expensive.extensions == EXPENSIVE_EXTENSIONS
    for level in Level:
        # standard keeps flowing at every level.
        assert standard.limits(level) == standard.normal
        assert not standard.limits(level).deferred_admission
        # expensive never starves: a floor of at least one, never above its parallelism.
        limits = expensive.limits(level)
        assert 1 <= limits.minimum_floor <= limits.parallelism
    assert not expensive.normal.deferred_admission
    assert expensive.warning.deferred_admission
    assert expensive.critical.deferred_admission
    # warning reduces the expensive class, critical runs it at its floor.
    assert expensive.warning.rate < expensive.normal.rate
    assert expensive.critical.rate < expensive.warning.rate
    assert expensive.critical.parallelism == expensive.critical.minimum_floor
    assert expensive.warning.parallelism <= expensive.normal.parallelism


def test_class_policy_limits_per_level() -> None:
    def limits(n: int) -> LevelLimits:
        return LevelLimits(parallelism=n, rate=n, burst=n)

    policy = ClassPolicy(normal=limits(3), warning=limits(2), critical=limits(1))
    assert policy.limits(Level.NORMAL).parallelism == 3
    assert policy.limits(Level.WARNING).parallelism == 2
    assert policy.limits(Level.CRITICAL).parallelism == 1


def test_enter_exit_and_recommend_use_the_thresholds() -> None:
    policy = _policy(exit_ratio=0.75)
    assert policy.enter(Level.WARNING) == 50
    assert policy.enter(Level.CRITICAL) == 120
    assert policy.exit(Level.WARNING) == pytest.approx(37.5)
    assert policy.exit(Level.CRITICAL) == pytest.approx(90)
    assert policy.recommend(49.999) is Level.NORMAL
    assert policy.recommend(50) is Level.WARNING
    assert policy.recommend(119.999) is Level.WARNING
    assert policy.recommend(120) is Level.CRITICAL


@pytest.mark.parametrize(("warning", "critical"), [(50, 50), (50, 49), (0, 0)])
def test_critical_must_be_above_warning(warning: float, critical: float) -> None:
    with pytest.raises(ValidationError) as info:
        _policy(warning_threshold=warning, critical_threshold=critical)
    text = str(info.value)
    assert f"critical_threshold={critical:g}" in text
    assert f"warning_threshold={warning:g}" in text


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2])
def test_exit_ratio_must_be_strictly_between_zero_and_one(ratio: float) -> None:
    with pytest.raises(ValidationError, match="exit_ratio"):
        _policy(exit_ratio=ratio)


@pytest.mark.parametrize(
    "key", ["sustained_seconds", "cooldown_seconds", "recovery_seconds", "stale_after_seconds"]
)
def test_windows_must_not_be_negative(key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        _policy(**{key: -1})


def test_zero_stale_after_and_zero_failure_threshold_are_refused() -> None:
    with pytest.raises(ValidationError, match="stale_after_seconds"):
        _policy(stale_after_seconds=0)
    with pytest.raises(ValidationError, match="failure_threshold"):
        _policy(failure_threshold=0)


def test_a_floor_above_the_parallelism_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError) as info:
        LevelLimits(parallelism=2, rate=1, burst=1, minimum_floor=3)
    assert "minimum_floor=3" in str(info.value)
    assert "parallelism=2" in str(info.value)
    assert LevelLimits(parallelism=2, rate=1, burst=1, minimum_floor=2).minimum_floor == 2


def test_models_are_frozen_and_refuse_unknown_keys() -> None:
    policy = _policy()
    with pytest.raises(ValidationError):
        setattr(policy, "warning_threshold", 1)  # noqa: B010
    with pytest.raises(ValidationError, match="warning_treshold"):
        _policy(warning_treshold=1)


# -- signals -----------------------------------------------------------------


def test_signal_values() -> None:
    sample = QueueSample(
        "q",
        0.0,
        messages_ready=100,
        messages_unacknowledged=20,
        consumers=4,
        deliver_rate=5.0,
        oldest_message_age_seconds=33.0,
    )
    assert signal_value(sample, Signal.MESSAGES_READY) == 100
    assert signal_value(sample, Signal.READY_PLUS_UNACKED) == 120
    assert signal_value(sample, Signal.BACKLOG_PER_CONSUMER) == 25
    assert signal_value(sample, Signal.OLDEST_MESSAGE_AGE) == 33
    assert signal_value(sample, Signal.DRAIN_TIME) == 20


def test_unknown_parts_of_a_sample_give_no_signal_never_zero() -> None:
    sample = QueueSample("q", 0.0, messages_ready=100)
    assert signal_value(sample, Signal.MESSAGES_READY) == 100
    assert signal_value(sample, Signal.READY_PLUS_UNACKED) is None
    assert signal_value(sample, Signal.BACKLOG_PER_CONSUMER) is None
    assert signal_value(sample, Signal.OLDEST_MESSAGE_AGE) is None
    assert signal_value(sample, Signal.DRAIN_TIME) is None


def test_drain_time_edges() -> None:
    # An empty queue drains in no time, whatever the rate; a stalled one never.
    assert signal_value(QueueSample("q", 0.0, 0), Signal.DRAIN_TIME) == 0
    stalled = QueueSample("q", 0.0, 10, deliver_rate=0.0)
    assert signal_value(stalled, Signal.DRAIN_TIME) == math.inf
    # No consumer: the whole backlog waits on nobody.
    alone = QueueSample("q", 0.0, 10, consumers=0)
    assert signal_value(alone, Signal.BACKLOG_PER_CONSUMER) == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [("messages_ready", -1), ("consumers", -2), ("deliver_rate", math.nan), ("ack_rate", math.inf)],
)
def test_impossible_sample_values_are_refused(field: str, value: float) -> None:
    kwargs: dict[str, Any] = {"messages_ready": 1, field: value}
    with pytest.raises(ValueError, match=field):
        QueueSample("q", 0.0, **kwargs)


def test_a_sample_needs_a_queue_name() -> None:
    with pytest.raises(ValueError, match="queue"):
        QueueSample("", 0.0, 1)
