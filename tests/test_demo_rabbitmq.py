"""``admission demo --rabbitmq-url``: the same pipeline on the real broker, in a vhost of its own.

The levels are not checked here: the management API refreshes its figures
every 5 real seconds, so at the speed a test can afford the monitor sees the
queues minutes of scenario late (the demo defaults to speed 2 on a broker for
that reason; a full run there takes five minutes).  What is checked is what a
broker changes: hand-backs go to the back of the queue, nothing is lost, the
vhost is gone afterwards.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import anyio
import httpx
import pytest
from services import rabbitmq_amqp, rabbitmq_management

from admission.demo import Demo, DemoOptions
from admission.demo.broker import Delivery
from admission.demo.rabbitmq import RabbitBroker
from admission.demo.scenario import NEW_FILE, QUEUES, TITUS

pytestmark = [pytest.mark.anyio, pytest.mark.service]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # aio-pika, uvicorn


@pytest.fixture(scope="module")
def broker_url() -> str:
    rabbitmq_management()
    return rabbitmq_amqp()


async def vhost_exists(name: str) -> bool:
    async with httpx.AsyncClient(auth=("guest", "guest")) as client:
        response = await client.get(f"http://127.0.0.1:15672/api/vhosts/{quote(name, safe='')}")
    return response.status_code == 200


@pytest.fixture(scope="module")
async def broker(broker_url: str) -> AsyncIterator[RabbitBroker]:
    """One broker vhost for the module (its first statistics take the broker 5 s)."""
    rabbit = RabbitBroker(broker_url)
    async with rabbit:
        yield rabbit
    assert not await vhost_exists(rabbit.vhost)


async def test_a_hand_back_goes_to_the_back_of_the_queue_marked(broker: RabbitBroker) -> None:
    assert broker.vhost.startswith("admission-demo-")
    assert await vhost_exists(broker.vhost)
    for body in (b"a", b"b", b"c"):
        await broker.publish(NEW_FILE, body)
    seen: list[tuple[bytes, bool | None]] = []
    done = anyio.Event()

    async def handler(delivery: Delivery) -> None:
        seen.append((delivery.body, delivery.redelivered))
        if delivery.body == b"a" and not delivery.redelivered:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()
        if len(seen) == 4:
            done.set()

    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: broker.consume(
                NEW_FILE, handler, prefetch=1, task_status=task_status
            )
        )
        with anyio.fail_after(10):
            await done.wait()
        tg.cancel_scope.cancel()
    assert seen == [(b"a", False), (b"b", False), (b"c", False), (b"a", True)]
    assert await broker.still_queued(QUEUES) == dict.fromkeys(QUEUES, 0)


async def test_a_stopped_consumer_leaves_its_messages_queued(broker: RabbitBroker) -> None:
    for i in range(5):
        await broker.publish(TITUS, str(i).encode())

    held: list[Delivery] = []
    both = anyio.Event()

    async def stuck(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) == 2:
            both.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: broker.consume(TITUS, stuck, prefetch=2, task_status=task_status)
        )
        with anyio.fail_after(10):
            await both.wait()
        tg.cancel_scope.cancel()
    assert len(held) == 2  # the prefetch
    assert (await broker.still_queued([TITUS]))[TITUS] == 5


async def test_the_demo_runs_on_the_broker_and_cleans_up(broker_url: str, tmp_path: Path) -> None:
    options = DemoOptions(
        speed=100, rabbitmq_url=broker_url, output_dir=tmp_path, view="plain", plot=False
    )
    demo = Demo(options, stream=io.StringIO())
    answered: dict[str, object] = {}

    async def ask() -> None:
        url = await demo.started()
        async with httpx.AsyncClient(timeout=10) as client:
            answered.update((await client.get(url)).json())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        summary = await demo.run()
    assert answered["monitor"] == "running"
    assert "RabbitMQ amqp://127.0.0.1:5672 (vhost admission-demo-" in summary.mode
    assert summary.nothing_lost
    for account in summary.accounts:
        assert account.processed > 0
        assert account.published == account.processed + account.still_queued
    written = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert written["mode"] == summary.mode
    vhost = summary.mode.rsplit("vhost ", 1)[1].rstrip(")")
    assert not await vhost_exists(vhost)
