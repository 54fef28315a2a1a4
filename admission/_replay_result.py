"""The records a replay produces (see :mod:`admission.simulate`): frozen, JSON-ready."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from admission.policy.levels import FAIL_SAFE, Level

__all__ = [
    "LEVELS",
    "RANKING",
    "Comparison",
    "FailSafeSpan",
    "PresetScore",
    "QueueTimeline",
    "ReplayResult",
    "ReplayTransition",
    "TimelinePoint",
]

#: Every level a queue or a class can show, in order; ``fail_safe`` overrides the others.
LEVELS = (Level.NORMAL.value, Level.WARNING.value, Level.CRITICAL.value, FAIL_SAFE)

#: How :func:`compare` ranks presets (the first difference decides).
RANKING = (
    "fewest flaps per hour, then least fail-safe time, then least throttled time "
    "(warning + critical, summed over queues), then preset name. It rewards stability "
    "and throughput, not protection: a preset that never reacts ranks first, so read "
    "first_escalation_seconds beside it."
)


@dataclass(frozen=True, slots=True)
class ReplayTransition:
    """A change of a queue's or a class's effective level during the replay."""

    at_seconds: float
    t: float
    scope: str
    name: str
    from_level: str
    to_level: str
    reason: str
    detail: str
    signal: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at_seconds": self.at_seconds,
            "t": self.t,
            "scope": self.scope,
            "name": self.name,
            "from_level": self.from_level,
            "to_level": self.to_level,
            "reason": self.reason,
            "detail": self.detail,
            "signal": self.signal,
        }


@dataclass(frozen=True, slots=True)
class FailSafeSpan:
    """A queue in fail-safe from ``start`` to ``end`` (seconds from the trace start).

    ``ongoing`` when the trace ended in fail-safe (``end`` is then the trace's end).
    """

    queue: str
    start: float
    end: float
    reason: str
    ongoing: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "start": self.start,
            "end": self.end,
            "reason": self.reason,
            "ongoing": self.ongoing,
        }


class TimelinePoint(NamedTuple):
    t: float
    signal: float | None
    level: str


@dataclass(frozen=True, slots=True)
class QueueTimeline:
    """One queue, tick by tick: the trace time, its signal (``None``: no reading), its level."""

    queue: str
    signal_name: str
    warning_threshold: float
    critical_threshold: float
    exit_ratio: float
    t: tuple[float, ...]
    signal: tuple[float | None, ...]
    level: tuple[str, ...]

    def points(self) -> list[TimelinePoint]:
        return [TimelinePoint(*p) for p in zip(self.t, self.signal, self.level, strict=True)]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a preset did on a trace.  Frozen; the mappings are not to be mutated."""

    preset: str
    source: str
    start_t: float
    poll_interval_seconds: float
    ticks: int
    duration_seconds: float
    timelines: tuple[QueueTimeline, ...]
    #: class name -> its level at each tick (same ticks as the queues' ``t``)
    class_levels: Mapping[str, tuple[str, ...]]
    transitions: tuple[ReplayTransition, ...]
    #: queue -> level -> seconds; every level of :data:`LEVELS` is present
    seconds_in_level: Mapping[str, Mapping[str, float]]
    class_seconds_in_level: Mapping[str, Mapping[str, float]]
    fail_safe_spans: tuple[FailSafeSpan, ...]
    flaps_per_hour: float
    warnings: tuple[str, ...]

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(timeline.queue for timeline in self.timelines)

    def timeline(self, queue: str) -> QueueTimeline:
        for timeline in self.timelines:
            if timeline.queue == queue:
                return timeline
        raise KeyError(queue)

    def queue_transitions(self) -> tuple[ReplayTransition, ...]:
        """The queues' level changes (what ``flaps_per_hour`` counts)."""
        return tuple(
            t for t in self.transitions if t.scope == "queue" and t.from_level != t.to_level
        )

    def to_dict(self, *, timeline: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json``); ``timeline=True`` adds every tick."""
        data: dict[str, Any] = {
            "preset": self.preset,
            "source": self.source,
            "start_t": self.start_t,
            "poll_interval_seconds": self.poll_interval_seconds,
            "ticks": self.ticks,
            "duration_seconds": self.duration_seconds,
            "transitions": [t.to_dict() for t in self.transitions],
            "seconds_in_level": {q: dict(s) for q, s in self.seconds_in_level.items()},
            "class_seconds_in_level": {c: dict(s) for c, s in self.class_seconds_in_level.items()},
            "fail_safe_spans": [s.to_dict() for s in self.fail_safe_spans],
            "flaps_per_hour": self.flaps_per_hour,
            "warnings": list(self.warnings),
        }
        if timeline:
            data["timeline"] = {
                tl.queue: [list(p) for p in zip(tl.t, tl.signal, tl.level, strict=True)]
                for tl in self.timelines
            }
        return data


@dataclass(frozen=True, slots=True)
class PresetScore:
    """One preset's place in a :func:`compare` ranking (1 is best)."""

    rank: int
    preset: str
    flaps_per_hour: float
    transitions: int
    fail_safe_seconds: float
    throttled_seconds: float
    first_escalation_seconds: float | None
    result: ReplayResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "preset": self.preset,
            "flaps_per_hour": self.flaps_per_hour,
            "transitions": self.transitions,
            "fail_safe_seconds": self.fail_safe_seconds,
            "throttled_seconds": self.throttled_seconds,
            "first_escalation_seconds": self.first_escalation_seconds,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Presets ranked on one trace by :data:`RANKING`."""

    ranking: tuple[PresetScore, ...]
    ranked_by: str = RANKING

    @property
    def best(self) -> PresetScore:
        return self.ranking[0]

    def to_dict(self) -> dict[str, Any]:
        return {"ranked_by": self.ranked_by, "ranking": [s.to_dict() for s in self.ranking]}
