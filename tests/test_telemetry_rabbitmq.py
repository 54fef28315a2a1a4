"""RabbitMQManagementSource against the real RabbitMQ on 127.0.0.1 (asyncio: aio-pika sets it up).

The Nemesis queues are declared with a per-run suffix, given known counts, and
deleted at the end.  The management API's figures lag (``collect_statistics_interval``,
5 s by default), so reads are polled, bounded, until the known counts show.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import aio_pika
import anyio
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from services import RABBITMQ_AMQP_URL, free_port, rabbitmq_management

from admission.telemetry import FailureKind, QueueSample, ReadFailure, Reading
from admission.telemetry.rabbitmq import RabbitMQManagementSource

pytestmark = [pytest.mark.anyio, pytest.mark.service]

SETTLE_SECONDS = 15.0  # three stats intervals
COUNTS = {"files-new_file": 7, "files-document_conversion_input": 3, "titus-titus_input": 0}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # aio-pika declares and publishes: asyncio only


@dataclass
class Broker:
    url: str
    connection: AbstractConnection
    channel: AbstractChannel
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    declared: list[str] = field(default_factory=list)

    async def declare(self, base: str, messages: int) -> str:
        name = f"{base}-{self.suffix}"
        await self.channel.declare_queue(name, durable=True)
        self.declared.append(name)
        for number in range(messages):
            body = f"file-{number}.zip".encode()
            await self.channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)
        return name


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[Broker]:
    url = rabbitmq_management()
    connection = await aio_pika.connect(RABBITMQ_AMQP_URL, timeout=5)
    state = Broker(url, connection, await connection.channel())
    try:
        yield state
    finally:
        # A fresh channel: a test may have left the shared one closed.
        channel = await connection.channel()
        for name in state.declared:
            await channel.queue_delete(name)
        await connection.close()


@pytest.fixture(scope="module")
async def nemesis(broker: Broker) -> dict[str, str]:
    """The three Nemesis queues with 7, 3 and 0 ready messages, once the API shows them."""
    names = {base: await broker.declare(base, count) for base, count in COUNTS.items()}
    source = RabbitMQManagementSource(broker.url, password="guest", mode="per_queue")
    want = {names[base]: count for base, count in COUNTS.items()}
    try:
        await settled(source, list(want), lambda r: ready_of(r) == want)
    finally:
        await source.aclose()
    return names


def ready_of(readings: Mapping[str, Reading]) -> dict[str, int | None]:
    return {
        q: r.messages_ready if isinstance(r, QueueSample) else None for q, r in readings.items()
    }


async def settled(
    source: RabbitMQManagementSource,
    queues: Sequence[str],
    done: Callable[[Mapping[str, Reading]], bool],
) -> Mapping[str, Reading]:
    """Read until ``done(readings)``; fail after SETTLE_SECONDS with the last readings."""
    readings: Mapping[str, Reading] = {}
    with anyio.move_on_after(SETTLE_SECONDS):
        while True:
            readings = await source.read(queues, now=0.0)
            if done(readings):
                return readings
            await anyio.sleep(0.25)
    pytest.fail(f"the management API did not show the expected figures: {readings}")


@pytest.mark.parametrize("mode", ["per_queue", "list", "whole list"])
async def test_known_counts_are_read_back(
    broker: Broker, nemesis: dict[str, str], mode: str
) -> None:
    source = RabbitMQManagementSource(
        broker.url, password="guest", mode="per_queue" if mode == "per_queue" else "list"
    )
    if mode == "whole list":
        source.server_filter_limit = 0
    names = list(nemesis.values())
    readings = await source.read(names, now=123.0)
    await source.aclose()
    assert ready_of(readings) == {nemesis[base]: count for base, count in COUNTS.items()}
    for reading in readings.values():
        assert isinstance(reading, QueueSample)
        assert (reading.sampled_at, reading.health) == (123.0, "ok")
        assert (reading.messages_unacknowledged, reading.consumers) == (0, 0)
    new_file = readings[nemesis["files-new_file"]]
    assert isinstance(new_file, QueueSample)
    assert isinstance(new_file.publish_rate, float)  # published to: message_stats exists
    titus = readings[nemesis["titus-titus_input"]]
    assert isinstance(titus, QueueSample)
    # Never published to: RabbitMQ sends no message_stats, so the rates are unknown.
    assert (titus.publish_rate, titus.deliver_rate, titus.ack_rate) == (None, None, None)


@pytest.mark.parametrize("mode", ["per_queue", "list"])
async def test_a_missing_queue_is_missing(
    broker: Broker, nemesis: dict[str, str], mode: str
) -> None:
    absent = f"files-new_file-absent-{broker.suffix}"
    source = RabbitMQManagementSource(broker.url, password="guest", mode=mode)  # type: ignore[arg-type]
    readings = await source.read([absent, nemesis["files-new_file"]], now=1.0)
    await source.aclose()
    missing = readings[absent]
    assert isinstance(missing, ReadFailure)
    assert missing.kind is FailureKind.MISSING_QUEUE
    assert absent in missing.reason
    assert isinstance(readings[nemesis["files-new_file"]], QueueSample)


async def test_bad_credentials_are_bad_credentials(broker: Broker, nemesis: dict[str, str]) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    source = RabbitMQManagementSource(broker.url, password=wrong)
    readings = await source.read(list(nemesis.values()), now=1.0)
    await source.aclose()
    for reading in readings.values():
        assert isinstance(reading, ReadFailure)
        assert reading.kind is FailureKind.BAD_CREDENTIALS
        assert reading.reason.endswith("HTTP 401 (login failed)")
        assert wrong not in reading.reason


async def test_a_closed_port_is_a_connection_failure(nemesis: dict[str, str]) -> None:
    port = free_port()
    source = RabbitMQManagementSource(f"http://127.0.0.1:{port}", timeout=2.0)
    queue = nemesis["files-new_file"]
    got = (await source.read([queue], now=1.0))[queue]
    await source.aclose()
    assert isinstance(got, ReadFailure)
    assert got.kind is FailureKind.CONNECTION
    assert f"cannot connect to 127.0.0.1:{port}" in got.reason


async def test_the_degraded_amqp_path_when_only_the_management_port_is_wrong(
    broker: Broker, nemesis: dict[str, str]
) -> None:
    port = free_port()
    source = RabbitMQManagementSource(f"http://127.0.0.1:{port}", amqp_url=RABBITMQ_AMQP_URL)
    absent = f"titus-titus_input-absent-{broker.suffix}"
    queues = [*nemesis.values(), absent]
    try:
        for now in (1.0, 2.0):  # the miss closes the channel: the second read reopens it
            readings = await source.read(queues, now=now)
            for base, count in COUNTS.items():
                got = readings[nemesis[base]]
                assert got == QueueSample(nemesis[base], now, count, None, 0, health="degraded")
            missing = readings[absent]
            assert isinstance(missing, ReadFailure)
            assert missing.kind is FailureKind.MISSING_QUEUE
            assert f"cannot connect to 127.0.0.1:{port}" in missing.reason
            assert f"fallback AMQP 127.0.0.1:5672: no queue '{absent}'" in missing.reason
    finally:
        await source.aclose()


async def test_a_consumer_is_counted_and_its_unacked_messages_too(broker: Broker) -> None:
    queue = await broker.declare("files-document_conversion_input-consumed", 7)
    channel = await broker.connection.channel()
    await channel.set_qos(prefetch_count=2)
    declared = await channel.declare_queue(queue, passive=True)
    held: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        held.append(message)  # never acked: the broker keeps 2 in flight

    tag = await declared.consume(hold)
    source = RabbitMQManagementSource(broker.url, password="guest", mode="per_queue")
    degraded = RabbitMQManagementSource(
        f"http://127.0.0.1:{free_port()}", amqp_url=RABBITMQ_AMQP_URL
    )
    try:
        readings = await settled(
            source,
            [queue],
            lambda r: (
                isinstance(s := r[queue], QueueSample)
                and (s.consumers, s.messages_ready, s.messages_unacknowledged) == (1, 5, 2)
            ),
        )
        managed = readings[queue]
        assert isinstance(managed, QueueSample)
        assert managed.health == "ok"
        got = (await degraded.read([queue], now=5.0))[queue]
        assert got == QueueSample(queue, 5.0, 5, None, 1, health="degraded")
    finally:
        await declared.cancel(tag)
        await channel.close()
        await source.aclose()
        await degraded.aclose()
    assert len(held) == 2
