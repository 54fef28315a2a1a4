"""What a demo run did: time in each level, transitions, counts, accounting; its files.

Times are scenario seconds from the pipeline's start.  Time in each level is
measured from the registry's transition records (exact instants, not samples);
the timeline plot draws the recorder's samples with :func:`admission.plot.plot_replay`,
so a demo run reads like a replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from admission._replay_result import (
    LEVELS,
    FailSafeSpan,
    QueueTimeline,
    ReplayResult,
    ReplayTransition,
)
from admission.demo.broker import QueueAccount
from admission.demo.scenario import QUEUES
from admission.demo.timeline import LEVEL_RANK, Sample
from admission.status import Status, TransitionRecord

__all__ = ["OVERALL", "DemoSummary", "replay_result", "summarize", "write_outputs"]

#: The key of the pipeline's headline level in ``seconds_in_level``.
OVERALL = "overall"


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """A demo run in figures (see the module docstring); ``to_dict()`` is its JSON."""

    mode: str
    preset: str
    speed: float
    duration: float
    played_seconds: float
    real_seconds: float
    interrupted: bool
    #: The pipeline's headline level, each change once, in order (``normal`` first).
    levels_seen: tuple[str, ...]
    #: ``overall`` and each queue -> level -> seconds.
    seconds_in_level: Mapping[str, Mapping[str, float]]
    class_seconds_in_level: Mapping[str, Mapping[str, float]]
    transitions: tuple[ReplayTransition, ...]
    stages: tuple[Mapping[str, Any], ...]
    #: stage -> workload class -> admissions.
    admitted: Mapping[str, Mapping[str, int]]
    accounts: tuple[QueueAccount, ...]
    final_status: Status = field(repr=False)
    status_path: Path | None = None
    summary_path: Path | None = None
    plot_path: Path | None = None
    plot_error: str | None = None

    @property
    def produced(self) -> int:
        return next((a.published for a in self.accounts if a.queue == QUEUES[0]), 0)

    @property
    def nothing_lost(self) -> bool:
        """Every message of every queue processed or still queued (and the count was taken)."""
        return bool(self.accounts) and all(account.lost == 0 for account in self.accounts)

    @property
    def deferred(self) -> int:
        return sum(int(stage["handed_back"].get("deferred", 0)) for stage in self.stages)

    @property
    def redelivered(self) -> int:
        return sum(int(stage["redelivered"]) for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "preset": self.preset,
            "speed": self.speed,
            "duration_seconds": self.duration,
            "played_seconds": self.played_seconds,
            "real_seconds": self.real_seconds,
            "interrupted": self.interrupted,
            "levels_seen": list(self.levels_seen),
            "seconds_in_level": {k: dict(v) for k, v in self.seconds_in_level.items()},
            "class_seconds_in_level": {k: dict(v) for k, v in self.class_seconds_in_level.items()},
            "transitions": [t.to_dict() for t in self.transitions],
            "stages": [dict(s) for s in self.stages],
            "admitted": {k: dict(v) for k, v in self.admitted.items()},
            "deferred": self.deferred,
            "redelivered": self.redelivered,
            "accounting": {
                "produced": self.produced,
                "nothing_lost": self.nothing_lost,
                "queues": [a.to_dict() for a in self.accounts],
            },
            "files": {
                "status": None if self.status_path is None else str(self.status_path),
                "summary": None if self.summary_path is None else str(self.summary_path),
                "plot": None if self.plot_path is None else str(self.plot_path),
                "plot_error": self.plot_error,
            },
        }


def _transitions(
    records: Iterable[TransitionRecord], origin: datetime, end: float
) -> tuple[ReplayTransition, ...]:
    out = []
    for record in records:
        t = round((record.at - origin).total_seconds(), 3)
        if t <= end:
            out.append(
                ReplayTransition(
                    t,
                    t,
                    record.scope,
                    record.name,
                    record.from_level,
                    record.to_level,
                    record.reason,
                    record.detail,
                    record.signal,
                )
            )
    return tuple(out)


def _seconds(
    names: Sequence[str], changes: Sequence[ReplayTransition], end: float
) -> dict[str, dict[str, float]]:
    """Per name, seconds in each level: ``normal`` from 0, then as the transitions say."""
    out: dict[str, dict[str, float]] = {}
    for name in names:
        totals = dict.fromkeys(LEVELS, 0.0)
        level, since = "normal", 0.0
        for change in changes:
            if change.name == name:
                totals[level] += max(0.0, change.t - since)
                level, since = change.to_level, change.t
        totals[level] += max(0.0, end - since)
        out[name] = {k: round(v, 3) for k, v in totals.items()}
    return out


def _overall(
    changes: Sequence[ReplayTransition], end: float
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The headline level over time (the most pressing queue): its changes and its seconds."""
    levels = dict.fromkeys(QUEUES, "normal")
    seen = ["normal"]
    totals = dict.fromkeys(LEVELS, 0.0)
    current, since = "normal", 0.0
    for change in changes:
        if change.name not in levels:
            continue
        levels[change.name] = change.to_level
        top = max(levels.values(), key=LEVEL_RANK.__getitem__)
        if top != current:
            totals[current] += change.t - since
            current, since = top, change.t
            seen.append(top)
    totals[current] += max(0.0, end - since)
    return tuple(seen), {k: round(v, 3) for k, v in totals.items()}


