"""Operator overrides: pins of a level or a preset on a queue or a class, for a TTL."""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import NEW_FILE, REASON_CODES, TITUS, Run, config, one_queue

from admission.policy import ConfigError, Level, Override, builtin_presets

BALANCED = builtin_presets()["balanced"]
CONSERVATIVE = builtin_presets()["conservative"]
AGGRESSIVE = builtin_presets()["aggressive"]
TTL = 1800.0


def _run(stale_after_seconds: float | None = None) -> Run:
    policy: dict[str, Any] = {}
    if stale_after_seconds is not None:
        policy["stale_after_seconds"] = stale_after_seconds
    run = Run(one_queue("balanced", NEW_FILE, **policy))
    run.sample(NEW_FILE, 0, 0)
    return run


def _pin(run: Run, override: Override, now: float) -> None:
    run.apply(run.engine.add_override(run.state, override, now))


def _queue_pin(level: Level = Level.CRITICAL, *, at: float = 10, oid: str = "o1") -> Override:
    return Override(oid, "queue", NEW_FILE, at + TTL, at, level=level, reason="incident 42")


# -- a level pinned on a queue --------------------------------------------------------


def test_a_level_pin_on_a_queue_moves_its_classes_at_once() -> None:
    run = _run()
    _pin(run, _queue_pin(), 10)
    assert run.state.overrides == (_queue_pin(),)
    assert run.class_level("standard") == "critical"
    assert run.class_level("expensive") == "critical"
    assert run.state.classes["expensive"].limits == BALANCED.classes["expensive"].critical
    # The queue's own baseline is untouched: the pin sits on top of it.
    assert run.state.queues[NEW_FILE].level is Level.NORMAL
    [record] = run.queue_transitions(NEW_FILE)
    assert (record.from_level, record.to_level, record.at) == ("normal", "critical", 10)
    assert record.reason == "override_set"
    assert "o1" in record.detail
    assert (record.signal, record.warning_threshold, record.critical_threshold) == (0, 50, 120)


@pytest.mark.parametrize("how", ["expire", "step"])
def test_a_pin_holds_until_its_ttl_and_expires_exactly_at_it(how: str) -> None:
    # One sample across the whole TTL: staleness is not under test here (a sample
    # after a stale_after with no step would begin with a fail-safe).
    run = _run(stale_after_seconds=10 * TTL)
    _pin(run, _queue_pin(), 10)
    end = 10 + TTL

    def advance(now: float) -> None:
        if how == "expire":
            run.expire(now)
        else:
            run.sample(NEW_FILE, now, 0)

    pinned = run.state
    advance(end - 0.001)
    assert run.class_level("standard") == "critical"
    assert len(run.state.overrides) == 1
    assert run.queue_transitions(NEW_FILE)[-1].reason == "override_set"
    if how == "expire":
        assert run.state is pinned  # nothing to expire: the very same state

    advance(end)
    assert not run.state.overrides
    assert run.class_level("standard") == "normal"
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.from_level, record.to_level, record.at) == ("critical", "normal", end)
    assert record.reason == "override_expired"
    assert (record.scope, record.name) == ("queue", NEW_FILE)
    assert (record.warning_threshold, record.critical_threshold) == (50, 120)


def test_a_pin_expires_with_no_sample_at_all() -> None:
    run = Run(one_queue("balanced", stale_after_seconds=10_000))
    _pin(run, _queue_pin(Level.WARNING, at=0), 0)
    decision = run.expire(TTL)  # no step, no sample, ever
    assert [t.reason for t in decision.transitions if t.scope == "queue"] == ["override_expired"]
    assert run.state.overrides == ()
    assert run.class_level("standard") == "normal"
    assert run.state.at == TTL


