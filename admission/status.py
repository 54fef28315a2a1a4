"""The status contract: immutable, typed pictures of the registry for operators.

These models are what ``Registry.status()`` returns and what the web_api router
serves as is (DESIGN.md "Status contract").  The top-level names are the ones
existing Nemesis clients read; everything else is added beside them.  Times
shown to people are aware UTC datetimes; durations are seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActiveWork",
    "ClassStatus",
    "LimiterStatus",
    "OverrideStatus",
    "QueueStatus",
    "SharedBudget",
    "Status",
    "TelemetryStatus",
    "TransitionRecord",
    "WindowStatus",
]

Health = Literal["ok", "degraded", "stale", "failing"]
#: A level as shown: ``normal``, ``warning``, ``critical`` or ``fail_safe``.
Shown = Literal["normal", "warning", "critical", "fail_safe"]
PlainLevel = Literal["normal", "warning", "critical"]
#: A shared budget's state: its backend answers, or the limiter runs on its local fallback.
SharedBudget = Literal["shared", "unavailable"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class TelemetryStatus(_Frozen):
    """How well a queue is being read."""

    health: Health
    last_sample_age_seconds: float | None = Field(
        description="Seconds since the last good sample; null if there never was one."
    )
    consecutive_failures: int
    last_error: str | None


class WindowStatus(_Frozen):
    """A running anti-flap window: what it leads to, and when."""

    kind: Literal["sustained", "cooldown", "recovery"]
    pending_level: PlainLevel
    since: datetime
    until: datetime
    required_seconds: float
    elapsed_seconds: float
    remaining_seconds: float


class QueueStatus(_Frozen):
    """One watched queue: its reading, its level and the window running on it."""

    queue: str
    queued_messages: int | None = Field(description="messages_ready of the last good sample")
    processing_messages: int | None = Field(description="messages_unacknowledged")
    consumers: int | None
    signal: str
    signal_value: float | None
    warning_threshold: float
    critical_threshold: float
    exit_ratio: float
    severity: Shown = Field(description="The level in effect, after overrides and fail-safe.")
    level_since: datetime
    pending_level: PlainLevel | None
    sustained_seconds: float = Field(
        description="How long the signal has stayed at the threshold of the level a "
        "sustained window leads to, or, once escalated, of the level it holds."
    )
    sustained_seconds_required: float
    cooldown_seconds: float
    cooldown_remaining_seconds: float | None
    window: WindowStatus | None
    fail_safe: bool
    fail_safe_reason: str | None
    pinned_by: str | None = Field(description="The id of the override pinning this queue.")
    telemetry: TelemetryStatus


class LimiterStatus(_Frozen):
    """A limiter (or one of its workload classes) that follows a policy class."""

    limiter: str
    workload_class: str | None
    in_flight: int
    waiting: int
    admitted_total: int
    rejected_total: int
    timed_out_total: int
    shared_budget: SharedBudget | None = Field(
        default=None,
        description="'shared' or 'unavailable' (local fallback) for a limiter whose budget "
        "is shared through a backend; null for a local limiter.",
    )
    shared_budget_reason: str | None = None
    retune_error: str | None = Field(
        default=None,
        description="Why the last retune to the class's limits failed: the limiter keeps "
        "its previous limits (not those shown for the class) until a retry succeeds.",
    )


class ActiveWork(_Frozen):
    """One unit of work in flight that an integration reports (e.g. a workflow)."""

    id: str
    kind: str = Field(description="What the work is, e.g. 'workflow'.")
    workload_class: str
    started_at: datetime
    age_seconds: float


class ClassStatus(_Frozen):
    """One policy workload class: its level, its effective limits and its limiters."""

    class_name: str
    level: Shown
    since: datetime
    preset: str
    watches: tuple[str, ...]
    active_parallelism: int
    minimum_floor: int
    rate: float
    burst: float
    deferred_admission: bool
    fail_safe: bool
    in_flight: int
    waiting: int
    deferred_total: int
    reason: str
    until: datetime | None = Field(
        default=None, description="When the reason ends by itself (an override's expiry)."
    )
    limiters: tuple[LimiterStatus, ...]
    active: tuple[ActiveWork, ...] = Field(
        default=(), description="Work in flight that integrations report, oldest first."
    )
    shared_budget: SharedBudget | None = Field(
        default=None,
        description="'unavailable' if a limiter of this class runs on its local fallback, "
        "'shared' if its limiters share a budget that answers; null if none shares one.",
    )
    shared_budget_reason: str | None = None


class OverrideStatus(_Frozen):
    """An operator's pin, and when it ends."""

    id: str
    scope: Literal["queue", "class"]
    name: str
    level: PlainLevel | None
    preset: str | None
    reason: str
    created_at: datetime
    expires_at: datetime
    remaining_seconds: float


class TransitionRecord(_Frozen):
    """One change of a queue's or a class's level, and what caused it."""

    scope: Literal["queue", "class"]
    name: str
    from_level: str
    to_level: str
    at: datetime
    reason: str
    detail: str
    signal: float | None
    warning_threshold: float | None
    critical_threshold: float | None
    exit_ratio: float | None


class Status(_Frozen):
    """The whole picture at ``timestamp``.

    The top-level window figures (``sustained_seconds`` …) describe the queue
    that decides ``queue_pressure_level``: the most pressing one.
    """

    requested_preset: str
    active_preset: str
    queue_pressure_level: PlainLevel = Field(
        description="The most pressing queue's level; fail-safe reads as critical "
        "(its limits are the conservative preset's critical ones) with fail_safe true."
    )
    policy_active: bool = Field(description="Some class runs below its normal limits.")
    telemetry_stale: bool = Field(description="Some watched queue's telemetry is stale or failing.")
    fail_safe: bool
    fail_safe_reason: str | None
    sustained_seconds: float
    sustained_seconds_required: float
    cooldown_seconds: float
    cooldown_remaining_seconds: float | None
    timestamp: datetime
    monitor: Literal["running", "stopped", "absent"] = Field(
        description="Whether a pressure monitor governs this registry."
    )
    queue_states: tuple[QueueStatus, ...]
    class_states: tuple[ClassStatus, ...]
    overrides: tuple[OverrideStatus, ...]
    warnings: tuple[str, ...]

    def queue(self, name: str) -> QueueStatus:
        """The entry of queue ``name`` (``KeyError`` if it is not watched)."""
        for entry in self.queue_states:
            if entry.queue == name:
                return entry
        raise KeyError(name)

    def workload_class(self, name: str) -> ClassStatus:
        """The entry of class ``name`` (``KeyError`` if there is none)."""
        for entry in self.class_states:
            if entry.class_name == name:
                return entry
        raise KeyError(name)
