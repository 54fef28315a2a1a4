"""The engine's immutable state and the records it produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from admission.policy.config import LevelLimits
from admission.policy.levels import FAIL_SAFE, Level
from admission.policy.samples import QueueSample

__all__ = [
    "ClassState",
    "Decision",
    "Override",
    "PolicyState",
    "QueueState",
    "Transition",
    "Window",
]

Scope = Literal["queue", "class"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a queue's or a class's effective level, and why."""

    scope: Scope
    name: str
    from_level: str
    to_level: str
    at: float
    #: A stable code: sustained_pressure, cooldown_elapsed, telemetry_stale,
    #: telemetry_failing, telemetry_recovered, watched_queue, fail_safe (a class
    #: whose watched queue entered fail-safe), override_set, override_expired,
    #: override_removed.  An override's record may have ``from_level == to_level``
    #: (a preset pin, or a pin on the level already shown): it is still recorded.
    reason: str
    detail: str
    signal: float | None = None
    warning_threshold: float | None = None
    critical_threshold: float | None = None
    exit_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A running anti-flap window: what it leads to and how long is left."""

    kind: Literal["sustained", "cooldown", "recovery"]
    pending_level: Level
    since: float
    required_seconds: float
    elapsed_seconds: float
    remaining_seconds: float


class QueueState(NamedTuple):
    """One queue's place in the state machine (its baseline, before overrides).

    A named tuple: a replay builds one per queue per tick, and a tuple is the
    cheapest immutable record Python has.  The windows are kept as instants:
    ``*_since`` is when the signal last rose to (or, for ``*_exit_since``, fell
    below the exit threshold of) that level and has stayed there; ``*_reached_at``
    is the last sample at or above that level's enter threshold.
    """

    name: str
    level: Level
    level_since: float
    started_at: float
    signal: float | None = None
    last_sample: QueueSample | None = None
    last_good_at: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    fail_safe: bool = False
    fail_safe_reason: str | None = None
    fail_safe_since: float | None = None
    warning_since: float | None = None
    critical_since: float | None = None
    warning_exit_since: float | None = None
    critical_exit_since: float | None = None
    warning_reached_at: float | None = None
    critical_reached_at: float | None = None
    recovery_since: float | None = None
    recovery_peak: Level = Level.NORMAL

    @property
    def display(self) -> str:
        return FAIL_SAFE if self.fail_safe else self.level.value

    def sample_age(self, now: float) -> float | None:
        return None if self.last_good_at is None else max(0.0, now - self.last_good_at)


@dataclass(frozen=True, slots=True)
class ClassState:
    """A workload class: its level (the highest of its queues) and effective limits."""

    name: str
    level: Level
    fail_safe: bool
    limits: LevelLimits
    reason: str
    since: float
    watches: tuple[str, ...] = ()
    preset: str = ""
    #: When the reason ends by itself (an override's expiry), on the engine's clock.
    until: float | None = None

    @property
    def display(self) -> str:
        return FAIL_SAFE if self.fail_safe else self.level.value


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's pin of a level or a preset on a queue or a class, for a TTL."""

    id: str
    scope: Scope
    name: str
    expires_at: float
    created_at: float
    level: Level | None = None
    preset: str | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Everything the engine knows at ``at``.  Never mutated: steps return a new one."""

    at: float
    preset: str
    queues: Mapping[str, QueueState]
    classes: Mapping[str, ClassState]
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """What one step produced: the new state and the transitions on the way."""

    state: PolicyState
    transitions: tuple[Transition, ...] = field(default_factory=tuple)

    @property
    def limits(self) -> dict[str, LevelLimits]:
        """Each class's effective limits, to apply to the limiters."""
        return {name: c.limits for name, c in self.state.classes.items()}
