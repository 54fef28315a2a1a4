"""The broker of the fault tests: one in-memory queue that accounts for every message.

It behaves as AMQP does where it matters for accounting: a consumer holds up to
``prefetch`` messages unacknowledged, a nack with requeue puts the message back
marked redelivered, a consumer that stops gives back what it held.  A requeued
message becomes ready again ``redelivery_delay`` seconds later (a redelivery
backoff, as Dapr's resiliency policy or a delayed-retry exchange gives), so a
message handed back at once does not spin without time passing.  Every message
is in exactly one place: acked, ready, unacked, delayed or rejected, so
``Account.lost`` must stay 0.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup, TaskStatus

from admission.clock import Clock

PREFETCH = 16
REDELIVERY_DELAY = 2.0


class Message:
    """A delivery; settle it once with ``ack``, ``nack`` or ``reject``."""

    __slots__ = ("_queue", "body", "message_id", "processed", "redelivered", "tag")

    def __init__(self, queue: FaultQueue, tag: int, body: bytes, redelivered: bool) -> None:
        self._queue = queue
        self.tag = tag
        self.body = body
        self.redelivered = redelivered
        self.message_id = str(json.loads(body)["data"]["id"])
        self.processed = False

    # No checkpoints: fewer steps per message keep the virtual clock's
    # "everyone is blocked" check from waiting on asyncio.
    async def ack(self) -> None:
        self._queue.settle(self, "ack")

    async def nack(self, requeue: bool = True) -> None:
        self._queue.settle(self, "requeue" if requeue else "reject")

    async def reject(self, requeue: bool = False) -> None:
        await self.nack(requeue=requeue)


@dataclass(frozen=True)
class Account:
    """Where every message published is now."""

    published: int
    acked: int
    ready: int
    unacked: int
    delayed: int
    rejected: int

    @property
    def lost(self) -> int:
        return (
            self.published - self.acked - self.ready - self.unacked - self.delayed - self.rejected
        )


class FaultQueue:
    """One queue: ready FIFO, unacknowledged deliveries, requeues delayed on the clock."""

    def __init__(self, clock: Clock, redelivery_delay: float = REDELIVERY_DELAY) -> None:
        self.clock = clock
        self.redelivery_delay = redelivery_delay
        self._ready: deque[tuple[bytes, bool]] = deque()
        self._unacked: dict[int, Message] = {}
        self._delayed: dict[int, bytes] = {}
        self._tags = itertools.count(1)
        self._arrived = anyio.Event()
        self._tg: TaskGroup | None = None
        self.consumers = 0
        self.published = 0
        self.acked = 0
        self.requeued = 0
        self.rejected = 0

    @asynccontextmanager
    async def open(self) -> AsyncIterator[FaultQueue]:
        """The queue's own task group runs the delayed requeues."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    def account(self) -> Account:
        return Account(
            self.published,
            self.acked,
            len(self._ready),
            len(self._unacked),
            len(self._delayed),
            self.rejected,
        )

    # What the telemetry reads.
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

    async def get(self) -> Message:
        """The next message, waiting for one (no checkpoint when one is ready)."""
        while not self._ready:
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        body, redelivered = self._ready.popleft()
        message = Message(self, next(self._tags), body, redelivered)
        self._unacked[message.tag] = message
        return message

    def settle(self, message: Message, outcome: str) -> None:
        if message.processed:
            raise RuntimeError(f"message {message.message_id} was already settled")
        message.processed = True
        del self._unacked[message.tag]
        if outcome == "ack":
            self.acked += 1
        elif outcome == "reject":
            self.rejected += 1
        else:
            self.requeued += 1
            assert self._tg is not None, "open the queue first"
            self._delayed[message.tag] = message.body
            self._tg.start_soon(self._redeliver, message.tag)

    async def _redeliver(self, tag: int) -> None:
        try:
            await self.clock.sleep(self.redelivery_delay)
        finally:  # cancelled (the queue closes): ready at once, never dropped
            self._append(self._delayed.pop(tag), redelivered=True)

    async def consume(
        self,
        callback: Callable[[Message], Awaitable[object]],
        *,
        prefetch: int = PREFETCH,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver to ``callback`` (up to ``prefetch`` unsettled at once) until cancelled."""
        slots = anyio.Semaphore(prefetch)
        held: dict[int, Message] = {}

        async def deliver(message: Message) -> None:
            try:
                await callback(message)
            finally:
                if message.processed:
                    del held[message.tag]
                slots.release()

        self.consumers += 1
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while True:
                    # A broker pushes up to the prefetch at once: no yield while it can.
                    try:
                        slots.acquire_nowait()
                    except anyio.WouldBlock:
                        await slots.acquire()
                    try:
                        message = await self.get()
                    except BaseException:
                        slots.release()
                        raise
                    held[message.tag] = message
                    tg.start_soon(deliver, message)
        finally:
            self.consumers -= 1
            for message in held.values():  # the channel closes: unsettled ones go back
                if not message.processed:
                    self.settle(message, "requeue")
