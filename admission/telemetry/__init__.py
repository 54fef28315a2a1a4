"""Telemetry sources: where queue samples come from.

``MemorySource`` (in-process values, failure injection), ``ReplaySource`` (a
recorded trace), ``RabbitMQManagementSource`` (the management API, ``rabbitmq``
extra, imported lazily) all follow :class:`PressureSource`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from admission.telemetry.base import FailureKind, PressureSource, QueueSample, ReadFailure, Reading
from admission.telemetry.memory import MemorySource
from admission.telemetry.replay import ReplaySource

if TYPE_CHECKING:
    from admission.telemetry.rabbitmq import RabbitMQManagementSource

__all__ = [
    "FailureKind",
    "MemorySource",
    "PressureSource",
    "QueueSample",
    "RabbitMQManagementSource",
    "ReadFailure",
    "Reading",
    "ReplaySource",
]


def __getattr__(name: str) -> Any:
    # httpx (the rabbitmq extra) loads only when the RabbitMQ source is asked for.
    if name == "RabbitMQManagementSource":
        from admission.telemetry.rabbitmq import RabbitMQManagementSource

        return RabbitMQManagementSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
