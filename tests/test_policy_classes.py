"""Workload classes follow the queues they watch; floors hold; what-ifs change nothing live."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from policy_helpers import CONVERSION, NEW_FILE, PRESETS, TITUS, Run, config, failure, ready

from admission.policy import Level, PolicyConfig, builtin_presets

WATCHED = (NEW_FILE, CONVERSION)


def _classes_config(preset: str = "balanced") -> PolicyConfig:
    """Three queues; expensive watches two of them; no sustain so a sample moves at once."""
    queues: list[dict[str, Any]] = [
        {"name": q, "sustained_seconds": 0, "cooldown_seconds": 0, "recovery_seconds": 0}
        for q in (NEW_FILE, CONVERSION, TITUS)
    ]
    return config(
        {"preset": preset, "queues": queues, "classes": {"expensive": {"watches": WATCHED}}}
    )


def _set(run: Run, now: float, **levels: Level) -> None:
    """One tick where each queue (by keyword alias) gets a sample at ``level``'s threshold."""
    names = {"new_file": NEW_FILE, "conversion": CONVERSION, "titus": TITUS}
    observations = {}
    for alias, level in levels.items():
        queue = names[alias]
        value = run.policy(queue).enter(level)
        observations[queue] = ready(queue, now, value)
    run.step(now, observations)


def test_watches_come_from_the_configuration() -> None:
    run = Run(_classes_config())
    assert run.state.classes["expensive"].watches == WATCHED
    # standard watches nothing explicitly: every queue.
    assert run.state.classes["standard"].watches == (NEW_FILE, CONVERSION, TITUS)


@pytest.mark.parametrize(
    ("new_file", "conversion", "titus", "expensive", "standard"),
    [
        (Level.NORMAL, Level.NORMAL, Level.NORMAL, "normal", "normal"),
        (Level.WARNING, Level.NORMAL, Level.NORMAL, "warning", "warning"),
        (Level.WARNING, Level.CRITICAL, Level.NORMAL, "critical", "critical"),
        (Level.NORMAL, Level.WARNING, Level.NORMAL, "warning", "warning"),
        # titus is not watched by expensive: only standard follows it.
        (Level.NORMAL, Level.NORMAL, Level.CRITICAL, "normal", "critical"),
        (Level.WARNING, Level.NORMAL, Level.CRITICAL, "warning", "critical"),
    ],
)
def test_a_class_level_is_the_highest_of_its_watched_queues(
    new_file: Level, conversion: Level, titus: Level, expensive: str, standard: str
) -> None:
    run = Run(_classes_config())
    _set(run, 1, new_file=new_file, conversion=conversion, titus=titus)
    assert run.level(NEW_FILE) == new_file.value
    assert run.level(CONVERSION) == conversion.value
    assert run.level(TITUS) == titus.value
    assert run.class_level("expensive") == expensive
    assert run.class_level("standard") == standard
    reason = run.state.classes["expensive"].reason
    if expensive != "normal":
        assert f"is {expensive}" in reason


def test_a_class_follows_its_loudest_queue_down_as_well() -> None:
    run = Run(_classes_config())
    _set(run, 1, new_file=Level.CRITICAL, conversion=Level.WARNING)
    assert run.class_level("expensive") == "critical"
    _set(run, 2, new_file=Level.NORMAL, conversion=Level.WARNING)
    assert run.class_level("expensive") == "warning"
    records = [t for t in run.transitions if t.scope == "class" and t.name == "expensive"]
    assert [(t.from_level, t.to_level, t.at) for t in records] == [
        ("normal", "critical", 1),
        ("critical", "warning", 2),
    ]
    assert run.state.classes["expensive"].since == 2


def test_fail_safe_on_any_watched_queue_puts_the_class_in_fail_safe() -> None:
    run = Run(_classes_config())
    conservative = builtin_presets()["conservative"]
    for t in (1, 2, 3):
        run.step(
            t,
            {
                NEW_FILE: ready(NEW_FILE, t, 0),
                CONVERSION: failure(CONVERSION, t),
                TITUS: ready(TITUS, t, 0),
            },
        )
    assert run.level(CONVERSION) == "fail_safe"
    expensive = run.state.classes["expensive"]
    assert expensive.fail_safe
    assert CONVERSION in expensive.reason
    assert expensive.limits == conservative.classes["expensive"].critical
    assert run.class_level("standard") == "fail_safe"


def test_fail_safe_on_an_unwatched_queue_leaves_the_class_alone() -> None:
    run = Run(_classes_config())
    for t in (1, 2, 3):
        run.step(
            t,
            {
                NEW_FILE: ready(NEW_FILE, t, 0),
                CONVERSION: ready(CONVERSION, t, 0),
                TITUS: failure(TITUS, t),
            },
        )
    assert run.level(TITUS) == "fail_safe"
    assert run.class_level("expensive") == "normal"
    assert (
        run.state.classes["expensive"].limits
        == builtin_presets()["balanced"].classes["expensive"].normal
    )
    assert run.class_level("standard") == "fail_safe"


