"""``admission demo``, run for real at high speed: its levels, its status server, its accounting.

The demo runs once per module on a ScaledClock at ``SPEED`` (the 10-minute
scenario in about two seconds): its real uvicorn is queried with httpx while
it runs, at the moments the recorder reports, never after a real-time sleep.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from admission.demo import Demo, DemoOptions, DemoSummary
from admission.demo.scenario import QUEUES, Scenario
from admission.demo.timeline import Sample
from admission.demo.view import render

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SPEED = 300.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRESSURE = ("warning", "critical")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


@dataclass
class Run:
    demo: Demo
    summary: DemoSummary
    output: str
    responses: dict[str, dict[str, Any]]
    samples: dict[str, Sample]
    output_dir: Path


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    import anyio

    output_dir = tmp_path_factory.mktemp("demo-output")
    stream = io.StringIO()
    demo = Demo(DemoOptions(speed=SPEED, output_dir=output_dir, view="plain"), stream=stream)
    responses: dict[str, dict[str, Any]] = {}
    samples: dict[str, Sample] = {}

    async def watch() -> None:
        url = await demo.started()
        async with httpx.AsyncClient(timeout=10) as client:
            responses["start"] = (await client.get(url)).json()
            for name, wanted in (
                ("pressure", lambda s: s.headline in PRESSURE),
                ("fail_safe", lambda s: s.headline == "fail_safe"),
            ):
                samples[name] = await demo.wait_until(wanted)
                responses[name] = (await client.get(url)).json()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        summary = await demo.run()
    return Run(demo, summary, stream.getvalue(), responses, samples, output_dir)


def _ordered(levels: tuple[str, ...], *wanted: tuple[str, ...]) -> bool:
    """``levels`` passes through each group of ``wanted`` in order."""
    position = 0
    for group in wanted:
        while position < len(levels) and levels[position] not in group:
            position += 1
        if position == len(levels):
            return False
        position += 1
    return True


async def test_the_levels_go_normal_pressure_fail_safe_and_back_to_normal(run: Run) -> None:
    summary = run.summary
    assert not summary.interrupted
    assert summary.levels_seen[0] == "normal"
    assert summary.levels_seen[-1] == "normal"
    assert _ordered(summary.levels_seen, ("normal",), PRESSURE, ("fail_safe",), ("normal",))
    overall = summary.seconds_in_level["overall"]
    assert overall["fail_safe"] > 0
    assert overall["warning"] + overall["critical"] > 0
    assert sum(overall.values()) == pytest.approx(summary.played_seconds, abs=0.01)
    assert summary.played_seconds >= summary.duration
    final = json.loads(summary.status_path.read_text()) if summary.status_path else {}
    assert final["queue_pressure_level"] == "normal"
    assert final["fail_safe"] is False
    assert final["monitor"] == "running"


async def test_pressure_is_sustained_a_minute_and_cools_down_for_two(run: Run) -> None:
    queue_changes = [t for t in run.summary.transitions if t.scope == "queue"]
    first = queue_changes[0]
    assert (first.name, first.from_level, first.reason) == (
        "files-new_file",
        "normal",
        "sustained_pressure",
    )
    assert "(sustained 60s)" in first.detail
    drop = next(p for p in Scenario.build().phases if p.name == "drop")
    assert first.t >= drop.window.start + 60
    cooldowns = [t for t in queue_changes if t.reason == "cooldown_elapsed"]
    assert cooldowns
    assert all("(cooldown 120s)" in t.detail for t in cooldowns)


async def test_fail_safe_comes_with_the_outage_and_recovers_after_it(run: Run) -> None:
    outage = Scenario.build().outage
    changes = [t for t in run.summary.transitions if t.scope == "queue"]
    entered = [t for t in changes if t.to_level == "fail_safe"]
    left = [t for t in changes if t.from_level == "fail_safe"]
    assert {t.name for t in entered} == set(QUEUES) == {t.name for t in left}
    assert all(t.reason in ("telemetry_failing", "telemetry_stale") for t in entered)
    assert all(outage.start < t.t < outage.end for t in entered)
    assert all("telemetry outage" in t.detail for t in entered)
    assert all(t.reason == "telemetry_recovered" and t.t >= outage.end + 120 for t in left)
    fail_safe_classes = {
        t.name for t in run.summary.transitions if t.scope == "class" and t.to_level == "fail_safe"
    }
    assert fail_safe_classes == {"standard", "expensive"}


async def test_the_status_endpoint_answers_while_the_demo_runs(run: Run) -> None:
    start, pressure, fail_safe = (run.responses[k] for k in ("start", "pressure", "fail_safe"))
    assert start["monitor"] == "running"
    assert start["active_preset"] == "balanced"
    assert [q["queue"] for q in start["queue_states"]] == list(QUEUES)
    assert pressure["queue_pressure_level"] in PRESSURE
    expensive = next(c for c in pressure["class_states"] if c["class_name"] == "expensive")
    assert expensive["deferred_admission"] is True
    assert fail_safe["fail_safe"] is True
    assert "telemetry outage" in fail_safe["fail_safe_reason"]
    assert all(q["telemetry"]["health"] in ("failing", "stale") for q in fail_safe["queue_states"])
    assert run.demo.status_url is not None
    assert run.demo.status_url.startswith("http://127.0.0.1:")


async def test_nothing_is_lost(run: Run) -> None:
    summary = run.summary
    assert summary.nothing_lost
    assert [a.queue for a in summary.accounts] == list(QUEUES)
    assert summary.produced == Scenario.build().total_files
    for account in summary.accounts:
        assert account.published > 0
        assert account.published == account.processed + account.still_queued
    # The quiet end drains everything.
    assert all(a.still_queued == 0 for a in summary.accounts)


async def test_hand_backs_are_counted_and_redelivered(run: Run) -> None:
    summary = run.summary
    enrichment = next(s for s in summary.stages if s["stage"] == "file_enrichment")
    assert enrichment["handed_back"]["deferred"] > 0
    assert summary.deferred == enrichment["handed_back"]["deferred"]
    for stage in summary.stages:
        handed = sum(stage["handed_back"].values())
        # Drained: each hand-back came back exactly once more, and every delivery ended.
        assert stage["redelivered"] == handed
        assert stage["delivered"] == stage["processed"] + handed
    admitted = summary.admitted["file_enrichment"]
    assert admitted["standard"] + admitted["expensive"] == enrichment["processed"]
    final = summary.final_status.workload_class("expensive")
    assert final.deferred_total >= summary.deferred


async def test_the_files_are_written(run: Run) -> None:
    summary = run.summary
    assert summary.status_path == run.output_dir / "status.json"
    status = json.loads(summary.status_path.read_text(encoding="utf-8"))
    assert {"queue_pressure_level", "fail_safe", "queue_states", "class_states"} <= status.keys()
    assert summary.summary_path is not None
    written = json.loads(summary.summary_path.read_text(encoding="utf-8"))
    assert written["levels_seen"] == list(summary.levels_seen)
    assert written["accounting"]["nothing_lost"] is True
    assert summary.plot_path == run.output_dir / "timeline.png"
    assert summary.plot_path.read_bytes().startswith(PNG_MAGIC)
    events = (run.output_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert any(json.loads(line)["event"] == "admission.transition" for line in events)


async def test_the_plain_output_tells_the_story(run: Run) -> None:
    output = run.output
    url = run.demo.status_url
    assert f"status:   {url}" in output
    assert f"curl -s {url}" in output
    assert f"admission status --url {url}" in output
    assert "t=  " in output
    assert "transition  queue files-new_file: normal -> " in output
    assert "(telemetry outage)" in output
    assert "levels: normal -> " in output
    assert "nothing lost" in output


async def test_the_live_view_shows_queues_classes_and_transitions(run: Run) -> None:
    console = Console(record=True, width=160, file=io.StringIO())
    sample = run.samples["fail_safe"]
    console.print(
        render(
            sample,
            title="demo",
            duration=600,
            transitions=run.demo.registry.transitions(limit=3),
            origin=run.demo.registry.to_wall(run.demo.pipeline.t0 if run.demo.pipeline else 0),
        )
    )
    text = console.export_text()
    for fragment in (
        "Queues",
        "Workload classes",
        "Latest transitions",
        "files-new_file",
        "fail_safe",
    ):
        assert fragment in text
    assert "telemetry outage" in text or "failing" in text
