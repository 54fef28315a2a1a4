"""The file_enrichment gate end to end on the real RabbitMQ: 500 file events through aio-pika.

Each run declares ``files-new_file`` in a vhost of its own, created and deleted
through the management API, so nobody's queue is touched.  The clock is the real
one (the broker is): the handlers work a few milliseconds and the ``e2e`` preset
below lets both classes go fast, so what binds is each class's parallelism.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import anyio
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from file_enrichment_helpers import NEW_FILE, event, registry
from services import rabbitmq_amqp, rabbitmq_management

from admission.registry import Registry
from integrations.file_enrichment import (
    EXPENSIVE,
    STANDARD,
    AmqpEvent,
    FileEnrichmentGate,
    amqp_consumer,
)

pytestmark = [pytest.mark.anyio, pytest.mark.service]

EVENTS = 500
SWITCH_AFTER = 150  # processed events before the expensive class is forced to critical
PREFETCH = 20
WORK = 0.01  # seconds each handler holds its slot
MAX_WAIT = 0.1
GRACE = 0.25  # longest the expensive class may sit idle while its work waits in the gate
DEADLINE = 30.0

EXPENSIVE_FILES = ("a.zip", "b.7z", "C:\\Temp\\SETUP.EXE", "lib.dll", "disk.iso", "c.rar")
STANDARD_FILES = ("report.pdf", "notes.txt", "table.csv", "page.html", "photo.jpg")


def _limits(parallelism: int, rate: float, *, deferred: bool = False) -> dict[str, Any]:
    return {
        "parallelism": parallelism,
        "rate": rate,
        "burst": rate / 10,
        "minimum_floor": 1,
        "deferred_admission": deferred,
    }


#: Balanced's shape (expensive 3 wide under normal, 1 under critical, deferred),
#: at rates a few milliseconds of work never reach.
E2E = {
    "e2e": {
        "extends": "balanced",
        "classes": {
            STANDARD: {level: _limits(4, 500) for level in ("normal", "warning", "critical")},
            EXPENSIVE: {
                "normal": _limits(3, 300),
                "warning": _limits(2, 200, deferred=True),
                "critical": _limits(1, 200, deferred=True),
            },
        },
    }
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # aio-pika


@pytest.fixture
async def vhost_url() -> AsyncIterator[str]:
    """The AMQP URL of a fresh vhost that guest may use; the vhost is deleted afterwards."""
    api = rabbitmq_management()
    amqp = rabbitmq_amqp()
    name = f"admission-test-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=api, auth=("guest", "guest"), timeout=10) as http:
        (await http.put(f"/api/vhosts/{name}")).raise_for_status()
        try:
            grant = {"configure": ".*", "write": ".*", "read": ".*"}
            (await http.put(f"/api/permissions/{name}/guest", json=grant)).raise_for_status()
            yield f"{amqp}{name}"
        finally:
            (await http.delete(f"/api/vhosts/{name}")).raise_for_status()


@dataclass
class Delivery:
    """One delivery of one event: ``ran`` if the handler ran it (then it was acked)."""

    redelivered: bool
    ran: bool = False
    settled: bool = False


@dataclass
class Observed:
    """What the consumer and the handlers saw."""

    classes: dict[str, str] = field(repr=False)  # event id -> the class of its file
    deliveries: defaultdict[str, list[Delivery]] = field(
        default_factory=lambda: defaultdict(list), repr=False
    )
    done: anyio.Event = field(default_factory=anyio.Event, repr=False)
    acked: int = 0
    expensive_running: int = 0
    #: The expensive class's cap when one of its handlers started -> the most running then.
    peaks: dict[int | None, int] = field(default_factory=dict)
    over_cap: list[tuple[int, int | None]] = field(default_factory=list)
    in_flight_short: list[tuple[int, int]] = field(default_factory=list)
    waiting_samples: int = 0
    longest_idle: float = 0.0

    def nacks(self, workload_class: str | None = None) -> int:
        return sum(
            not d.ran
            for event_id, ds in self.deliveries.items()
            if workload_class is None or self.classes[event_id] == workload_class
            for d in ds
        )


def plan(seed: int) -> dict[str, str]:
    """``EVENTS`` event ids with their files: a third expensive, shuffled."""
    rng = random.Random(seed)
    files = [
        rng.choice(EXPENSIVE_FILES) if n % 3 == 0 else rng.choice(STANDARD_FILES)
        for n in range(EVENTS)
    ]
    rng.shuffle(files)
    return {f"e-{n:03d}": path for n, path in enumerate(files)}


def expected_class(path: str) -> str:
    return EXPENSIVE if path in EXPENSIVE_FILES else STANDARD


def handler(
    gate: FileEnrichmentGate, reg: Registry, seen: Observed
) -> Callable[[AmqpEvent], Awaitable[None]]:
    """The enrichment work: a few milliseconds on the gate's clock, watched."""
    clock = gate.clock
    processed = 0

    async def enrich(event: AmqpEvent) -> None:
        nonlocal processed
        event_id = event.data["id"]
        seen.deliveries[event_id][-1].ran = True
        if gate.classify(event) == EXPENSIVE:
            snap = gate.limiter.snapshot().workload_class(EXPENSIVE)
            seen.expensive_running += 1
            running = seen.expensive_running
            cap = snap.max_concurrency
            seen.peaks[cap] = max(seen.peaks.get(cap, 0), running)
            if cap is None or running > cap:
                seen.over_cap.append((running, cap))
            # The limiter counts a slot from its grant, before the handler starts.
            if snap.in_flight < running:
                seen.in_flight_short.append((running, snap.in_flight))
            try:
                await clock.sleep(WORK)
            finally:
                seen.expensive_running -= 1
        else:
            await clock.sleep(WORK)
        processed += 1
        if processed == SWITCH_AFTER:
            reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600, reason="e2e")

    return enrich


