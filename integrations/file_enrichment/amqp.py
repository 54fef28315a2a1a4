"""A raw AMQP consumer (aio-pika) wrapped by the gate: ack, or nack with requeue.

``await queue.consume(amqp_consumer(gate, handler))``.  Per message:

- admitted and the handler returns: ``ack``;
- :class:`RetryLater` (not admitted in time, or deferred): ``nack(requeue=True)``,
  so the broker redelivers it (``message.redelivered`` is then true);
- the handler raises: logged (``admission.file_enrichment.handler_failed``) and
  ``nack(requeue=True)`` too, so nothing is dropped; ``requeue_failed=False``
  rejects it instead, for queues whose dead-letter exchange should take it;
- cancelled (the consumer shuts down): a best-effort ``nack(requeue=True)``, so
  the message is not stranded unacked on a channel that stays open;
- a handler that acked or nacked the message itself is left alone.

A nack requeues at once (a throttled class then spins its messages through the
broker); ``requeue_delay`` holds a deferred message ``min(retry_after,
requeue_delay)`` seconds first, at the price of a prefetch slot meanwhile.

aio-pika is never imported here at run time (only its types, for mypy): the
adapter calls the message's own methods, and it needs asyncio because aio-pika does.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from admission import events
from integrations.file_enrichment.gate import FileEnrichmentGate, GateAdmission, RetryLater

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

__all__ = ["HANDLER_FAILED", "AmqpConsumer", "AmqpEvent", "amqp_consumer", "decode_cloud_event"]

#: The structlog event for a handler that raised on a message.
HANDLER_FAILED = "admission.file_enrichment.handler_failed"


@dataclass(frozen=True, slots=True)
class AmqpEvent:
    """A message as the handler sees it: ``data`` (the file record), the CloudEvent attributes."""

    data: Any
    message: AbstractIncomingMessage = field(repr=False)
    attributes: Mapping[str, Any] = field(default_factory=dict)


def decode_cloud_event(message: AbstractIncomingMessage) -> AmqpEvent:
    """The body as JSON: a structured CloudEvent (Dapr's envelope) or the record itself.

    A body that is not JSON is handed over as bytes, for the handler to judge.
    """
    try:
        body = json.loads(message.body)
    except (ValueError, UnicodeDecodeError):
        return AmqpEvent(message.body, message)
    if isinstance(body, dict) and "specversion" in body and "data" in body:
        attributes = {k: v for k, v in body.items() if k != "data"}
        return AmqpEvent(body["data"], message, attributes)
    return AmqpEvent(body, message)


class AmqpConsumer:
    """The consume callback: one call per delivered message (see the module docstring)."""

    def __init__(
        self,
        gate: FileEnrichmentGate,
        handler: Callable[[AmqpEvent], Awaitable[object]],
        *,
        decode: Callable[[AbstractIncomingMessage], AmqpEvent] = decode_cloud_event,
        requeue_delay: float = 0.0,
        requeue_failed: bool = True,
    ) -> None:
        if not (isinstance(requeue_delay, int | float) and 0 <= requeue_delay < math.inf):
            raise ValueError(f"requeue_delay must be a finite number >= 0, got {requeue_delay!r}")
        self.gate = gate
        self.handler = handler
        self.decode = decode
        self.requeue_delay = float(requeue_delay)
        self.requeue_failed = requeue_failed
        self.acked_total = 0
        #: Handed back by the gate (RetryLater) with nack(requeue=True).
        self.requeued_total = 0
        #: The handler raised (nacked with requeue, or rejected).
        self.failed_total = 0
        #: Deliveries the broker marked as redelivered.
        self.redelivered_total = 0

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        if message.redelivered:
            self.redelivered_total += 1
        try:
            event = self.decode(message)
            async with GateAdmission(self.gate, event):
                await self.handler(event)
        except RetryLater as exc:
            self.requeued_total += 1
            delay = min(exc.retry_after, self.requeue_delay)
            if delay > 0:
                await self.gate.clock.sleep(delay)
            await self._settle(message, requeue=True)
        except Exception as exc:
            self.failed_total += 1
            events.logger().error(
                HANDLER_FAILED,
                limiter=self.gate.limiter.name,
                message_id=message.message_id,
                redelivered=message.redelivered,
                requeue=self.requeue_failed,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )
            await self._settle(message, requeue=self.requeue_failed)
        except BaseException:
            # The channel may be gone: the broker then requeues it by itself.
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._settle(message, requeue=True)
            raise
        else:
            if not message.processed:
                await message.ack()
            self.acked_total += 1

    async def _settle(self, message: AbstractIncomingMessage, *, requeue: bool) -> None:
        if message.processed:
            return
        if requeue:
            await message.nack(requeue=True)
        else:
            await message.reject(requeue=False)


def amqp_consumer(
    gate: FileEnrichmentGate,
    handler: Callable[[AmqpEvent], Awaitable[object]],
    *,
    decode: Callable[[AbstractIncomingMessage], AmqpEvent] = decode_cloud_event,
    requeue_delay: float = 0.0,
    requeue_failed: bool = True,
) -> AmqpConsumer:
    """The aio-pika consume callback for ``handler`` behind ``gate``."""
    return AmqpConsumer(
        gate, handler, decode=decode, requeue_delay=requeue_delay, requeue_failed=requeue_failed
    )
