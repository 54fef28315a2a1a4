"""The demo's message broker: what the pipeline needs of one, and an in-memory one.

The in-memory broker behaves like an AMQP broker as far as the pipeline can
tell: a consumer holds up to ``prefetch`` messages unacknowledged; ``nack``
with ``requeue`` puts a message back (at the back of the queue, as RabbitMQ 4
quorum queues do, so handed-back work does not block the line) marked
``redelivered``; and when a consumer stops, whatever it held unsettled goes
back to the queue, as when a channel closes.  Nothing is ever dropped.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from admission.errors import AdmissionError
from admission.telemetry import FailureKind, MemorySource, PressureSource

__all__ = [
    "Broker",
    "Delivery",
    "DemoError",
    "MemoryBroker",
    "MemoryMessage",
    "MemoryQueue",
    "QueueAccount",
]


class DemoError(AdmissionError):
    """The demo cannot run as asked (a port taken, a broker unreachable): the message says why."""


class Delivery(Protocol):
    """A delivered message, as the pipeline's handlers use it (aio-pika's messages fit)."""

    @property
    def body(self) -> bytes: ...

    @property
    def redelivered(self) -> bool | None: ...

    async def ack(self) -> None: ...

    async def nack(self, *, requeue: bool = True) -> None: ...


Handler = Callable[[Delivery], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class QueueAccount:
    """One queue at the end: every message published is processed or still queued.

    ``lost`` is what neither accounts for (0 unless something dropped a message).
    """

    queue: str
    published: int
    processed: int
    still_queued: int

    @property
    def lost(self) -> int:
        return self.published - self.processed - self.still_queued

    def to_dict(self) -> dict[str, int | str]:
        return {
            "queue": self.queue,
            "published": self.published,
            "processed": self.processed,
            "still_queued": self.still_queued,
            "lost": self.lost,
        }


class Broker(Protocol):
    """What the pipeline needs: publish, consume, telemetry with an outage switch, a final count."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def publish(self, queue: str, body: bytes) -> None: ...

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver to ``handler`` until cancelled; on the way out, requeue what is unsettled."""
        ...

    def pressure_source(self) -> PressureSource:
        """The telemetry the monitor polls (it must survive :meth:`telemetry_outage`)."""
        ...

    def telemetry_outage(self, reason: str | None) -> None:
        """Make telemetry reads fail with ``reason`` from now on; ``None`` ends the outage."""
        ...

    async def still_queued(self, queues: Sequence[str]) -> Mapping[str, int]:
        """Messages in each queue (ready or unacknowledged), once consumers have stopped."""
        ...


class MemoryMessage:
    """A delivery from a :class:`MemoryQueue`; settle it once with ``ack`` or ``nack``."""

    __slots__ = ("_queue", "_tag", "body", "processed", "redelivered")

    def __init__(self, queue: MemoryQueue, tag: int, body: bytes, redelivered: bool) -> None:
        self._queue = queue
        self._tag = tag
        self.body = body
        self.redelivered = redelivered
        self.processed = False

    async def ack(self) -> None:
        self._queue.settle(self, requeue=None)
        await anyio.lowlevel.checkpoint()

    async def nack(self, *, requeue: bool = True) -> None:
        self._queue.settle(self, requeue=requeue)
        await anyio.lowlevel.checkpoint()


class MemoryQueue:
    """A FIFO of bodies with deliveries, acknowledgements and requeues."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ready: deque[tuple[bytes, bool]] = deque()
        self._unacked: dict[int, MemoryMessage] = {}
        self._tags = itertools.count(1)
        self._arrived = anyio.Event()
        self.consumers = 0
        self.published = 0
        self.acked = 0
        self.requeued = 0
        self.dropped = 0

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    # What the telemetry reads, polled by the MemorySource.
    def count_ready(self) -> int:
        return len(self._ready)

    def count_unacked(self) -> int:
        return len(self._unacked)

    def count_consumers(self) -> int:
        return self.consumers

    def publish(self, body: bytes) -> None:
        self.published += 1
        self._append(body, redelivered=False)

    def _append(self, body: bytes, *, redelivered: bool) -> None:
        self._ready.append((body, redelivered))
        self._arrived.set()

    async def get(self) -> MemoryMessage:
        """The next message (waiting for one); it stays unacknowledged until settled."""
        await anyio.lowlevel.checkpoint()
        while not self._ready:
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        body, redelivered = self._ready.popleft()
        message = MemoryMessage(self, next(self._tags), body, redelivered)
        self._unacked[message._tag] = message
        return message

    def settle(self, message: MemoryMessage, *, requeue: bool | None) -> None:
        """``requeue=None``: ack; ``True``: back to the queue; ``False``: dropped (counted)."""
        if message.processed:
            raise RuntimeError(f"{self.name}: message {message._tag} was already settled")
        message.processed = True
        del self._unacked[message._tag]
        if requeue is None:
            self.acked += 1
        elif requeue:
            self.requeued += 1
            self._append(message.body, redelivered=True)
        else:
            self.dropped += 1

    async def consume(
        self,
        handler: Handler,
        *,
        prefetch: int,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be an int >= 1, got {prefetch!r}")
        slots = anyio.Semaphore(prefetch)
        held: dict[int, MemoryMessage] = {}

        async def deliver(message: MemoryMessage) -> None:
            try:
                await handler(message)
            finally:
                # Unsettled (the handler was cancelled), it stays held until the
                # consumer stops and gives it back, as a broker does on channel close.
                if message.processed:
                    del held[message._tag]
                slots.release()

        self.consumers += 1
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while True:
                    await slots.acquire()
                    try:
                        message = await self.get()
                    except BaseException:
                        slots.release()
                        raise
                    held[message._tag] = message
                    tg.start_soon(deliver, message)
        finally:
            self.consumers -= 1
            # The channel closes: what this consumer held and did not settle goes back.
            for message in list(held.values()):
                if not message.processed:
                    self.settle(message, requeue=True)


class MemoryBroker:
    """In-process queues, and a :class:`MemorySource` reading their depth."""

    name = "in-memory queues"

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = {name: MemoryQueue(name) for name in queues}
        self.source = MemorySource()
        for queue in self.queues.values():
            self.source.watch(
                queue.name,
                ready=queue.count_ready,
                unacked=queue.count_unacked,
                consumers=queue.count_consumers,
            )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _queue(self, name: str) -> MemoryQueue:
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(f"no queue {name!r} (queues: {', '.join(self.queues)})") from None

    async def publish(self, queue: str, body: bytes) -> None:
        # No checkpoint: a drop of hundreds of files lands at once, as on a broker.
        self._queue(queue).publish(body)

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await self._queue(queue).consume(handler, prefetch=prefetch, task_status=task_status)

    def pressure_source(self) -> PressureSource:
        return self.source

    def telemetry_outage(self, reason: str | None) -> None:
        if reason is None:
            self.source.heal_all()
        else:
            self.source.fail_all(FailureKind.CONNECTION, reason)

    async def still_queued(self, queues: Sequence[str]) -> Mapping[str, int]:
        await anyio.lowlevel.checkpoint()
        return {name: self._queue(name).ready + self._queue(name).unacked for name in queues}
