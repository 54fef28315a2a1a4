"""The demo's in-memory broker behaves like an AMQP one: prefetch, requeue, nothing dropped."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from admission.demo.broker import Delivery, MemoryBroker, MemoryQueue, QueueAccount
from admission.telemetry import QueueSample, ReadFailure

pytestmark = pytest.mark.anyio


async def test_a_requeued_message_goes_to_the_back_marked_redelivered() -> None:
    queue = MemoryQueue("q")
    for body in (b"a", b"b", b"c"):
        queue.publish(body)
    first = await queue.get()
    assert (first.body, first.redelivered) == (b"a", False)
    await first.nack(requeue=True)
    bodies = [(m.body, m.redelivered) for m in [await queue.get() for _ in range(3)]]
    assert bodies == [(b"b", False), (b"c", False), (b"a", True)]
    assert (queue.published, queue.requeued, queue.ready, queue.unacked) == (3, 1, 0, 3)


async def test_a_message_is_settled_once() -> None:
    queue = MemoryQueue("q")
    queue.publish(b"x")
    message = await queue.get()
    await message.ack()
    with pytest.raises(RuntimeError, match="already settled"):
        await message.nack(requeue=True)
    assert (queue.acked, queue.ready, queue.unacked) == (1, 0, 0)


async def test_a_consumer_holds_at_most_prefetch_messages() -> None:
    queue = MemoryQueue("q")
    for i in range(10):
        queue.publish(str(i).encode())
    held: list[Delivery] = []
    release = anyio.Event()

    async def handler(delivery: Delivery) -> None:
        held.append(delivery)
        await release.wait()
        await delivery.ack()

    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: queue.consume(handler, prefetch=3, task_status=task_status)
        )
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert (len(held), queue.unacked, queue.ready, queue.consumers) == (3, 3, 7, 1)
        release.set()
        while queue.acked < 10:
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert (queue.acked, queue.ready, queue.unacked, queue.consumers) == (10, 0, 0, 0)


async def test_a_stopped_consumer_returns_what_it_held_to_the_queue() -> None:
    queue = MemoryQueue("q")
    for i in range(5):
        queue.publish(str(i).encode())

    async def never_done(delivery: Delivery) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: queue.consume(never_done, prefetch=2, task_status=task_status)
        )
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
        assert queue.unacked == 2
        tg.cancel_scope.cancel()
    assert (queue.ready, queue.unacked, queue.requeued, queue.dropped) == (5, 0, 2, 0)
    account = QueueAccount("q", queue.published, queue.acked, queue.ready + queue.unacked)
    assert account.lost == 0


async def test_prefetch_must_be_a_positive_int() -> None:
    async def handler(delivery: Delivery) -> None:
        await delivery.ack()

    with pytest.raises(ValueError, match="prefetch must be an int >= 1, got 0"):
        await MemoryQueue("q").consume(handler, prefetch=0)


async def test_the_telemetry_reads_the_queues_and_fails_during_an_outage() -> None:
    broker = MemoryBroker(["a", "b"])
    await broker.publish("a", b"1")
    await broker.publish("a", b"2")
    await broker.queues["a"].get()
    source = broker.pressure_source()
    read = await source.read(["a", "b"], now=1.0)
    sample = read["a"]
    assert isinstance(sample, QueueSample)
    assert (sample.messages_ready, sample.messages_unacknowledged, sample.consumers) == (1, 1, 0)
    broker.telemetry_outage("switched off")
    failed = (await source.read(["a"], now=2.0))["a"]
    assert isinstance(failed, ReadFailure)
    assert failed.reason == "switched off"
    broker.telemetry_outage(None)
    assert isinstance((await source.read(["a"], now=3.0))["a"], QueueSample)
    assert await broker.still_queued(["a", "b"]) == {"a": 2, "b": 0}
    with pytest.raises(KeyError, match="no queue 'c'"):
        await broker.publish("c", b"x")