def test_expiry_returns_to_the_baseline_that_moved_underneath() -> None:
    run = _run()
    _pin(run, _queue_pin(Level.NORMAL, at=1), 1)
    run.samples(NEW_FILE, 5, 5 + 61, 500)  # critical pressure, sustained, while pinned
    assert run.state.queues[NEW_FILE].level is Level.CRITICAL
    assert run.class_level("standard") == "normal"  # the pin holds the classes
    # The display did not move: the pin's own record is the only one.
    assert [(t.from_level, t.to_level, t.reason) for t in run.queue_transitions(NEW_FILE)] == [
        ("normal", "normal", "override_set")
    ]
    run.expire(1 + TTL)
    assert run.class_level("standard") == "critical"
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.from_level, record.to_level, record.reason) == (
        "normal",
        "critical",
        "override_expired",
    )
    assert record.signal == 500


def test_the_newest_pin_on_a_target_wins() -> None:
    run = _run()
    _pin(run, _queue_pin(Level.WARNING, at=1, oid="old"), 1)
    _pin(run, _queue_pin(Level.CRITICAL, at=2, oid="new"), 2)
    assert run.class_level("standard") == "critical"
    assert run.queue_transitions(NEW_FILE)[-1].to_level == "critical"
    run.apply(run.engine.remove_override(run.state, "new", 3))
    assert run.class_level("standard") == "warning"  # the older pin is still there


def test_a_pin_with_the_same_id_replaces_the_old_one() -> None:
    run = _run()
    _pin(run, _queue_pin(Level.CRITICAL, at=1), 1)
    _pin(run, _queue_pin(Level.WARNING, at=2), 2)
    assert [o.level for o in run.state.overrides] == [Level.WARNING]
    assert run.class_level("standard") == "warning"


def test_an_operator_pin_wins_over_fail_safe() -> None:
    # Choice: the pin is an explicit, time-bounded operator decision.
    run = _run()
    run.tick(15)
    assert run.class_level("standard") == "fail_safe"
    _pin(run, _queue_pin(Level.WARNING, at=16), 16)
    assert run.class_level("standard") == "warning"
    run.expire(16 + TTL)
    assert run.class_level("standard") == "fail_safe"


# -- presets pinned, classes pinned ---------------------------------------------------


def test_a_preset_pin_on_a_queue_changes_its_thresholds_until_the_ttl() -> None:
    run = _run()
    _pin(run, Override("p", "queue", NEW_FILE, 1000, 1, preset="conservative"), 1)
    assert run.policy(NEW_FILE) == CONSERVATIVE.queue_policy(NEW_FILE)
    [record] = run.queue_transitions(NEW_FILE)
    assert record.reason == "override_set"
    assert (record.warning_threshold, record.critical_threshold) == (20, 40)
    # 45 messages: critical under conservative (40), calm under balanced (50).
    run.samples(NEW_FILE, 5, 5 + 46, 45)
    assert run.level(NEW_FILE) == "critical"
    run.sample(NEW_FILE, 999.999, 45)
    assert run.policy(NEW_FILE) == CONSERVATIVE.queue_policy(NEW_FILE)
    run.sample(NEW_FILE, 1000, 45)
    assert run.policy(NEW_FILE) == BALANCED.queue_policy(NEW_FILE)
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.reason, record.at) == ("override_expired", 1000)
    assert (record.warning_threshold, record.critical_threshold) == (50, 120)


def test_a_level_pin_on_a_class() -> None:
    run = _run()
    _pin(run, Override("c", "class", "expensive", 500, 1, level=Level.CRITICAL), 1)
    assert run.class_level("expensive") == "critical"
    assert run.class_level("standard") == "normal"
    assert run.level(NEW_FILE) == "normal"
    assert "override c" in run.state.classes["expensive"].reason
    [record] = [t for t in run.transitions if t.scope == "class"]
    assert (record.name, record.from_level, record.to_level, record.reason) == (
        "expensive",
        "normal",
        "critical",
        "override_set",
    )
    run.expire(499.999)
    assert run.class_level("expensive") == "critical"
    run.expire(500)
    assert run.class_level("expensive") == "normal"
    record = run.transitions[-1]
    assert (record.scope, record.name, record.to_level, record.reason, record.at) == (
        "class",
        "expensive",
        "normal",
        "override_expired",
        500,
    )


