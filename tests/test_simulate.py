"""Trace replay (``admission.simulate``): the recorded burst, and small synthetic traces.

The fixture ``tests/fixtures/rabbitmq-burst.csv`` is a copy of
``shared/fixtures/traces/rabbitmq-burst.csv``: 60 samples of three queues every
5 s, t = 5 .. 300.  Its ``messages_ready`` by queue (the default signal):

- files-new_file: 0 until t=30, 12 at 35, 262 at 40, 477 at 45, then draining
  by ~33 per 5 s: 143 at 100, 109 at 105, 75 at 110, 42 at 115, 9 at 120, 0 at
  125; the second burst 18 at 130, 135 at 135, 102 at 140, 68 at 145, 35 at 150,
  1 at 155, then 0 to the end.
- titus-titus_input: 0 until 35, 19 at 40, 56 at 45, 68 at 50, 66, 63, 60 at 65,
  58 at 70, falling by ~3 per 5 s: 42 at 100, 29 at 125, 43 at 130, 49 at 135,
  20 at 190, 18 at 195, 15 at 200, 13 at 205, 10 at 210, 7, 5, 2, 0 from 230.
- files-document_conversion_input: 0 (ready) throughout.

Ticks fall every 5 s from t=5, so ``at_seconds`` = t - 5 and the trace lasts 60
ticks x 5 s = 300 s.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from admission.policy import ConfigError, PolicyEngine, QueueSample, parse_config
from admission.simulate import (
    LEVELS,
    ReplayResult,
    TraceError,
    compare,
    load_trace,
    replay,
)

FIXTURE = Path(__file__).parent / "fixtures" / "rabbitmq-burst.csv"
NEW_FILE = "files-new_file"
CONVERSION = "files-document_conversion_input"
TITUS = "titus-titus_input"
HEADER = (
    "t,queue,messages_ready,messages_unacknowledged,consumers,"
    "publish_rate,deliver_get_rate,ack_rate"
)

Row = tuple[float, float, str, str, str, str, str]

# -- the recorded burst -----------------------------------------------------------

# balanced: new_file 50/120, titus 20/60, conversion 30/80; sustained 60, cooldown 120.
# - new_file is >= 120 from t=40 (262) through t=100 (143): 60 s sustained at
#   t=100 -> critical (at_seconds 95).  Warning's window started at 40 as well,
#   but critical, the higher, wins.
# - titus is >= 20 from t=45 (56) to t=190 (20); >= 60 only t=50..65 (15 s, too
#   short), so warning at 45 + 60 = t=105.
# - new_file's critical exit is 0.8 * 120 = 96: below from t=110 (75), but 135
#   at t=135 resets the cooldown; below again from t=145 (68), so at
#   145 + 120 = t=265 it drops to the highest level a sample in the window
#   reached: 68 >= 50 -> warning (not normal, although it is 0 since t=160).
# - The cooldown window slides (as the HPA's stabilisation window): new_file has
#   been below warning's exit (0.8 * 50 = 40) since t=150, so at 150 + 120 =
#   t=270 warning's cooldown is complete too and no sample in 150..270 reached
#   50 -> normal, one tick later, not a second full window later (t=390).
# - titus's warning exit is 16: below from t=200 (15); 200 + 120 = 320 > 300.
# - The classes watch every queue and follow the loudest: critical at t=100,
#   warning at t=265 (titus's warning at 105 keeps them there after t=270).
BALANCED: list[Row] = [
    (95.0, 100.0, "queue", NEW_FILE, "normal", "critical", "sustained_pressure"),
    (95.0, 100.0, "class", "standard", "normal", "critical", "watched_queue"),
    (95.0, 100.0, "class", "expensive", "normal", "critical", "watched_queue"),
    (100.0, 105.0, "queue", TITUS, "normal", "warning", "sustained_pressure"),
    (260.0, 265.0, "queue", NEW_FILE, "critical", "warning", "cooldown_elapsed"),
    (260.0, 265.0, "class", "standard", "critical", "warning", "watched_queue"),
    (260.0, 265.0, "class", "expensive", "critical", "warning", "watched_queue"),
    (265.0, 270.0, "queue", NEW_FILE, "warning", "normal", "cooldown_elapsed"),
]

# conservative: new_file 20/40, titus 8/16; sustained 45, cooldown 90.
# - new_file >= 40 from t=40 to 115 (42): critical at 40 + 45 = t=85.  Exit 32:
#   9 at t=120 starts the cooldown, 135 at t=135 resets it, 1 at t=155 starts
#   it again (35 at 150 is not below 32); no sample in 155..245 reaches 20, so
#   at 155 + 90 = t=245 it drops straight to normal.
# - titus >= 16 from t=40 (19) to 195 (18): critical at t=85 too.  Exit 12.8:
#   10 at t=210 starts the cooldown (13 at 205 is not below), 10 >= 8 makes the
#   window's peak warning, so at 210 + 90 = t=300 -> warning.
CONSERVATIVE: list[Row] = [
    (80.0, 85.0, "queue", NEW_FILE, "normal", "critical", "sustained_pressure"),
    (80.0, 85.0, "queue", TITUS, "normal", "critical", "sustained_pressure"),
    (80.0, 85.0, "class", "standard", "normal", "critical", "watched_queue"),
    (80.0, 85.0, "class", "expensive", "normal", "critical", "watched_queue"),
    (240.0, 245.0, "queue", NEW_FILE, "critical", "normal", "cooldown_elapsed"),
    (295.0, 300.0, "queue", TITUS, "critical", "warning", "cooldown_elapsed"),
    (295.0, 300.0, "class", "standard", "critical", "warning", "watched_queue"),
    (295.0, 300.0, "class", "expensive", "critical", "warning", "watched_queue"),
]

# aggressive: new_file 80/180, titus 40/100; sustained 90.  new_file is >= 180
# only t=40..90 (50 s) and >= 80 only t=40..105 (65 s); titus is >= 40 only
# t=45..100 (55 s), never >= 100.  No window lasts 90 s: nothing moves.
AGGRESSIVE: list[Row] = []


def rows_of(result: ReplayResult) -> list[Row]:
    return [
        (t.at_seconds, t.t, t.scope, t.name, t.from_level, t.to_level, t.reason)
        for t in result.transitions
    ]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("balanced", BALANCED), ("conservative", CONSERVATIVE), ("aggressive", AGGRESSIVE)],
)
def test_fixture_transitions(preset: str, expected: list[Row]) -> None:
    result = replay(FIXTURE, preset=preset)
    assert result.preset == preset
    assert rows_of(result) == expected
    assert result.fail_safe_spans == ()
    assert result.warnings == ()


def test_fixture_balanced_details() -> None:
    result = replay(FIXTURE)  # balanced is the default
    assert (result.ticks, result.start_t, result.duration_seconds) == (60, 5.0, 300.0)
    first, *_ = result.transitions
    assert first.signal == 143.0
    assert first.detail == "messages_ready at or above 120 for 60s (sustained 60s)"
    drop = result.transitions[4]
    assert drop.signal == 0.0
    assert "highest level in the window: warning" in drop.detail
    # new_file: normal t=5..95 (19 ticks) and 270..300 (7), critical 100..260 (33),
    # warning 265 (1).
    assert dict(result.seconds_in_level[NEW_FILE]) == {
        "normal": 130.0,
        "warning": 5.0,
        "critical": 165.0,
        "fail_safe": 0.0,
    }
    assert dict(result.seconds_in_level[TITUS]) == {
        "normal": 100.0,
        "warning": 200.0,
        "critical": 0.0,
        "fail_safe": 0.0,
    }
    assert result.seconds_in_level[CONVERSION]["normal"] == 300.0
    # The classes follow the loudest queue: titus keeps them at warning after 270.
    assert dict(result.class_seconds_in_level["expensive"]) == {
        "normal": 95.0,
        "warning": 40.0,
        "critical": 165.0,
        "fail_safe": 0.0,
    }
    assert result.flaps_per_hour == pytest.approx(4 * 3600 / 300)


@pytest.mark.parametrize("preset", ["conservative", "balanced", "aggressive"])
def test_seconds_in_level_sum_to_the_trace_length(preset: str) -> None:
    result = replay(FIXTURE, preset=preset)
    for seconds in (*result.seconds_in_level.values(), *result.class_seconds_in_level.values()):
        assert set(seconds) == set(LEVELS)
        assert sum(seconds.values()) == pytest.approx(result.duration_seconds)
    assert set(result.seconds_in_level) == {NEW_FILE, CONVERSION, TITUS}
    assert set(result.class_seconds_in_level) == {"standard", "expensive"}


def test_timeline_matches_the_csv_and_the_engine() -> None:
    result = replay(FIXTURE)
    timeline = result.timeline(NEW_FILE)
    assert timeline.t == tuple(5.0 * k for k in range(1, 61))
    assert (timeline.warning_threshold, timeline.critical_threshold) == (50.0, 120.0)
    points = timeline.points()
    assert points[7] == (40.0, 262.0, "normal")
    assert points[19] == (100.0, 143.0, "critical")
    assert points[-1] == (300.0, 0.0, "normal")
    # The replay's levels (kept from transitions) equal the engine's own state, tick by tick.
    trace = load_trace(FIXTURE)
    engine = PolicyEngine(parse_config(), preset="balanced")
    state = engine.start(5.0, trace.queues)
    by_tick: dict[float, dict[str, QueueSample]] = {}
    for row in trace.rows:
        assert row.sample is not None
        by_tick.setdefault(row.t, {})[row.queue] = row.sample
    for k, (now, samples) in enumerate(sorted(by_tick.items())):
        state = engine.step(state, samples, now).state
        for tl in result.timelines:
            assert tl.level[k] == state.queues[tl.queue].display, (now, tl.queue)
        for name, levels in result.class_levels.items():
            assert levels[k] == state.classes[name].display, (now, name)


def test_rows_in_code_replay_like_the_csv() -> None:
    with FIXTURE.open(encoding="utf-8") as handle:
        header, *lines = handle.read().splitlines()
    rows = [dict(zip(header.split(","), line.split(","), strict=True)) for line in lines]
    assert rows_of(replay(rows)) == rows_of(replay(FIXTURE))


def test_result_is_frozen() -> None:
    result = replay(FIXTURE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.preset = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.transitions[0].to_level = "normal"  # type: ignore[misc]


def test_compare_ranks_every_preset() -> None:
    comparison = compare(FIXTURE)
    # aggressive: 0 flaps; balanced and conservative: 4 queue transitions (48/h)
    # each; balanced is throttled less (370 s against conservative's), so it ranks second.
    assert [s.preset for s in comparison.ranking] == ["aggressive", "balanced", "conservative"]
    assert [s.rank for s in comparison.ranking] == [1, 2, 3]
    balanced = comparison.ranking[1]
    assert (balanced.transitions, balanced.flaps_per_hour) == (4, 48.0)
    assert balanced.throttled_seconds == 5 + 165 + 200
    assert balanced.throttled_seconds < comparison.ranking[2].throttled_seconds
    assert balanced.first_escalation_seconds == 95.0
    assert comparison.best.first_escalation_seconds is None
    assert "fewest flaps per hour" in comparison.ranked_by
    subset = compare(FIXTURE, presets=["conservative", "balanced"])
    assert [s.preset for s in subset.ranking] == ["balanced", "conservative"]


# -- synthetic traces: gaps, empty cells, tick rules ------------------------------


def write(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def steady(ts: range, ready: int = 1, queue: str = "q", skip: tuple[int, ...] = ()) -> list[str]:
    return [f"{t},{queue},{ready},0,1,1.0,1.0,1.0" for t in ts if t not in skip]


def queue_rows(result: ReplayResult) -> list[tuple[float, str, str, str]]:
    return [
        (t.at_seconds, t.from_level, t.to_level, t.reason)
        for t in result.transitions
        if t.scope == "queue"
    ]


def test_missing_rows_fail_at_the_failure_threshold_then_recover(tmp_path: Path) -> None:
    # Rows every 5 s from 0 to 300, none at 30, 35, 40: three failed reads in a row.
    result = replay(write(tmp_path, steady(range(0, 301, 5), skip=(30, 35, 40))))
    # Good samples again from t=45: recovery (= balanced's cooldown, 120 s) ends at 165.
    assert queue_rows(result) == [
        (40.0, "normal", "fail_safe", "telemetry_failing"),
        (165.0, "fail_safe", "normal", "telemetry_recovered"),
    ]
    (span,) = result.fail_safe_spans
    assert (span.queue, span.start, span.end, span.ongoing) == ("q", 40.0, 165.0, False)
    assert "3 consecutive failed reads" in span.reason
    assert "no row in the trace" in span.reason
    assert result.seconds_in_level["q"]["fail_safe"] == 125.0
    assert sum(result.seconds_in_level["q"].values()) == result.duration_seconds == 305.0
    assert result.timeline("q").signal[6:9] == (None, None, None)
    classes = [t for t in result.transitions if t.scope == "class"]
    assert {(t.name, t.to_level) for t in classes} == {
        ("standard", "fail_safe"),
        ("expensive", "fail_safe"),
        ("standard", "normal"),
        ("expensive", "normal"),
    }


def test_a_gap_of_stale_after_is_stale(tmp_path: Path) -> None:
    # With failure_threshold 10, only staleness can trip: the last good sample at
    # t=25 is 15 s (3 polls, at least 15 s) old at t=40.
    config = parse_config({"queues": [{"name": "q", "failure_threshold": 10}]})
    result = replay(write(tmp_path, steady(range(0, 101, 5), skip=(30, 35, 40, 45))), config=config)
    assert queue_rows(result)[0] == (40.0, "normal", "fail_safe", "telemetry_stale")
    assert "no good sample for 15s" in result.fail_safe_spans[0].reason
    assert result.fail_safe_spans[0].ongoing  # 100 - 50 < 120 s of recovery
    assert result.fail_safe_spans[0].end == result.duration_seconds == 105.0


def test_empty_signal_cells_are_failed_reads(tmp_path: Path) -> None:
    lines = steady(range(0, 121, 5))
    for i in (4, 5, 6):  # t = 20, 25, 30: messages_ready empty
        lines[i] = lines[i].replace("q,1,", "q,,", 1)
    result = replay(write(tmp_path, lines))
    assert queue_rows(result)[0] == (30.0, "normal", "fail_safe", "telemetry_failing")
    assert "line 8: the row has no messages_ready (empty cell)" in result.fail_safe_spans[0].reason
    # Two empty cells in a row are not enough.
    lines = steady(range(0, 121, 5))
    lines[4] = lines[4].replace("q,1,", "q,,", 1)
    lines[5] = lines[5].replace("q,1,", "q,,", 1)
    result = replay(write(tmp_path, lines))
    assert result.transitions == ()
    assert result.timeline("q").signal[3:7] == (1.0, None, None, 1.0)


def test_empty_rate_cells_are_unknown_not_zero(tmp_path: Path) -> None:
    # Rates empty: fine for messages_ready.  For drain_time (ready / deliver rate)
    # an empty rate with messages waiting is a missing signal, never "drains at once".
    lines = [f"{t},q,10,0,1,,,," for t in range(0, 61, 5)]
    header = HEADER + ",oldest_message_age_seconds"
    assert replay(write(tmp_path, lines, header)).transitions == ()
    config = parse_config({"queues": [{"name": "q", "signal": "drain_time"}]})
    result = replay(write(tmp_path, lines, header), config=config)
    assert queue_rows(result)[0] == (10.0, "normal", "fail_safe", "telemetry_failing")
    assert "the row has no drain_time" in result.fail_safe_spans[0].reason
    assert set(result.timeline("q").signal) == {None}


def test_rows_between_ticks_go_to_the_tick_at_or_after_them(tmp_path: Path) -> None:
    # Ticks at 0, 5, 10, 15; a row at 7 is seen at 10; 11 and 14 both fall to 15:
    # the later one wins.  Rows may come in any order.
    lines = ["14,q,9,,,,,", "0,q,1,,,,,", "7,q,3,,,,,", "11,q,5,,,,,", "4.9999999999,q,2,,,,,"]
    result = replay(write(tmp_path, lines))
    timeline = result.timeline("q")
    assert timeline.t == (0.0, 5.0, 10.0, 15.0)
    assert timeline.signal == (1.0, 2.0, 3.0, 9.0)
    assert result.duration_seconds == 20.0


def test_configured_and_late_queues_are_failed_reads(tmp_path: Path) -> None:
    lines = steady(range(0, 61, 5), queue="a") + steady(range(30, 61, 5), queue="late")
    config = parse_config({"queues": [{"name": "absent"}]})
    result = replay(write(tmp_path, lines), config=config)
    assert result.queues == ("absent", "a", "late")
    spans = {(s.queue, s.start, s.ongoing) for s in result.fail_safe_spans}
    assert spans == {("absent", 10.0, True), ("late", 10.0, True)}
    assert result.seconds_in_level["a"]["normal"] == result.duration_seconds
    assert any("absent is configured but has no row" in w for w in result.warnings)
    assert any("late: first row at t=30" in w for w in result.warnings)


def test_a_trace_slower_than_the_poll_interval_is_warned_about(tmp_path: Path) -> None:
    result = replay(write(tmp_path, steady(range(0, 101, 10))))
    assert any("rows come every 10s" in w for w in result.warnings)
    assert result.timeline("q").signal[:3] == (1.0, None, 1.0)


def test_a_user_preset_and_queue_override(tmp_path: Path) -> None:
    config = parse_config(
        {
            "presets": {"fast": {"extends": "balanced", "sustained_seconds": 5}},
            "queues": [{"name": "q", "warning_threshold": 5, "critical_threshold": 10}],
        }
    )
    lines = steady(range(0, 21, 5), ready=7)
    assert queue_rows(replay(write(tmp_path, lines), preset="fast", config=config)) == [
        (5.0, "normal", "warning", "sustained_pressure")
    ]
    with pytest.raises(ConfigError, match="preset='nope' is not a known preset"):
        replay(write(tmp_path, lines), preset="nope")


# -- bad traces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "header", "message"),
    [
        (["5,q,1,0,1,1,1,1", "10,q,abc,0,1,1,1,1"], HEADER, r"trace.csv:3: messages_ready='abc'"),
        (["5,q,1.5,0,1,1,1,1"], HEADER, r"trace.csv:2: messages_ready='1.5' is not a whole"),
        (["5,q,-1,0,1,1,1,1"], HEADER, r"trace.csv:2: messages_ready='-1' is negative"),
        (["5,q,1,0,1,nan,1,1"], HEADER, r"trace.csv:2: publish_rate='nan' is not a finite"),
        ([",q,1,0,1,1,1,1"], HEADER, r"trace.csv:2: t is empty"),
        (["5,,1,0,1,1,1,1"], HEADER, r"trace.csv:2: queue='' is not a queue name"),
        (["5,q,1,0"], HEADER, r"trace.csv:2: expected 8 cells, got 4"),
        (["5,q"], "t,queue", r"trace.csv:1: the header lacks the column\(s\) messages_ready"),
        ([], HEADER, r"trace.csv: the trace has no rows"),
        (["5,q,1", "", "x,q,1"], "t,queue,messages_ready", r"trace.csv:4: t='x' is not a number"),
        (["5,q,1,1"], "t,queue,messages_ready,t", r"trace.csv:1: column 't' appears twice"),
    ],
)
def test_bad_traces_name_the_line_and_the_cell(
    tmp_path: Path, lines: list[str], header: str, message: str
) -> None:
    with pytest.raises(TraceError, match=message):
        replay(write(tmp_path, lines, header))


def test_a_trace_too_long_is_refused(tmp_path: Path) -> None:
    # Epoch seconds next to seconds-from-start: billions of ticks, refused before allocating.
    with pytest.raises(TraceError, match=r"t runs from 0 to 1.7e\+09, .* is t in seconds"):
        replay(write(tmp_path, ["0,q,1,,,,,", "1700000000,q,1,,,,,"]))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        replay(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="is a directory"):
        replay(tmp_path)
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(TraceError, match="the file is empty"):
        replay(tmp_path / "empty.csv")
    (tmp_path / "latin.csv").write_bytes(b"t,queue,messages_ready\n5,caf\xe9,1\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        replay(tmp_path / "latin.csv")


def test_bad_rows_in_code() -> None:
    rows: list[Mapping[str, object]] = [{"t": 0, "queue": "q", "messages_ready": 1}]
    with pytest.raises(TraceError, match=r"row 2: lacks the column\(s\) messages_ready"):
        replay([*rows, {"t": 5, "queue": "q"}])
    with pytest.raises(TraceError, match=r"row 2: messages_ready=True is not a number"):
        replay([*rows, {"t": 5, "queue": "q", "messages_ready": True}])
    assert replay([*rows, {"t": 5, "queue": "q", "messages_ready": None}]).timeline("q").signal == (
        1.0,
        None,
    )


def test_the_core_does_not_import_the_cli_or_plotting() -> None:
    code = (
        "import sys, admission, admission.policy, admission.simulate; "
        "loaded = {'typer', 'rich', 'matplotlib', 'click'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
