"""Helpers shared by the policy tests: a tiny driver around the pure engine.

The engine is told ``now``; these helpers only save typing.  Times are built as
``start + i * every`` (never accumulated) so that boundaries are exact floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from admission.policy import (
    FAIL_SAFE,
    Decision,
    FailureKind,
    Level,
    Observation,
    PolicyConfig,
    PolicyEngine,
    PolicyState,
    QueuePolicy,
    QueueSample,
    ReadFailure,
    Transition,
    parse_config,
)

PRESETS = ("conservative", "balanced", "aggressive")
NEW_FILE = "files-new_file"
CONVERSION = "files-document_conversion_input"
TITUS = "titus-titus_input"
LEVEL_NAMES = {Level.NORMAL.value, Level.WARNING.value, Level.CRITICAL.value, FAIL_SAFE}
REASON_CODES = {
    "sustained_pressure",
    "cooldown_elapsed",
    "telemetry_stale",
    "telemetry_failing",
    "telemetry_recovered",
    "watched_queue",
    "fail_safe",
    "override_set",
    "override_expired",
    "override_removed",
}


def ready(queue: str, at: float, value: float) -> QueueSample:
    """A full reading whose ``messages_ready`` is ``value``."""
    return QueueSample(queue, at, int(value), messages_unacknowledged=0, consumers=1)


def failure(queue: str, at: float, reason: str = "read timed out") -> ReadFailure:
    return ReadFailure(queue, at, FailureKind.TIMEOUT, reason)


def config(data: Mapping[str, Any] | None = None, *, preset: str | None = None) -> PolicyConfig:
    return parse_config(data, preset=preset)


def one_queue(preset: str, queue: str = NEW_FILE, **overrides: Any) -> PolicyConfig:
    """A configuration that watches ``queue`` under ``preset``."""
    return parse_config({"preset": preset, "queues": [{"name": queue, **overrides}]})


class Run:
    """Drives an engine tick by tick and keeps every transition it produced."""

    def __init__(self, cfg: PolicyConfig, *, at: float = 0.0, preset: str | None = None) -> None:
        self.engine = PolicyEngine(cfg, preset=preset)
        self.state: PolicyState = self.engine.start(at)
        self.transitions: list[Transition] = []
        self.last: Decision = Decision(self.state)

    def apply(self, decision: Decision) -> Decision:
        self.state = decision.state
        self.transitions.extend(decision.transitions)
        self.last = decision
        return decision

    def step(self, now: float, observations: Mapping[str, Observation] | None = None) -> Decision:
        return self.apply(self.engine.step(self.state, observations or {}, now))

    def tick(self, now: float) -> Decision:
        """A step with no observation at all."""
        return self.step(now)

    def sample(self, queue: str, now: float, value: float) -> Decision:
        return self.step(now, {queue: ready(queue, now, value)})

    def fail(self, queue: str, now: float, reason: str = "read timed out") -> Decision:
        return self.step(now, {queue: failure(queue, now, reason)})

    def samples(
        self, queue: str, start: float, stop: float, value: float, every: float = 5.0
    ) -> float:
        """Samples at ``start, start + every, ...`` strictly before ``stop``; the last time."""
        i, last = 0, start
        while start + i * every < stop:
            last = start + i * every
            self.sample(queue, last, value)
            i += 1
        return last

    def expire(self, now: float) -> Decision:
        return self.apply(self.engine.expire(self.state, now))

    def policy(self, queue: str) -> QueuePolicy:
        return self.engine.queue_policy(self.state, queue)

    def level(self, queue: str) -> str:
        """The queue's displayed level (its baseline, or ``fail_safe``), overrides aside."""
        return self.state.queues[queue].display

    def class_level(self, name: str) -> str:
        return self.state.classes[name].display

    def queue_transitions(self, queue: str) -> list[Transition]:
        return [t for t in self.transitions if t.scope == "queue" and t.name == queue]
