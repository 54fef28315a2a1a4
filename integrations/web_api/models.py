"""The HTTP contract of the throughput-policy router.

Responses are the registry's own status models (``admission.status``), served
as they are, plus the few shapes only HTTP needs: request bodies, the presets
listing, the transition log and the error body.  Every model is frozen and
strict about its input, so a bad request is a 422 naming the field.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from admission.distributed.fleet import (
    FleetClassTotals,
    FleetStatus,
    FleetTotals,
    ReplicaClass,
    ReplicaStatus,
)
from admission.policy import Preset
from admission.status import (
    ActiveWork,
    ClassStatus,
    LimiterStatus,
    OverrideStatus,
    QueueStatus,
    Status,
    TelemetryStatus,
    TransitionRecord,
    WindowStatus,
)

__all__ = [
    "ActiveWork",
    "ClassStatus",
    "ErrorResponse",
    "EvaluateRequest",
    "FleetClassTotals",
    "FleetStatus",
    "FleetTotals",
    "HypotheticalSample",
    "LimiterStatus",
    "OverrideRequest",
    "OverrideStatus",
    "PresetsResponse",
    "QueueStatus",
    "ReplicaClass",
    "ReplicaStatus",
    "Status",
    "TelemetryStatus",
    "TransitionRecord",
    "TransitionsResponse",
    "ValidationErrorResponse",
    "ValidationIssue",
    "WindowStatus",
]

#: The most a what-if may hold its readings for: one day of polls.
MAX_HOLD_SECONDS = 86_400.0
#: The longest override an operator can set over HTTP: one week.
MAX_TTL_SECONDS = 7 * 86_400.0
#: Counts above this are absurd for a broker queue (and would overflow signals).
MAX_COUNT = 2**53


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorResponse(BaseModel):
    """A 4xx answer: what was wrong, in one sentence."""

    detail: str


class ValidationIssue(BaseModel):
    """One problem of a request that does not fit its schema (FastAPI's shape)."""

    model_config = ConfigDict(extra="allow")

    loc: tuple[str | int, ...]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A 422: the request's fields that are wrong, or one sentence saying why."""

    detail: str | tuple[ValidationIssue, ...]


class HypotheticalSample(_Request):
    """One queue reading for a what-if.  Absent fields are unknown, never zero.

    ``failure`` makes it a failed read instead (its text is the reason).
    """

    queue: str = Field(min_length=1, max_length=255)
    messages_ready: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    messages_unacknowledged: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    consumers: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    publish_rate: float | None = Field(default=None, ge=0, le=MAX_COUNT, allow_inf_nan=False)
    deliver_rate: float | None = Field(default=None, ge=0, le=MAX_COUNT, allow_inf_nan=False)
    ack_rate: float | None = Field(default=None, ge=0, le=MAX_COUNT, allow_inf_nan=False)
    oldest_message_age_seconds: float | None = Field(
        default=None, ge=0, le=MAX_COUNT, allow_inf_nan=False
    )
    failure: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _reading_or_failure(self) -> Self:
        if self.failure is None and self.messages_ready is None:
            raise ValueError(f"queue {self.queue!r}: give messages_ready, or a failure reason")
        if self.failure is not None and self.messages_ready is not None:
            raise ValueError(f"queue {self.queue!r}: a failed read carries no messages_ready")
        return self


class EvaluateRequest(_Request):
    """A what-if: these readings (held ``hold_seconds``) under ``preset``."""

    preset: str | None = Field(default=None, min_length=1, max_length=100)
    samples: tuple[HypotheticalSample, ...] = Field(default=(), max_length=1000)
    hold_seconds: float = Field(default=0.0, ge=0, le=MAX_HOLD_SECONDS, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_sample_per_queue(self) -> Self:
        seen: set[str] = set()
        for number, sample in enumerate(self.samples):
            if sample.queue in seen:
                raise ValueError(f"samples[{number}].queue={sample.queue!r} is given twice")
            seen.add(sample.queue)
        return self


class OverrideRequest(_Request):
    """Pin a level or a preset on a queue or a class for ``ttl_seconds``."""

    scope: Literal["queue", "class"]
    name: str = Field(min_length=1, max_length=255)
    level: Literal["normal", "warning", "critical"] | None = None
    preset: str | None = Field(default=None, min_length=1, max_length=100)
    ttl_seconds: float = Field(gt=0, le=MAX_TTL_SECONDS, allow_inf_nan=False)
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _level_or_preset(self) -> Self:
        if (self.level is None) == (self.preset is None):
            raise ValueError("give exactly one of level or preset")
        return self


class PresetsResponse(BaseModel):
    """Every known preset, and which one is asked for and which one rules."""

    requested_preset: str
    active_preset: str
    presets: tuple[Preset, ...]


class TransitionsResponse(BaseModel):
    """The most recent transitions, oldest first."""

    transitions: tuple[TransitionRecord, ...]
