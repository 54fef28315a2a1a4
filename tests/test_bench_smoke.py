"""Smoke test of the benchmarks: each runs in quick mode and reports a complete result.

Timing is never asserted here (a shared CI machine makes it noise); the one figure
checked is the contended benchmark's achieved rate, whose bound of 1.0 is the
limiter's conformance promise (``burst + rate * T``), a correctness property.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import contended, fastpath, monitor, policy, retune, waiters
from bench.__main__ import main
from bench._common import Section
from bench.report import machine, render, to_json


@pytest.fixture(scope="module")
def sections() -> dict[str, Section]:
    runs = [
        fastpath.run(iterations=200, repeats=1),
        contended.run(sizes=(10, 40), repeats=1, span=0.05),
        waiters.run(sizes=(40, 100), repeats=1, rate=100.0, burst=2, window=0.03),
        retune.run(latency_sizes=(1, 10), cpu_sizes=(0, 10), repeats=1),
        policy.run(queues=20, ticks=2, warmup=2, trace_queues=2, trace_hours=0.05, repeats=1),
        monitor.run(
            tick_queues=5,
            ticks=4,
            rabbit_queues=0,
            workers=2,
            seconds=0.05,
            interval=0.01,
            repeats=1,
        ),
    ]
    return {s.key: s for s in runs}


def test_every_benchmark_reports(sections: dict[str, Section]) -> None:
    assert set(sections) == {
        "fastpath",
        "contended",
        "waiters",
        "retune",
        "policy",
        "monitor",
    }
    for section in sections.values():
        assert section.title
        assert section.method
        assert section.rows
        assert section.checks
        for row in section.rows:
            assert set(row) == set(section.columns), (section.key, row)
        for check in section.checks:
            assert isinstance(check.value, float)
            assert math.isfinite(check.value)
            assert check.value > 0
            assert check.verdict in {"met", "NOT MET", "(info)"}


def test_fastpath_has_every_contender(sections: dict[str, Section]) -> None:
    names = {row["contender"] for row in sections["fastpath"].rows}
    assert names == set(fastpath.CONTENDERS)
    for row in sections["fastpath"].rows:
        assert isinstance(row["best ns/op"], float)
        assert row["best ns/op"] > 0


def test_contended_rate_is_conformant(sections: dict[str, Section]) -> None:
    rows = sections["contended"].rows
    assert {(row["N"], row["contender"]) for row in rows} == {
        (n, c) for n in (10, 40) for c in ("no-op CM", "aiolimiter", "admission")
    }
    for row in rows:
        if row["contender"] == "no-op CM":
            continue
        for key in ("achieved (median)", "achieved (min)", "achieved (max)"):
            achieved = row[key]
            assert isinstance(achieved, float)
            assert achieved > 0, (row, key)
            if row["contender"] == "admission":  # our promise; aiolimiter's is not ours to test
                assert achieved <= 1.0 + contended.CONFORMANCE_SLACK, (row, key)


def test_waiters_are_all_cancelled(sections: dict[str, Section]) -> None:
    rows = [row for row in sections["waiters"].rows if row["contender"] != "timer floor"]
    assert {(row["waiters"], row["contender"]) for row in rows} == {
        (n, c) for n in (40, 100) for c in ("aiolimiter", "admission")
    }
    for row in rows:
        grants = row["grants in window"]
        assert isinstance(grants, int)
        assert grants > 0
        if row["contender"] == "admission":
            assert row["waiting after cancel"] == 0


def test_policy_measures_every_stage(sections: dict[str, Section]) -> None:
    section = sections["policy"]
    labels = [str(row["measurement"]) for row in section.rows]
    assert len(labels) == 6
    assert any("engine.step, 20 queues, busy" in label for label in labels)
    assert any("replay, CSV path to result" in label for label in labels)
    assert [c.met is not None for c in section.checks] == [True, False, True, True, False]
    assert any(note.startswith("Where a loaded replay's time goes") for note in section.notes)


def test_report_and_json(sections: dict[str, Section]) -> None:
    info = machine()
    assert info["cpu"]
    text = render(list(sections.values()), info, quick=True)
    for section in sections.values():
        assert section.title in text
    document = json.loads(to_json(list(sections.values()), info, quick=True))
    assert document["mode"] == "quick"
    assert [s["key"] for s in document["sections"]] == list(sections)
    for section in document["sections"]:
        for check in section["checks"]:
            assert set(check) == {"name", "value", "target", "met"}


def test_cli_quick_writes_only_where_told(tmp_path: Path) -> None:
    assert main(["--quick", "--only", "fastpath", "--out", str(tmp_path)]) == 0
    assert "Uncontended fast path" in (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["mode"] == "quick"


@pytest.mark.service
def test_telemetry_times_both_modes_on_the_real_broker() -> None:
    from services import rabbitmq_management

    from bench import telemetry

    rabbitmq_management()
    section = telemetry.run(sizes=(1, 3), ticks=2, warmup=1, background=2, settle=0.0)
    assert section.key == "telemetry"
    assert [row["N"] for row in section.rows] == [1, 3]
    for row in section.rows:
        assert set(row) == set(section.columns)
        for column in section.columns[1:]:
            value = row[column]
            assert isinstance(value, float)
            assert value > 0, (column, row)
    assert all(math.isfinite(check.value) and check.value > 0 for check in section.checks)
    assert sum(note.startswith("Crossover") for note in section.notes) == 3


def test_load_serves_every_request_beside_paced_admissions() -> None:
    from bench import load

    rate, seconds = 2_000.0, 0.1
    section = load.run(
        clients=(2, 3),
        pollers=2,
        poll_interval=0.02,
        rate=rate,
        workers=2,
        warmup=0.05,
        seconds=seconds,
        repeats=1,
        max_requests=100,
    )
    assert section.key == "load"
    paced, tight = f"paced {rate:,.0f}/s, burst 200", f"paced {rate:,.0f}/s, burst 20"
    assert [(row["admissions"], row["HTTP load"]) for row in section.rows] == [
        (paced, "none"),
        (paced, "2 clients, back-to-back"),
        (paced, "3 clients, back-to-back"),
        (paced, "2 clients, every 0.02 s"),
        (tight, "none"),
        (tight, "3 clients, back-to-back"),
        ("unpaced", "none"),
        ("unpaced", "3 clients, back-to-back"),
        ("unpaced", "2 clients, every 0.02 s"),
        ("none", "3 clients, back-to-back"),
    ]
    for row in section.rows:
        assert set(row) == set(section.columns), row
        admitted = row["admissions/s"]
        if row["admissions"] == "none":
            assert admitted is None, row
        else:
            assert isinstance(admitted, float)
            assert admitted > 0, row
        if row["admissions"] in (paced, tight):
            # A window holds at most the burst (0.1 s of rate at most) plus rate x window.
            assert isinstance(admitted, float)
            assert admitted <= rate + rate * 0.1 / seconds, row
        http = [row[c] for c in ("requests", "requests/s", "p50 ms", "p99 ms", "max ms")]
        if row["HTTP load"] == "none":
            assert http == [None] * 5, row
            continue
        requests, per_second, p50, p99, worst = http
        assert isinstance(requests, int)
        assert requests > 0, row
        assert isinstance(per_second, float)
        assert per_second > 0, row
        assert isinstance(p50, float)
        assert isinstance(p99, float)
        assert isinstance(worst, float)
        assert 0 < p50 <= p99 <= worst, row
    # Every client got a 200 for every request it sent, or the section says otherwise.
    assert not any("failed request" in note for note in section.notes), section.notes
    assert [check.met is not None for check in section.checks] == [True, True] + [False] * 8
    assert all(math.isfinite(check.value) for check in section.checks)
    assert section.title in render([section], machine(), quick=True)
