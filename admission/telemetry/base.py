"""What every telemetry source is: something that reads queues and never raises.

A source answers one read per tick for a set of queues.  Each queue gets either
a :class:`QueueSample` or a :class:`ReadFailure` with a reason; a source never
lets an exception escape to the monitor and never invents a zeroed sample for a
queue it could not read (missing data is not an empty queue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from admission.policy.samples import FailureKind, QueueSample, ReadFailure

__all__ = ["FailureKind", "PressureSource", "QueueSample", "ReadFailure", "Reading"]

#: One queue's answer for one tick.
Reading = QueueSample | ReadFailure


@runtime_checkable
class PressureSource(Protocol):
    """A source of queue telemetry.

    ``read(queues, now=...)`` answers every queue asked for, keyed by name;
    ``now`` is the caller's ``Clock.monotonic()`` and stamps the readings
    (``QueueSample.sampled_at``, ``ReadFailure.at``), so a slow read does not
    move the engine's clock.  ``aclose()`` releases connections; a closed
    source may be read again (it reconnects).
    """

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]: ...

    async def aclose(self) -> None: ...
