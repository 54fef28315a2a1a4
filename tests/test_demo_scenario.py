"""The demo's script (pure): its phases leave the balanced preset's windows room to show."""

from __future__ import annotations

import pytest

from admission.demo.scenario import (
    CONVERSION,
    DEFAULT_DURATION,
    DOCUMENTS,
    NEW_FILE,
    QUEUES,
    TITUS,
    Scenario,
    Window,
    kind_of,
)
from admission.policy import parse_config

BALANCED = parse_config({"preset": "balanced"}).presets["balanced"]


def phase(scenario: Scenario, name: str) -> Window:
    return next(p.window for p in scenario.phases if p.name == name)


def test_the_queues_are_nemesis_s() -> None:
    assert QUEUES == (NEW_FILE, CONVERSION, TITUS)
    assert QUEUES == ("files-new_file", "files-document_conversion_input", "titus-titus_input")


def test_the_phases_tile_the_duration_in_order() -> None:
    scenario = Scenario.build()
    assert scenario.duration == DEFAULT_DURATION == 600
    starts = [p.window.start for p in scenario.phases]
    ends = [p.window.end for p in scenario.phases]
    assert starts[0] == 0
    assert ends[-1] == scenario.duration
    assert starts[1:] == ends[:-1]
    assert [p.name for p in scenario.phases][:2] == ["quiet", "drop"]


def test_the_drop_is_large_enough_to_hold_critical_for_the_sustained_window() -> None:
    scenario = Scenario.build()
    drop = next(p for p in scenario.phases if p.name == "drop")
    policy = BALANCED.queue_policy(NEW_FILE)
    # At the standard class's rate, the backlog above critical lasts longer than the window.
    drain_rate = BALANCED.classes["standard"].normal.rate
    above_critical = (drop.files - policy.critical_threshold) / drain_rate
    assert above_critical > policy.sustained_seconds * 1.2


def test_the_outage_comes_after_the_pressure_and_recovery_ends_before_the_end() -> None:
    scenario = Scenario.build()
    policy = BALANCED.queue_policy(NEW_FILE)
    drop = phase(scenario, "drop")
    outage = scenario.outage
    assert outage == phase(scenario, "outage")
    assert drop.end + policy.sustained_seconds < outage.start
    assert outage.end - outage.start > policy.stale_after_seconds
    assert outage.end + policy.recovery_seconds < scenario.duration
    assert policy.recovery_seconds == policy.cooldown_seconds == 120


def test_the_files_arrive_in_order_within_their_phases() -> None:
    scenario = Scenario.build()
    arrivals = list(scenario.arrivals())
    assert len(arrivals) == scenario.total_files
    assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
    assert [a.file.id for a in arrivals] == list(range(1, len(arrivals) + 1))
    assert all(scenario.phase_at(a.at).name == a.phase for a in arrivals)
    # The last phase brings nothing: the queues drain and the levels settle.
    assert all(a.at < scenario.phases[-1].window.start for a in arrivals)


def test_the_same_files_every_time() -> None:
    first = list(Scenario.build().arrivals())
    assert first == list(Scenario.build().arrivals())
    assert first != list(Scenario.build(seed=7).arrivals())


def test_the_drop_mixes_expensive_and_standard_files_the_documents_convert() -> None:
    arrivals = list(Scenario.build().arrivals())
    drop = [a.file for a in arrivals if a.phase == "drop"]
    expensive = [f for f in drop if f.kind.expensive]
    assert 0.03 < len(expensive) / len(drop) < 0.2
    assert {f.kind.extension for f in expensive} <= set(BALANCED.classes["expensive"].extensions)
    assert len({f.kind.extension for f in drop}) >= 10
    documents = [a.file for a in arrivals if a.phase == "documents"]
    assert documents
    assert all(f.kind in DOCUMENTS and f.kind.convert for f in documents)


def test_a_shorter_duration_stretches_the_phases_not_the_counts() -> None:
    full, half = Scenario.build(), Scenario.build(300)
    assert half.outage == Window(full.outage.start / 2, full.outage.end / 2)
    assert [p.files for p in half.phases] == [p.files for p in full.phases]
    assert half.total_files == full.total_files


@pytest.mark.parametrize("duration", [0, -1, float("nan"), float("inf"), True, "600"])
def test_a_bad_duration_is_named(duration: object) -> None:
    with pytest.raises(ValueError, match="duration must be a finite number"):
        Scenario.build(duration)  # type: ignore[arg-type]


def test_phase_at() -> None:
    scenario = Scenario.build()
    assert scenario.phase_at(0).name == "quiet"
    assert scenario.phase_at(35).name == "drop"
    assert scenario.phase_at(scenario.outage.start).name == "outage"
    assert scenario.phase_at(10_000).name == scenario.phases[-1].name


@pytest.mark.parametrize(
    ("path", "extension", "expensive"),
    [
        ("/collected/h/x/setup.EXE", ".exe", True),
        ("C:\\Temp\\Archive.Zip", ".zip", True),
        ("/a/report.pdf", ".pdf", False),
        ("/a/.zip", "", False),
        ("/a/README", "", False),
        ("/a/x.unknown", "", False),
    ],
)
def test_kind_of(path: str, extension: str, expensive: bool) -> None:
    kind = kind_of(path)
    assert (kind.extension, kind.expensive) == (extension, expensive)


def test_work_takes_the_same_time_for_the_same_file_within_30_percent() -> None:
    scenario = Scenario.build()
    timing = scenario.timing
    seconds = [scenario.work_seconds("enrich", i) for i in range(1, 200)]
    assert seconds == [scenario.work_seconds("enrich", i) for i in range(1, 200)]
    assert min(seconds) >= 0.7 * timing.enrich_standard
    assert max(seconds) <= 1.3 * timing.enrich_standard
    assert len(set(seconds)) > 50
    assert scenario.work_seconds("enrich", 5, expensive=True) > scenario.work_seconds("enrich", 5)
    with pytest.raises(ValueError, match="stage must be"):
        scenario.work_seconds("bake", 1)
