"""The demo on a real RabbitMQ: aio-pika queues, the management API for telemetry.

The demo never touches existing queues: it creates a vhost of its own
(``admission-demo-<random>``, through the management API, which needs a user
with the ``administrator`` tag, as ``guest`` is on a local broker), declares
the three queues there and deletes the vhost, queues and all, at the end.

A handed-back message goes to the back of its queue, as in the in-memory
broker: the consumer publishes a copy (confirmed, with an
``x-admission-handbacks`` count) and then acks the original, because a classic
queue puts a nacked message back at its old place, at the head, where the
next free prefetch slot would take it straight back.  At least once: a crash
between the two leaves a duplicate, never a loss.

The management API refreshes its figures every 5 real seconds (RabbitMQ's
``collect_statistics_interval``), so at ``speed`` S the monitor sees depths up
to 5 x S scenario seconds old: hence the lower default speed with a broker.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from admission.clock import Clock, SystemClock
from admission.demo.broker import DemoError, Handler
from admission.telemetry import FailureKind, PressureSource, ReadFailure, Reading
from admission.telemetry._amqp import mask_amqp_url

if TYPE_CHECKING:
    import httpx
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

__all__ = ["HANDBACKS", "RabbitBroker", "check_urls"]

#: The header counting how many times a message was handed back to the queue.
HANDBACKS = "x-admission-handbacks"
# Real seconds the broker's set-up and tear-down calls may take.
_TIMEOUT = 10.0
# Real seconds for the first statistics of new queues (the broker collects every 5 s).
_STATISTICS_TIMEOUT = 20.0


def check_urls(url: str, management_url: str | None) -> str:
    """``ValueError`` naming the option if a URL is not usable; the management API's URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(
            f"--rabbitmq-url must be amqp://user:password@host:5672/, got {mask_amqp_url(url)!r}"
        )
    if parts.path not in ("", "/"):
        raise ValueError(
            f"--rabbitmq-url {mask_amqp_url(url)!r}: leave the vhost out, the demo makes its own"
        )
    management = (management_url or f"http://{parts.hostname}:15672").rstrip("/")
    check = urlsplit(management)
    if check.scheme not in ("http", "https") or not check.hostname:
        raise ValueError(
            f"--management-url must be http(s)://host:15672, got {mask_amqp_url(management)!r}"
        )
    return management


class _OutageSwitch:
    """The management source, unless an outage is on: then every read fails with its reason."""

    def __init__(self, source: PressureSource) -> None:
        self.source = source
        self.reason: str | None = None

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        if self.reason is not None:
            await anyio.lowlevel.checkpoint()
            return {q: ReadFailure(q, now, FailureKind.CONNECTION, self.reason) for q in queues}
        return await self.source.read(queues, now=now)

    async def aclose(self) -> None:
        await self.source.aclose()


class _Delivery:
    """An aio-pika message whose ``nack(requeue=True)`` requeues at the back (see the module)."""

    __slots__ = ("_broker", "_message", "_queue")

    def __init__(self, broker: RabbitBroker, queue: str, message: AbstractIncomingMessage) -> None:
        self._broker = broker
        self._queue = queue
        self._message = message

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def redelivered(self) -> bool:
        return bool(self._message.redelivered) or bool(self._message.headers.get(HANDBACKS))

    async def ack(self) -> None:
        await self._message.ack()

    async def nack(self, *, requeue: bool = True) -> None:
        if not requeue:
            await self._message.reject(requeue=False)
            return
        raw = self._message.headers.get(HANDBACKS, 0)
        count = (raw if isinstance(raw, int) else 0) + 1
        with anyio.CancelScope(shield=True):
            await self._broker.publish(self._queue, self.body, headers={HANDBACKS: count})
            await self._message.ack()


