"""What the engine is fed: a queue's reading, or the reason there is none.

These live beside the engine (the lowest layer that needs them); telemetry
sources produce them.  Both are small frozen records, cheap enough to build
hundreds of thousands of in a replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from admission.policy.levels import Signal

__all__ = ["FailureKind", "QueueSample", "ReadFailure", "signal_value"]


def _count(field: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class QueueSample:
    """One reading of a queue.  ``None`` means unknown, never zero.

    ``sampled_at`` is on the engine's clock (``Clock.monotonic()``).
    """

    queue: str
    sampled_at: float
    messages_ready: int
    messages_unacknowledged: int | None = None
    consumers: int | None = None
    publish_rate: float | None = None
    deliver_rate: float | None = None
    ack_rate: float | None = None
    oldest_message_age_seconds: float | None = None
    #: ``ok`` for a full reading; ``degraded`` when only part of it could be read
    #: (e.g. an AMQP passive declare while the management API is down).
    health: str = "ok"

    def __post_init__(self) -> None:
        if not isinstance(self.queue, str) or not self.queue:
            raise ValueError(f"queue must be a non-empty string, got {self.queue!r}")
        # One cheap pass for the common case (a replay builds hundreds of
        # thousands); the field-by-field check only runs to name the culprit.
        for value in (
            self.messages_ready,
            self.messages_unacknowledged,
            self.consumers,
            self.publish_rate,
            self.deliver_rate,
            self.ack_rate,
            self.oldest_message_age_seconds,
        ):
            if value is not None and not (
                (type(value) is int or type(value) is float) and 0 <= value < math.inf
            ):
                self._explain()

    def _explain(self) -> None:
        for field in (
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
            "publish_rate",
            "deliver_rate",
            "ack_rate",
            "oldest_message_age_seconds",
        ):
            _count(field, getattr(self, field))


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    MISSING_QUEUE = "missing_queue"
    BAD_CREDENTIALS = "bad_credentials"
    MALFORMED = "malformed_body"
    IMPOSSIBLE_VALUE = "impossible_value"
    CONNECTION = "connection"
    NO_SAMPLE = "no_sample"
    UNKNOWN_SIGNAL = "unknown_signal"
    SOURCE_ERROR = "source_error"


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """A read that produced no sample, and why.  Never read as an empty queue."""

    queue: str
    at: float
    kind: FailureKind
    reason: str


def signal_value(sample: QueueSample, signal: Signal) -> float | None:
    """The sample's value of ``signal``, or ``None`` when the sample cannot tell."""
    ready = sample.messages_ready
    if signal is Signal.MESSAGES_READY:
        return float(ready)
    if signal is Signal.READY_PLUS_UNACKED:
        unacked = sample.messages_unacknowledged
        return None if unacked is None else float(ready + unacked)
    if signal is Signal.BACKLOG_PER_CONSUMER:
        consumers = sample.consumers
        # No consumer: the whole backlog is waiting on nobody.
        return None if consumers is None else ready / max(consumers, 1)
    if signal is Signal.OLDEST_MESSAGE_AGE:
        return sample.oldest_message_age_seconds
    # DRAIN_TIME: seconds to empty the ready backlog at the delivery rate.
    if ready == 0:
        return 0.0
    rate = sample.deliver_rate
    if rate is None:
        return None
    return math.inf if rate <= 0 else ready / rate
