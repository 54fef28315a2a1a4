"""The assembled system the RabbitMQ fault tests break: broker queue, consumer, monitor, status.

One :class:`System` is a real queue on the broker, an aio-pika consumer
running a handler through the file_enrichment gate (``amqp_consumer``: ack, or
nack with requeue), a :class:`Registry` on the virtual clock, a
:class:`PressureMonitor` reading the queue through ``RabbitMQManagementSource``
(over HTTP, real), and the web_api status router served over an in-process
ASGI transport.

Time: the monitor, the limiter and the handlers run on the virtual clock; the
HTTP reads, AMQP deliveries and acks are real I/O.  :class:`Driver` moves the
clock one poll interval at a time and then waits, by bounded real polling,
until every monitor's tick for that instant has been committed to its
registry (``VirtualClock.advance`` returns while a tick still awaits its
socket, which counts as blocked).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import anyio
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from fastapi import FastAPI

from admission.monitor import PressureMonitor
from admission.policy import Level, LevelLimits, parse_config
from admission.registry import Registry
from admission.telemetry.rabbitmq import RabbitMQManagementSource
from admission.testing import VirtualClock
from integrations.file_enrichment import (
    EXPENSIVE,
    STANDARD,
    AmqpConsumer,
    AmqpEvent,
    FileEnrichmentGate,
    amqp_consumer,
)
from integrations.web_api import DEFAULT_PREFIX, throughput_router

INTERVAL = 5.0  # the monitor's poll interval (balanced's, the default)
#: Added to each advance: a sleep deadline rounded up by a nanosecond still falls due.
SLACK = 1e-6
WORK = 0.5  # virtual seconds a handler holds its slot
PREFETCH = 10
MAX_WAIT = 2.0  # virtual seconds a message may wait in the gate before it is handed back
REQUEUE_DELAY = 1.0  # a deferred message is held this long (virtual) before its nack
TICK_DEADLINE = 15.0  # real seconds a tick may take (a read times out well before)
CLASSES = (STANDARD, EXPENSIVE)


async def wait_until(done: Callable[[], bool], what: str, deadline: float) -> float:
    """Poll ``done`` every few real milliseconds; fail after ``deadline`` s.  Returns the wait."""
    started = time.perf_counter()
    with anyio.move_on_after(deadline):
        while True:
            if done():
                return time.perf_counter() - started
            await anyio.sleep(0.005)
    raise AssertionError(f"not within {deadline:g} real seconds: {what}")


@dataclass
class Ledger:
    """Every message of one system: published, delivered, handled; handler runs by phase."""

    published: list[str] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    handled: Counter[str] = field(default_factory=Counter)
    #: (message id, class, virtual instant, phase, queue in fail-safe) per handler start
    starts: list[tuple[str, str, float, str, bool]] = field(default_factory=list)
    running: Counter[str] = field(default_factory=Counter)
    #: The most handlers of each class running at once while the queue was fail-safe.
    peak_in_fail_safe: Counter[str] = field(default_factory=Counter)
    phase: str = "before"

    def runs(self, *, phase: str | None = None, fail_safe: bool | None = None) -> Counter[str]:
        """Handler starts per class, in ``phase`` and/or while (not) fail-safe."""
        return Counter(
            cls
            for _, cls, _, ph, safe in self.starts
            if (phase is None or ph == phase) and (fail_safe is None or safe == fail_safe)
        )


@dataclass(frozen=True, slots=True)
class Mark:
    """The system as one tick left it."""

    at: float  # virtual
    real: float  # time.perf_counter() when the tick was seen committed
    fail_safe: bool
    health: str
    failures: int
    severity: str
    last_error: str | None


@dataclass
class System:
    name: str
    queue: str
    clock: VirtualClock
    registry: Registry
    gate: FileEnrichmentGate
    consumer: AmqpConsumer
    monitor: PressureMonitor
    source: RabbitMQManagementSource
    web: httpx.AsyncClient
    publisher: AbstractChannel
    ledger: Ledger
    marks: list[Mark] = field(default_factory=list)

    async def publish(self, *paths: str) -> None:
        """One CloudEvent per path, each with an id of its own, confirmed by the broker."""
        for path in paths:
            event_id = f"{self.name}-{len(self.ledger.published):04d}"
            body = {"specversion": "1.0", "type": "new_file", "id": event_id}
            body["data"] = {"path": path, "id": event_id}  # type: ignore[assignment]
            message = aio_pika.Message(json.dumps(body).encode(), message_id=event_id)
            await self.publisher.default_exchange.publish(message, routing_key=self.queue)
            self.ledger.published.append(event_id)

    async def status(self) -> dict[str, Any]:
        """``GET /status`` as the web_api serves it."""
        response = await self.web.get(f"{DEFAULT_PREFIX}/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def mark(self, at: float) -> Mark:
        entry = self.registry.status().queue(self.queue)
        mark = Mark(
            at,
            time.perf_counter(),
            entry.fail_safe,
            entry.telemetry.health,
            entry.telemetry.consecutive_failures,
            entry.severity,
            entry.telemetry.last_error,
        )
        self.marks.append(mark)
        return mark

    def fail_safe_limits(self, cls: str) -> LevelLimits:
        return self.registry.engine.fail_safe_preset.classes[cls].critical

    def preset_limits(self, cls: str, level: str) -> LevelLimits:
        return self.registry.engine.preset.classes[cls].limits(Level(level))

    def limiter_limits(self, cls: str) -> tuple[float | None, float | None, int | None, int]:
        snap = self.gate.limiter.snapshot().workload_class(cls)
        return snap.rate, snap.burst, snap.max_concurrency, snap.minimum_floor

    def describe(self) -> str:
        """For a failure message: where this system stands."""
        snap = self.gate.limiter.snapshot()
        return (
            f"{self.name}: {self.marks[-1] if self.marks else None}, "
            f"{len(self.unsettled())} of {len(self.ledger.published)} unhandled, "
            f"in flight {snap.in_flight}, waiting {snap.waiting}, "
            f"deliveries {sum(self.ledger.deliveries.values())}"
        )

    def unsettled(self) -> list[str]:
        """Published ids not handled exactly once."""
        return [i for i in self.ledger.published if self.ledger.handled[i] != 1]


def as_limits(limits: LevelLimits) -> tuple[float, float, int, int]:
    return limits.rate, limits.burst, limits.parallelism, limits.minimum_floor


def _handler(
    clock: VirtualClock, gate: FileEnrichmentGate, registry: Registry, queue: str, ledger: Ledger
) -> Callable[[AmqpEvent], Any]:
    async def handle(event: AmqpEvent) -> None:
        cls = gate.classify(event)
        safe = registry.state.queues[queue].fail_safe
        ledger.starts.append((event.data["id"], cls, clock.monotonic(), ledger.phase, safe))
        ledger.running[cls] += 1
        if safe:
            ledger.peak_in_fail_safe[cls] = max(ledger.peak_in_fail_safe[cls], ledger.running[cls])
        try:
            await clock.sleep(WORK)
        finally:
            ledger.running[cls] -= 1
        ledger.handled[event.data["id"]] += 1

    return handle


@asynccontextmanager
async def assembled(
    clock: VirtualClock,
    connection: AbstractConnection,
    name: str,
    queue: str,
    *,
    management_url: str,
    timeout: float,
    amqp_url: str | None = None,
    queue_policy: dict[str, Any] | None = None,
) -> AsyncIterator[System]:
    """The system around ``queue`` (declared already), consuming, its monitor running."""
    config = parse_config(
        {"preset": "balanced", "queues": [{"name": queue, **(queue_policy or {})}]}
    )
    registry = Registry(config, clock=clock)
    gate = FileEnrichmentGate(registry, max_wait=MAX_WAIT)
    ledger = Ledger()
    consumer = amqp_consumer(
        gate, _handler(clock, gate, registry, queue, ledger), requeue_delay=REQUEUE_DELAY
    )
    source = RabbitMQManagementSource(
        management_url, timeout=timeout, mode="per_queue", amqp_url=amqp_url
    )
    monitor = PressureMonitor(source, registry=registry, interval=INTERVAL, jitter=0.0)
    app = FastAPI()
    app.include_router(throughput_router(registry), prefix=DEFAULT_PREFIX)

    async def on_message(message: AbstractIncomingMessage) -> None:
        ledger.deliveries[message.message_id or "?"] += 1
        await consumer(message)

    publisher = await connection.channel()
    consuming = await connection.channel()
    try:
        await consuming.set_qos(prefetch_count=PREFETCH)
        declared = await consuming.declare_queue(queue, passive=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://status") as web, monitor:
            tag = await declared.consume(on_message)
            try:
                yield System(
                    name, queue, clock, registry, gate, consumer, monitor, source, web,
                    publisher, ledger,
                )  # fmt: skip
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await declared.cancel(tag)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            # Closing the channel hands any message still unacked back to the queue.
            await consuming.close()
            await publisher.close()


class Driver:
    """Moves the virtual clock tick by tick for several systems sharing it."""

    def __init__(self, clock: VirtualClock, systems: Sequence[System]) -> None:
        self.clock = clock
        self.systems = tuple(systems)

    async def tick(self) -> float:
        """Advance one poll interval; wait until each monitor's tick there is committed."""
        before = [s.monitor.statistics().ticks for s in self.systems]
        await self.clock.advance(INTERVAL + SLACK)
        started = [s.monitor.statistics() for s in self.systems]
        assert [s.ticks for s in started] == [n + 1 for n in before], "one tick per interval"
        at = started[0].last_tick_at
        assert at is not None
        assert all(s.last_tick_at == at for s in started)
        await wait_until(
            lambda: all(s.registry.state.at >= at for s in self.systems),
            f"the monitors' tick at t={at:g} committed",
            TICK_DEADLINE,
        )
        for system in self.systems:
            system.mark(at)
        return at

    async def ticks(self, count: int, each: Callable[[], Any] | None = None) -> None:
        for _ in range(count):
            if each is not None:
                await each()
            await self.tick()

    async def until(
        self,
        done: Callable[[], bool],
        what: str,
        most: int,
        each: Callable[[], Any] | None = None,
    ) -> int:
        """Tick (calling ``each`` first) until ``done()``; at most ``most`` ticks."""
        for taken in range(most + 1):
            if done():
                return taken
            if taken < most:
                if each is not None:
                    await each()
                await self.tick()
        state = "; ".join(system.describe() for system in self.systems)
        raise AssertionError(
            f"not within {most} ticks ({most * INTERVAL:g} virtual s): {what}; {state}"
        )