def test_a_preset_pin_on_a_class_changes_its_limits_until_the_ttl() -> None:
    run = _run(stale_after_seconds=10 * TTL)  # no steps between: staleness aside
    _pin(run, Override("c", "class", "standard", 500, 1, preset="aggressive"), 1)
    standard = run.state.classes["standard"]
    assert (standard.preset, standard.limits) == (
        "aggressive",
        AGGRESSIVE.classes["standard"].normal,
    )
    assert run.state.classes["expensive"].preset == "balanced"
    set_records = [t for t in run.transitions if t.reason == "override_set"]
    assert [(t.scope, t.name) for t in set_records] == [("class", "standard")]
    run.sample(NEW_FILE, 499.999, 0)
    assert run.state.classes["standard"].preset == "aggressive"
    run.sample(NEW_FILE, 500, 0)
    standard = run.state.classes["standard"]
    assert (standard.preset, standard.limits) == ("balanced", BALANCED.classes["standard"].normal)
    expired = [t for t in run.transitions if t.reason == "override_expired"]
    assert [(t.scope, t.name, t.at) for t in expired] == [("class", "standard", 500)]


def test_every_override_record_is_complete() -> None:
    run = _run()
    _pin(run, Override("a", "queue", NEW_FILE, 100, 1, level=Level.WARNING), 1)
    _pin(run, Override("b", "class", "expensive", 200, 2, preset="conservative"), 2)
    _pin(run, Override("c", "queue", NEW_FILE, 300, 3, preset="aggressive"), 3)
    run.expire(100)
    run.apply(run.engine.remove_override(run.state, "c", 150))
    run.tick(200)
    assert run.state.overrides == ()
    reasons = [(t.reason, t.scope) for t in run.transitions]
    for wanted in [
        ("override_set", "queue"),
        ("override_set", "class"),
        ("override_expired", "queue"),
        ("override_expired", "class"),
        ("override_removed", "queue"),
    ]:
        assert wanted in reasons
    for record in run.transitions:
        assert record.reason in REASON_CODES
        assert record.detail
        assert record.warning_threshold is not None, record
        assert record.critical_threshold is not None, record
        assert record.exit_ratio is not None, record
        assert record.signal == 0, record


# -- removing ------------------------------------------------------------------------


def test_remove_override_returns_to_the_baseline() -> None:
    run = _run()
    _pin(run, _queue_pin(), 10)
    run.apply(run.engine.remove_override(run.state, "o1", 20))
    assert run.state.overrides == ()
    assert run.class_level("standard") == "normal"
    record = run.queue_transitions(NEW_FILE)[-1]
    assert (record.from_level, record.to_level, record.at, record.reason) == (
        "critical",
        "normal",
        20,
        "override_removed",
    )
    with pytest.raises(KeyError, match="o1"):
        run.engine.remove_override(run.state, "o1", 21)


# -- refused overrides ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (Override("x", "queue", "no-such-queue", 100, 1, level=Level.CRITICAL), "no-such-queue"),
        (Override("x", "class", "bulk", 100, 1, level=Level.CRITICAL), "bulk"),
        (Override("x", "queue", NEW_FILE, 100, 1, preset="turbo"), "turbo"),
        (Override("x", "class", "standard", 100, 1, preset="turbo"), "turbo"),
        (Override("x", "queue", NEW_FILE, 100, 1), "exactly one of level or preset"),
        (
            Override("x", "queue", NEW_FILE, 100, 1, level=Level.WARNING, preset="balanced"),
            "exactly one of level or preset",
        ),
        (Override("x", "queue", NEW_FILE, 5, 1, level=Level.WARNING), "expires_at=5"),
    ],
)
def test_bad_overrides_are_refused_by_name(override: Override, named: str) -> None:
    run = _run()
    before = run.state
    with pytest.raises(ConfigError, match=named):
        run.engine.add_override(run.state, override, 5)
    assert run.state == before


def test_overrides_know_the_queues_seen_so_far() -> None:
    run = Run(config())
    with pytest.raises(ConfigError, match=TITUS):
        run.engine.add_override(
            run.state, Override("x", "queue", TITUS, 9, 1, level=Level.WARNING), 1
        )
    run.sample(TITUS, 1, 0)
    _pin(run, Override("x", "queue", TITUS, 9, 1, level=Level.WARNING), 1)
    assert run.class_level("standard") == "warning"