def summarize(
    *,
    mode: str,
    speed: float,
    duration: float,
    played: float,
    real_seconds: float,
    interrupted: bool,
    origin: datetime,
    records: Iterable[TransitionRecord],
    final_status: Status,
    stages: Iterable[Mapping[str, Any]],
    admitted: Mapping[str, Mapping[str, int]],
    accounts: Sequence[QueueAccount],
) -> DemoSummary:
    """The figures of a run; ``origin`` is the wall time of scenario second 0."""
    transitions = _transitions(records, origin, played)
    queue_changes = [t for t in transitions if t.scope == "queue"]
    class_changes = [t for t in transitions if t.scope == "class"]
    levels_seen, overall = _overall(queue_changes, played)
    classes = [c.class_name for c in final_status.class_states]
    return DemoSummary(
        mode=mode,
        preset=final_status.active_preset,
        speed=speed,
        duration=duration,
        played_seconds=round(played, 3),
        real_seconds=round(real_seconds, 3),
        interrupted=interrupted,
        levels_seen=levels_seen,
        seconds_in_level={OVERALL: overall, **_seconds(QUEUES, queue_changes, played)},
        class_seconds_in_level=_seconds(classes, class_changes, played),
        transitions=transitions,
        stages=tuple(stages),
        admitted=admitted,
        accounts=tuple(accounts),
        final_status=final_status,
    )


def replay_result(summary: DemoSummary, samples: Sequence[Sample], every: float) -> ReplayResult:
    """The run as a :class:`ReplayResult` (what :func:`admission.plot.plot_replay` draws)."""
    timelines = []
    for queue in QUEUES:
        entries = [s.status.queue(queue) for s in samples]
        first = entries[0] if entries else summary.final_status.queue(queue)
        timelines.append(
            QueueTimeline(
                queue,
                first.signal,
                first.warning_threshold,
                first.critical_threshold,
                first.exit_ratio,
                tuple(round(s.t, 3) for s in samples),
                # No reading while telemetry fails: a gap, not the last value held.
                tuple(
                    e.signal_value if e.telemetry.health in ("ok", "degraded") else None
                    for e in entries
                ),
                tuple(e.severity for e in entries),
            )
        )
    class_levels = {
        c.class_name: tuple(s.status.workload_class(c.class_name).level for s in samples)
        for c in summary.final_status.class_states
    }
    changes = [t for t in summary.transitions if t.scope == "queue"]
    spans = []
    for queue in QUEUES:
        start: ReplayTransition | None = None
        for change in (c for c in changes if c.name == queue):
            if change.to_level == "fail_safe" and start is None:
                start = change
            elif change.from_level == "fail_safe" and start is not None:
                spans.append(FailSafeSpan(queue, start.t, change.t, start.detail, False))
                start = None
        if start is not None:
            spans.append(FailSafeSpan(queue, start.t, summary.played_seconds, start.detail, True))
    hours = summary.played_seconds / 3600
    return ReplayResult(
        preset=summary.preset,
        source="admission demo",
        start_t=0.0,
        poll_interval_seconds=every,
        ticks=len(samples),
        duration_seconds=summary.played_seconds,
        timelines=tuple(timelines),
        class_levels=class_levels,
        transitions=summary.transitions,
        seconds_in_level={q: summary.seconds_in_level[q] for q in QUEUES},
        class_seconds_in_level=summary.class_seconds_in_level,
        fail_safe_spans=tuple(spans),
        flaps_per_hour=len(changes) / hours if hours > 0 else 0.0,
        warnings=(),
    )


def write_outputs(
    summary: DemoSummary,
    output_dir: Path,
    *,
    samples: Sequence[Sample],
    every: float,
    plot: bool,
) -> DemoSummary:
    """Write ``status.json``, ``summary.json`` and (``plot``) ``timeline.png``; paths filled in."""
    output_dir.mkdir(parents=True, exist_ok=True)
    status_path = output_dir / "status.json"
    status_path.write_text(
        json.dumps(summary.final_status.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    plot_path: Path | None = None
    plot_error: str | None = None
    if plot and samples:
        try:
            from admission.plot import plot_replay

            plot_path = plot_replay(
                replay_result(summary, samples, every), output_dir / "timeline.png"
            )
        except (ImportError, OSError, ValueError) as exc:
            plot_error = f"{type(exc).__name__}: {exc}"
    written = replace(
        summary,
        status_path=status_path,
        summary_path=output_dir / "summary.json",
        plot_path=plot_path,
        plot_error=plot_error,
    )
    assert written.summary_path is not None
    written.summary_path.write_text(
        json.dumps(written.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return written