def test_fail_safe_wins_over_a_louder_watched_queue() -> None:
    run = Run(_classes_config())
    for t in (1, 2, 3):
        run.step(t, {NEW_FILE: ready(NEW_FILE, t, 500), CONVERSION: failure(CONVERSION, t)})
    assert run.level(NEW_FILE) == "critical"
    assert run.class_level("expensive") == "fail_safe"


@pytest.mark.parametrize("preset", PRESETS)
def test_expensive_never_drops_under_its_floor_and_standard_keeps_flowing(preset: str) -> None:
    run = Run(_classes_config(preset))
    requested = builtin_presets()[preset]
    seen = []

    def check() -> None:
        seen.append(run.class_level("expensive"))
        expensive = run.state.classes["expensive"].limits
        standard = run.state.classes["standard"].limits
        assert expensive.parallelism >= expensive.minimum_floor >= 1
        assert expensive.rate > 0
        assert standard.parallelism >= standard.minimum_floor >= 1
        assert standard.rate > 0
        assert not standard.deferred_admission

    for t, level in enumerate([Level.NORMAL, Level.WARNING, Level.CRITICAL], start=1):
        _set(run, t, new_file=level, conversion=level, titus=level)
        check()
        assert run.state.classes["expensive"].limits == requested.classes["expensive"].limits(level)
    for t in (10, 11, 12):
        run.step(t, {q: failure(q, t) for q in (NEW_FILE, CONVERSION, TITUS)})
        check()
    assert seen == ["normal", "warning", "critical", "critical", "critical", "fail_safe"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("level", list(Level))
def test_limits_at_every_level_keep_the_floor(preset: str, level: Level) -> None:
    run = Run(_classes_config(preset))
    _set(run, 1, new_file=level, conversion=level, titus=level)
    expensive = run.state.classes["expensive"].limits
    standard = run.state.classes["standard"].limits
    assert expensive.parallelism >= expensive.minimum_floor >= 1
    assert standard.parallelism >= standard.minimum_floor >= 1
    assert standard == builtin_presets()[preset].classes["standard"].normal
    assert expensive.deferred_admission is (level is not Level.NORMAL)


# -- what-if --------------------------------------------------------------------------


def test_what_if_leaves_the_live_state_unchanged() -> None:
    run = Run(config({"queues": [{"name": NEW_FILE}]}))
    run.samples(NEW_FILE, 0, 60, 200)  # 55 s of critical pressure: one more sample tips it
    live = run.state
    before = copy.deepcopy(live)
    hypothesis = {NEW_FILE: ready(NEW_FILE, 60, 200)}
    decision = run.engine.what_if(live, hypothesis, 60)
    assert decision.state.queues[NEW_FILE].level is Level.CRITICAL
    assert [t.to_level for t in decision.transitions if t.scope == "queue"] == ["critical"]
    assert live == before
    assert live.queues[NEW_FILE].level is Level.NORMAL
    assert decision.state != live
    # And a real step from the untouched state agrees with the what-if.
    assert run.engine.step(live, hypothesis, 60) == decision


def test_what_if_with_another_preset() -> None:
    run = Run(config({"queues": [{"name": NEW_FILE}]}))
    run.samples(NEW_FILE, 0, 30, 45)  # calm under balanced (warning 50)
    live = run.state
    before = copy.deepcopy(live)
    decision = run.engine.what_if(
        live, {NEW_FILE: ready(NEW_FILE, 30, 45)}, 30, preset="conservative"
    )
    assert live == before
    assert live.preset == "balanced"
    assert decision.state.preset == "conservative"
    conservative = builtin_presets()["conservative"]
    assert decision.state.classes["standard"].limits == conservative.classes["standard"].normal
    assert live.classes["standard"].limits != decision.state.classes["standard"].limits
    # Under conservative, 45 is above critical (40): its sustain window runs.
    queue = decision.state.queues[NEW_FILE]
    window = run.engine.window(queue, 30, conservative.queue_policy(NEW_FILE))
    assert window is not None
    assert window.pending_level is Level.CRITICAL
    assert run.engine.window(live.queues[NEW_FILE], 30, run.policy(NEW_FILE)) is None
    # The engine itself still runs the requested preset.
    assert run.engine.preset.name == "balanced"
    assert run.engine.step(live, {}, 31).state.preset == "balanced"


def test_what_if_with_an_unknown_preset_is_an_error() -> None:
    run = Run(config())
    with pytest.raises(ValueError, match="'nope'"):
        run.engine.what_if(run.state, {}, 1, preset="nope")
