"""The degraded path: queue depth and consumers by an AMQP passive declare (aio-pika).

Used by :class:`~admission.telemetry.rabbitmq.RabbitMQManagementSource` when the
management API cannot be reached but the broker may still be up.  A passive
``queue.declare`` answers ``message_count`` (the ready messages) and
``consumer_count``; nothing about unacknowledged messages or rates.  asyncio
only (aio-pika is), and aio-pika is imported on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio

from admission._urls import mask_url, split_userinfo

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractRobustConnection

__all__ = ["AmqpFailure", "AmqpFallback", "mask_amqp_url"]


@dataclass(frozen=True, slots=True)
class AmqpFailure:
    """No answer over AMQP; ``missing`` when the broker said the queue does not exist."""

    missing: bool
    reason: str


def mask_amqp_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return mask_url(url)


class AmqpFallback:
    """One robust connection and one channel, opened on first use and reopened after a failure."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self.timeout = timeout
        self.where = f"AMQP {urlsplit(split_userinfo(url)[2]).netloc or mask_url(url)}"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = anyio.Lock()

    async def passive_declare(
        self, queues: Sequence[str]
    ) -> dict[str, tuple[int, int] | AmqpFailure]:
        """``(ready, consumers)`` of each queue, or why there is none.  Never raises."""
        out: dict[str, tuple[int, int] | AmqpFailure] = {}
        broken: AmqpFailure | None = None
        async with self._lock:  # one user of the shared channel at a time
            for queue in queues:
                if broken is not None:
                    out[queue] = broken
                    continue
                try:
                    channel = await self._open()
                except Exception as exc:
                    await self._reset()
                    broken = AmqpFailure(False, f"{self.where}: cannot connect ({_say(exc)})")
                    out[queue] = broken
                    continue
                out[queue] = await self._declare(channel, queue)
        return out

    async def _declare(self, channel: AbstractChannel, queue: str) -> tuple[int, int] | AmqpFailure:
        from aiormq.exceptions import ChannelNotFoundEntity

        try:
            declared = await channel.declare_queue(queue, passive=True, timeout=self.timeout)
        except ValueError as exc:  # pamqp refuses the name before anything is sent
            return AmqpFailure(False, f"{self.where}: cannot declare {queue!r} ({exc})")
        except ChannelNotFoundEntity:
            # The broker closes a channel on a failed passive declare: open another next time.
            await self._drop_channel()
            return AmqpFailure(True, f"{self.where}: no queue {queue!r} (passive declare)")
        except Exception as exc:
            await self._reset()
            return AmqpFailure(False, f"{self.where}: passive declare failed ({_say(exc)})")
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def _open(self) -> AbstractChannel:
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            await self._reset()
            self._connection = await aio_pika.connect_robust(self._url, timeout=self.timeout)
        if self._channel is None or self._channel.is_closed:
            await self._drop_channel()
            # A plain channel, not the robust connection's own kind: a failed
            # passive declare makes the broker close it, and a robust channel
            # would reopen itself behind our back (one leaked channel per miss).
            channel = aio_pika.Channel(self._connection, publisher_confirms=False)
            await channel.initialize(timeout=self.timeout)
            self._channel = channel
        return self._channel

    async def _drop_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with suppress(Exception):  # already gone: nothing left to release
                await channel.close()

    async def _reset(self) -> None:
        await self._drop_channel()
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):  # already gone: nothing left to release
                await connection.close()

    async def aclose(self) -> None:
        """Close the channel and the connection; the next use reconnects."""
        async with self._lock:
            await self._reset()


def _say(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and not text:
        return "timed out"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