class RabbitBroker:
    """The :class:`~admission.demo.broker.Broker` of the demo on a real RabbitMQ."""

    def __init__(
        self,
        url: str,
        *,
        management_url: str | None = None,
        clock: Clock | None = None,
        vhost: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.management_url = check_urls(url, management_url)
        self._shown_management = mask_amqp_url(self.management_url)
        self.username = unquote(parts.username or "guest")
        self._password = unquote(parts.password or "guest")
        self.vhost = vhost or f"admission-demo-{uuid.uuid4().hex[:8]}"
        netloc = parts.netloc.rpartition("@")[2]
        self._amqp_url = parts._replace(path="/" + quote(self.vhost, safe="")).geturl()
        self._shown = f"{parts.scheme}://{netloc}"
        self.name = f"RabbitMQ {self._shown} (vhost {self.vhost})"
        self.clock = clock
        from admission.telemetry.rabbitmq import RabbitMQManagementSource

        self._telemetry = _OutageSwitch(
            RabbitMQManagementSource(
                self.management_url,
                username=self.username,
                password=self._password,
                vhost=self.vhost,
            )
        )
        self._http: httpx.AsyncClient | None = None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._vhost_created = False

    # -- set-up and tear-down ------------------------------------------------------

    async def __aenter__(self) -> Self:
        import aio_pika
        import httpx

        self._http = httpx.AsyncClient(
            base_url=self.management_url,
            auth=(self.username, self._password),
            timeout=_TIMEOUT,
        )
        try:
            vhost = quote(self.vhost, safe="")
            await self._manage("PUT", f"/api/vhosts/{vhost}", "create the vhost")
            self._vhost_created = True
            everything = {"configure": ".*", "write": ".*", "read": ".*"}
            user = quote(self.username, safe="")
            await self._manage(
                "PUT", f"/api/permissions/{vhost}/{user}", "grant the vhost", json=everything
            )
            try:
                with anyio.fail_after(_TIMEOUT):
                    self._connection = await aio_pika.connect(self._amqp_url)
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
                raise DemoError(
                    f"--rabbitmq-url {self._shown}: cannot connect: {type(exc).__name__}: {exc}"
                ) from None
            self._channel = await self._connection.channel(publisher_confirms=True)
            from admission.demo.scenario import QUEUES

            for name in QUEUES:
                await self._channel.declare_queue(name, durable=False)
            await self._first_statistics(QUEUES)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(DemoError):
                await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._close()
            except DemoError:
                if exc_type is None:
                    raise  # the vhost is left behind: say so
                # Otherwise the error that stopped the demo is the one to show.

    async def _first_statistics(self, queues: Sequence[str]) -> None:
        """Wait until the management API knows the new queues (its first statistics)."""
        real = SystemClock()
        deadline = real.monotonic() + _STATISTICS_TIMEOUT
        while True:
            answers = await self._telemetry.source.read(queues, now=real.monotonic())
            missing = [q for q, a in answers.items() if isinstance(a, ReadFailure)]
            if not missing:
                return
            if real.monotonic() >= deadline:
                reason = answers[missing[0]]
                assert isinstance(reason, ReadFailure)
                raise DemoError(
                    f"--management-url {self._shown_management}: no statistics for {missing} after "
                    f"{_STATISTICS_TIMEOUT:g}s ({reason.reason})"
                )
            await real.sleep(0.25)

    async def _manage(self, method: str, path: str, what: str, **options: Any) -> None:
        import httpx

        assert self._http is not None
        try:
            response = await self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise DemoError(
                f"--management-url {self._shown_management}: cannot {what} {self.vhost!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if response.status_code == 401:
            raise DemoError(
                f"--management-url {self._shown_management}: user {self.username!r} was refused "
                "(401): check the credentials in --rabbitmq-url"
            )
        if response.status_code >= 400:
            hint = " (the user needs the administrator tag)" if response.status_code == 403 else ""
            raise DemoError(
                f"--management-url {self._shown_management}: cannot {what} {self.vhost!r}: "
                f"HTTP {response.status_code}{hint}: {response.text[:200]}"
            )

    async def _close(self) -> None:
        with anyio.move_on_after(_TIMEOUT):
            if self._connection is not None:
                connection, self._connection = self._connection, None
                await connection.close()
            if self._vhost_created:
                self._vhost_created = False
                # Deleting the vhost deletes its queues and whatever is left in them.
                await self._manage("DELETE", f"/api/vhosts/{quote(self.vhost, safe='')}", "delete")
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    # -- the Broker protocol -------------------------------------------------------

    async def publish(
        self, queue: str, body: bytes, *, headers: dict[str, Any] | None = None
    ) -> None:
        import aio_pika

        assert self._channel is not None, "enter the broker first"
        message = aio_pika.Message(body, headers=headers or {})
        await self._channel.default_exchange.publish(message, routing_key=queue)

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self._connection is not None, "enter the broker first"
        channel = await self._connection.channel()
        try:
            await channel.set_qos(prefetch_count=prefetch)
            source = await channel.get_queue(queue)
            async with anyio.create_task_group() as tg:

                async def delivered(message: AbstractIncomingMessage) -> None:
                    tg.start_soon(handler, _Delivery(self, queue, message))

                await source.consume(delivered)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            # Closing the channel returns what it held unacknowledged to the queue.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_TIMEOUT):
                await channel.close()

    def pressure_source(self) -> PressureSource:
        return self._telemetry

    def telemetry_outage(self, reason: str | None) -> None:
        self._telemetry.reason = reason

    async def still_queued(self, queues: Sequence[str]) -> Mapping[str, int]:
        assert self._connection is not None, "enter the broker first"
        channel = await self._connection.channel()
        try:
            out = {}
            for name in queues:
                declared = await channel.declare_queue(name, passive=True)
                count = declared.declaration_result.message_count
                out[name] = int(count or 0)
            return out
        finally:
            await channel.close()