async def declare(channel: AbstractChannel, names: Iterable[str]) -> None:
    for name in names:
        await channel.declare_queue(name, durable=False, auto_delete=False)


async def stats_shown(url: str, queues: Sequence[str], deadline: float = 20.0) -> float:
    """Wait until the management API reports ``messages_ready`` for every queue.

    A queue has no figures until the broker's next statistics round (every 5 s),
    and none again after the management plugin restarts.  Returns the real wait.
    """
    source = RabbitMQManagementSource(url, mode="per_queue", timeout=2.0)
    seen: dict[str, object] = {}

    async def shown() -> bool:
        readings = await source.read(queues, now=0.0)
        seen.update(readings)
        return all(getattr(r, "messages_ready", None) is not None for r in readings.values())

    started = time.perf_counter()
    try:
        with anyio.move_on_after(deadline):
            while True:
                if await shown():
                    return time.perf_counter() - started
                await anyio.sleep(0.2)
    finally:
        await source.aclose()
    raise AssertionError(f"no figures for {list(queues)} within {deadline:g} s: {seen}")


def unique(base: str) -> str:
    return f"{base}-fault-{uuid.uuid4().hex[:8]}"


def expected_limits(system: System, level: str) -> dict[str, tuple[float, float, int, int]]:
    """What the policy gives each class at ``level`` (``fail_safe``: conservative's critical)."""
    if level == "fail_safe":
        return {cls: as_limits(system.fail_safe_limits(cls)) for cls in CLASSES}
    return {cls: as_limits(system.preset_limits(cls, level)) for cls in CLASSES}


def limiter_limits(system: System) -> dict[str, tuple[float | None, float | None, int | None, int]]:
    return {cls: system.limiter_limits(cls) for cls in CLASSES}
