"""Helpers shared by the file_enrichment tests (virtual clock, no broker).

The balanced preset watches ``files-new_file``.  Its ``standard`` class runs at
parallelism 3, rate 6, burst 6 at every level; ``expensive`` at parallelism 1
with rate 2 / burst 2 (normal), rate 1 / burst 1 and deferred (warning), rate
0.5 / burst 1 and deferred (critical); floors are 1.  ``aggressive`` gives
``expensive`` parallelism 2 (rate 4, burst 4) under normal and 1 above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from admission.policy import parse_config
from admission.registry import Registry

NEW_FILE = "files-new_file"


def registry(preset: str = "balanced", **config: Any) -> Registry:
    """A registry watching ``files-new_file`` (no monitor: levels move by override)."""
    return Registry(parse_config({"preset": preset, "queues": [{"name": NEW_FILE}], **config}))


def event(path: object, **record: object) -> dict[str, Any]:
    """A Dapr-style CloudEvent body: the file record under ``data``."""
    return {"specversion": "1.0", "type": "new_file", "data": {"path": path, **record}}


@dataclass
class FakeMessage:
    """The part of aio-pika's ``AbstractIncomingMessage`` the AMQP adapter uses."""

    body: bytes
    redelivered: bool = False
    message_id: str | None = "m-1"
    settled: list[str] = field(default_factory=list)

    @property
    def processed(self) -> bool:
        return bool(self.settled)

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.settled.append(f"nack(requeue={requeue})")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append(f"reject(requeue={requeue})")