async def watch_idle(gate: FileEnrichmentGate, seen: Observed) -> None:
    """Sample the expensive class: how long was it idle with work waiting in the gate?"""
    clock = gate.clock
    idle_since: float | None = None
    while True:
        snap = gate.limiter.snapshot().workload_class(EXPENSIVE)
        now = clock.monotonic()
        if snap.waiting:
            seen.waiting_samples += 1
        if snap.waiting and not snap.in_flight:
            idle_since = now if idle_since is None else idle_since
            seen.longest_idle = max(seen.longest_idle, now - idle_since)
        else:
            idle_since = None
        await clock.sleep(0.002)


@pytest.mark.parametrize("requeue_delay", [0.0, 0.05])
async def test_500_events_each_processed_once_while_the_policy_goes_critical(
    vhost_url: str, requeue_delay: float
) -> None:
    files = plan(seed=7)
    reg = registry("e2e", presets=E2E)
    gate = FileEnrichmentGate(reg, max_wait=MAX_WAIT)
    seen = Observed({event_id: expected_class(path) for event_id, path in files.items()})
    consumer = amqp_consumer(gate, handler(gate, reg, seen), requeue_delay=requeue_delay)

    async def on_message(message: AbstractIncomingMessage) -> None:
        delivery = Delivery(bool(message.redelivered))
        seen.deliveries[json.loads(message.body)["data"]["id"]].append(delivery)
        await consumer(message)
        delivery.settled = message.processed
        if delivery.ran:
            seen.acked += 1
            if seen.acked == EVENTS:
                seen.done.set()

    with anyio.fail_after(DEADLINE):
        connection = await aio_pika.connect(vhost_url, timeout=5)
        try:
            channel = await connection.channel()
            await channel.declare_queue(NEW_FILE)
            for event_id, path in files.items():
                body = {**event(path, id=event_id), "id": event_id, "source": "e2e"}
                message = aio_pika.Message(json.dumps(body).encode(), message_id=event_id)
                await channel.default_exchange.publish(message, routing_key=NEW_FILE)

            consuming = await connection.channel()
            await consuming.set_qos(prefetch_count=PREFETCH)
            queue = await consuming.declare_queue(NEW_FILE, passive=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_idle, gate, seen)
                tag = await queue.consume(on_message)
                await seen.done.wait()
                await queue.cancel(tag)
                tg.cancel_scope.cancel()
            # Closing the channel hands any message left unacked back to the queue.
            await consuming.close()
            left = await channel.declare_queue(NEW_FILE, passive=True)
            assert left.declaration_result.message_count == 0
            assert left.declaration_result.consumer_count == 0
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await connection.close()

    # Every event ran exactly once; every other delivery of it was a hand-back
    # before it, and only those came back marked redelivered.
    assert set(seen.deliveries) == set(files)
    for event_id, deliveries in seen.deliveries.items():
        later = len(deliveries) - 1
        assert [d.redelivered for d in deliveries] == [False] + [True] * later, event_id
        assert [d.ran for d in deliveries] == [False] * later + [True], event_id
        assert all(d.settled for d in deliveries), event_id
    nacks = seen.nacks()
    assert (consumer.acked_total, consumer.failed_total) == (EVENTS, 0)
    assert consumer.requeued_total == consumer.redelivered_total == nacks
    # Every hand-back was counted against the class of its file.
    for name in (STANDARD, EXPENSIVE):
        assert reg.class_status(name).deferred_total == seen.nacks(name), name
    assert seen.nacks(EXPENSIVE) > 0  # critical deferred expensive work
    assert reg.class_status(EXPENSIVE).level == "critical"
    assert reg.class_status(STANDARD).level == "normal"

    # The expensive class ran up to its cap at each level and never above it.
    assert seen.over_cap == []
    assert seen.in_flight_short == []
    assert set(seen.peaks) == {3, 1}
    assert seen.peaks[1] == 1
    assert 2 <= seen.peaks[3] <= 3
    # And never sat idle while its work waited in the gate.
    assert seen.waiting_samples > 0
    assert seen.longest_idle < GRACE
    snap = gate.limiter.snapshot()
    assert (snap.in_flight, snap.waiting) == (0, 0)
