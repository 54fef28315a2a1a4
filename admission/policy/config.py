"""Policy configuration models (pydantic v2, frozen).

Errors name the field and the value: pydantic reports the location of every
field, and the cross-field rules below say which values clash.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from admission.policy.levels import Level, Signal

__all__ = [
    "ClassPolicy",
    "LevelLimits",
    "Preset",
    "QueuePolicy",
    "QueuePolicyPatch",
]

# Strict: in a TOML file ``"50"`` or ``true`` where a number belongs is a mistake
# to name, not a value to guess at (lax pydantic reads ``true`` as 1 and ``"no"``
# as False).  A number may be written as an integer or a float; a count only as
# an integer.
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueuePolicy(_Frozen):
    """How one queue's pressure becomes a level (DESIGN.md "Policy semantics")."""

    signal: Signal = Signal.MESSAGES_READY
    warning_threshold: Number = Field(ge=0, allow_inf_nan=False)
    critical_threshold: Number = Field(ge=0, allow_inf_nan=False)
    exit_ratio: Number = Field(default=0.8, gt=0, lt=1)
    sustained_seconds: Number = Field(ge=0, allow_inf_nan=False)
    cooldown_seconds: Number = Field(ge=0, allow_inf_nan=False)
    stale_after_seconds: Number = Field(gt=0, allow_inf_nan=False)
    failure_threshold: Count = Field(default=3, ge=1)
    recovery_seconds: Number = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        if self.critical_threshold <= self.warning_threshold:
            raise ValueError(
                f"critical_threshold={self.critical_threshold:g} must be above "
                f"warning_threshold={self.warning_threshold:g}"
            )
        return self

    def enter(self, level: Level) -> float:
        """The signal value at or above which ``level`` is entered."""
        if level is Level.CRITICAL:
            return self.critical_threshold
        if level is Level.WARNING:
            return self.warning_threshold
        return 0.0

    def exit(self, level: Level) -> float:
        """The signal value below which ``level`` is left (hysteresis)."""
        return self.exit_ratio * self.enter(level)

    def recommend(self, value: float) -> Level:
        """The highest level whose enter threshold ``value`` reaches."""
        if value >= self.critical_threshold:
            return Level.CRITICAL
        if value >= self.warning_threshold:
            return Level.WARNING
        return Level.NORMAL


class QueuePolicyPatch(_Frozen):
    """Any subset of :class:`QueuePolicy` keys, layered over a preset."""

    signal: Signal | None = None
    warning_threshold: Number | None = Field(default=None, ge=0, allow_inf_nan=False)
    critical_threshold: Number | None = Field(default=None, ge=0, allow_inf_nan=False)
    exit_ratio: Number | None = Field(default=None, gt=0, lt=1)
    sustained_seconds: Number | None = Field(default=None, ge=0, allow_inf_nan=False)
    cooldown_seconds: Number | None = Field(default=None, ge=0, allow_inf_nan=False)
    stale_after_seconds: Number | None = Field(default=None, gt=0, allow_inf_nan=False)
    failure_threshold: Count | None = Field(default=None, ge=1)
    recovery_seconds: Number | None = Field(default=None, ge=0, allow_inf_nan=False)

    def values(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class LevelLimits(_Frozen):
    """A workload class's limits at one level."""

    parallelism: Count = Field(ge=1)
    rate: Number = Field(gt=0, allow_inf_nan=False)
    burst: Number = Field(ge=1, allow_inf_nan=False)
    minimum_floor: Count = Field(default=0, ge=0)
    #: Admission of this class is deferred: a gate hands its messages back for
    #: redelivery instead of holding them while the class is throttled.
    deferred_admission: Flag = False

    @model_validator(mode="after")
    def _floor_fits(self) -> Self:
        if self.minimum_floor > self.parallelism:
            raise ValueError(
                f"minimum_floor={self.minimum_floor} is above parallelism={self.parallelism}"
            )
        return self


class ClassPolicy(_Frozen):
    """A workload class: the queues it watches and its limits per level."""

    #: Queues whose level this class follows; empty means every watched queue.
    watches: tuple[str, ...] = ()
    #: File extensions that put work in this class (used by the integrations).
    extensions: tuple[str, ...] = ()
    normal: LevelLimits
    warning: LevelLimits
    critical: LevelLimits

    def limits(self, level: Level) -> LevelLimits:
        if level is Level.CRITICAL:
            return self.critical
        if level is Level.WARNING:
            return self.warning
        return self.normal


class Preset(_Frozen):
    """A named bundle: queue policy per queue (and for other queues), class limits."""

    name: str
    description: str = ""
    default_queue: QueuePolicy
    queues: dict[str, QueuePolicy] = Field(default_factory=dict)
    classes: dict[str, ClassPolicy] = Field(default_factory=dict)

    def queue_policy(self, queue: str) -> QueuePolicy:
        return self.queues.get(queue, self.default_queue)
