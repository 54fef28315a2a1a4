"""The assembled system the fault tests attack: queue, gate, handler, monitor, status API.

A broker queue (``files-new_file``, tests/faults/fault_broker.py) fed by a
producer; a consumer delivering each message to the library's AMQP consume
callback (``amqp_consumer``) behind the ``FileEnrichmentGate``; a handler
holding each file on the clock; the pressure monitor reading the queue's depth
through a ``MemorySource`` (by default on the balanced preset: poll 5 s, stale
after 15 s, 3 failures, recovery 120 s) and retuning the gate's limiter; the
status router served over httpx's ASGI transport.  The in-process tests run it
on the virtual clock, the Redis test on the system clock.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus
from distributed_helpers import conforms
from fastapi import FastAPI
from fault_broker import REDELIVERY_DELAY, FaultQueue, Message

from admission import AdaptiveLimiter
from admission.clock import Clock
from admission.monitor import PressureMonitor
from admission.policy import FAIL_SAFE, LevelLimits, PolicyConfig, parse_config
from admission.registry import Registry
from admission.telemetry import PressureSource
from admission.telemetry.memory import MemorySource
from admission.testing import EPOCH, VirtualClock
from integrations.file_enrichment import (
    EXPENSIVE,
    STANDARD,
    AmqpEvent,
    FileClassifier,
    FileEnrichmentGate,
    amqp_consumer,
)
from integrations.web_api import DEFAULT_PREFIX, throughput_router

__all__ = ["HOLD", "NEW_FILE", "Message", "Run", "System", "Work", "config_for", "conforms"]

NEW_FILE = "files-new_file"
#: Seconds the handler holds a file of each class.
HOLD = {STANDARD: 0.8, EXPENSIVE: 1.5}
GATE_MAX_WAIT = 10.0


def config_for(**queue: object) -> PolicyConfig:
    """Balanced, one watched queue (``queue`` refines its policy)."""
    return parse_config({"preset": "balanced", "queues": [{"name": NEW_FILE, **queue}]})


# -- the handler -------------------------------------------------------------------


@dataclass
class Run:
    """One handler run: which message, its class, when it started and ended, its ``tag``."""

    id: int
    cls: str
    start: float
    end: float | None = None
    tag: object = None


@dataclass
class Work:
    """The file handler: holds each file on the clock; notes every run."""

    clock: Clock
    classify: Callable[[Any], str]
    hold: Mapping[str, float] = field(default_factory=lambda: HOLD)
    #: Called at each start; its answer is noted with the run (e.g. which bucket admitted it).
    tag: Callable[[], object] = lambda: None
    runs: list[Run] = field(default_factory=list)
    processed: Counter[int] = field(default_factory=Counter)

    async def __call__(self, event: AmqpEvent) -> None:
        run = Run(int(event.data["id"]), self.classify(event), self.clock.monotonic())
        run.tag = self.tag()
        self.runs.append(run)
        await self.clock.sleep(self.hold[run.cls])
        run.end = self.clock.monotonic()
        self.processed[run.id] += 1

    def starts(self, cls: str, since: float, until: float) -> list[float]:
        return [r.start for r in self.runs if r.cls == cls and since <= r.start < until]

    def peak(self, cls: str, since: float, until: float) -> int:
        """The most runs of ``cls`` at once, between ``since`` and ``until``."""
        edges: list[tuple[float, int]] = []
        for r in self.runs:
            end = r.end if r.end is not None else float("inf")
            if r.cls == cls and r.start < until and end > since:
                edges += [(max(r.start, since), 1), (end, -1)]
        now = most = 0
        for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
            now += step
            most = max(most, now)
        return most


def body(n: int, cls: str) -> bytes:
    path = f"/evidence/file-{n}.zip" if cls == EXPENSIVE else f"/evidence/file-{n}.txt"
    event = {"specversion": "1.0", "type": "file.new", "data": {"id": n, "path": path}}
    return json.dumps(event).encode()


# -- the assembled system ------------------------------------------------------------


class System:
    """Registry, gate, handler, queue, monitor and status API, wired as a worker runs them."""

    def __init__(
        self,
        clock: Clock,
        *,
        config: PolicyConfig | None = None,
        source: PressureSource | None = None,
        limiter: AdaptiveLimiter | None = None,
        classify: Callable[[Any], str] | None = None,
        redelivery_delay: float = REDELIVERY_DELAY,
        hold: Mapping[str, float] = HOLD,
        interval: float | None = None,
    ) -> None:
        self.clock = clock
        self.registry = Registry(config if config is not None else config_for(), clock=clock)
        self.queue = FaultQueue(clock, redelivery_delay)
        self.memory = MemorySource()
        self.memory.watch(
            NEW_FILE,
            ready=self.queue.count_ready,
            unacked=self.queue.count_unacked,
            consumers=self.queue.count_consumers,
        )
        self.source: PressureSource = source if source is not None else self.memory
        self.monitor = PressureMonitor(
            self.source, registry=self.registry, jitter=0.0, interval=interval
        )
        self.gate = FileEnrichmentGate(
            self.registry, limiter=limiter, max_wait=GATE_MAX_WAIT, classify=classify
        )
        # The handler notes each file's class by extension, whatever hook the gate uses.
        self.work = Work(clock, FileClassifier.from_registry(self.registry), hold)
        self.consumer = amqp_consumer(self.gate, self.work)
        app = FastAPI()
        app.include_router(throughput_router(self.registry), prefix=DEFAULT_PREFIX)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://fault.test"
        )
        self._ids = itertools.count(1)
        self._tg: TaskGroup | None = None
        self._monitor_scope: anyio.CancelScope | None = None
        self._producer_scope: anyio.CancelScope | None = None

    # -- running ---------------------------------------------------------------

    @asynccontextmanager
    async def running(
        self, consume: Callable[[Message], Awaitable[object]] | None = None
    ) -> AsyncIterator[System]:
        """Monitor, consumer and producer run inside; leaving the block stops them."""
        callback = consume or self.deliver
        async with self.http, self.queue.open(), anyio.create_task_group() as tg:
            self._tg = tg
            await self.start_monitor()
            await tg.start(functools.partial(self.queue.consume, callback))
            await self.start_producer()
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def deliver(self, message: Message) -> None:
        """The library's AMQP consume callback on one delivery (it uses aio-pika's message API)."""
        await self.consumer(cast(Any, message))

    async def start_monitor(self) -> None:
        assert self._tg is not None
        await self._tg.start(self._run_monitor)

    async def _run_monitor(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.CancelScope() as scope:
            self._monitor_scope = scope
            await self.monitor.run(task_status=task_status)

    def cancel_monitor(self) -> None:
        assert self._monitor_scope is not None
        self._monitor_scope.cancel()

    async def start_producer(self, every: float = 1.0, expensive_every: int = 3) -> None:
        """A steady stream: one file per ``every`` seconds, each ``expensive_every``-th a zip."""
        assert self._tg is not None
        await self._tg.start(self._produce, every, expensive_every)

    def stop_producer(self) -> None:
        assert self._producer_scope is not None
        self._producer_scope.cancel()

    async def _produce(
        self, every: float, expensive_every: int, *, task_status: TaskStatus[None]
    ) -> None:
        with anyio.CancelScope() as scope:
            self._producer_scope = scope
            task_status.started()
            while True:
                n = next(self._ids)
                self.queue.publish(body(n, EXPENSIVE if n % expensive_every == 0 else STANDARD))
                await self.clock.sleep(every)

    def publish_burst(self, count: int, cls: str) -> list[int]:
        ids = [next(self._ids) for _ in range(count)]
        for n in ids:
            self.queue.publish(body(n, cls))
        return ids

    async def until(self, at: float) -> None:
        """Advance the virtual clock to the absolute instant ``at``."""
        assert isinstance(self.clock, VirtualClock)
        await self.clock.advance(at - self.clock.monotonic())

    async def drain(self, limit: float = 600.0, step: float = 5.0) -> float:
        """Run until every message published is acked (at most ``limit`` s); the time it took.

        On the virtual clock it advances ``step`` at a time; on a real one it polls.
        """
        started = self.clock.monotonic()
        while self.queue.acked < self.queue.published:
            if self.clock.monotonic() - started > limit:
                raise AssertionError(f"not drained after {limit} s: {self.queue.account()}")
            if isinstance(self.clock, VirtualClock):
                await self.clock.advance(step)
            else:
                await anyio.sleep(step)
        return self.clock.monotonic() - started

    # -- what the operator and the limiter show --------------------------------

    async def status(self) -> dict[str, Any]:
        response = await self.http.get(f"{DEFAULT_PREFIX}/status")
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def limits(self, cls: str) -> tuple[float | None, float | None, int | None]:
        """What the gate's limiter enforces on ``cls`` now: rate, burst, cap."""
        snap = self.gate.limiter.snapshot().workload_class(cls)
        return snap.rate, snap.burst, snap.max_concurrency

    def fail_safe_limits(self, cls: str) -> LevelLimits:
        return self.registry.engine.fail_safe_preset.classes[cls].critical

    def normal_limits(self, cls: str) -> LevelLimits:
        return self.registry.engine.preset.classes[cls].normal

    def transition_at(self, name: str, to_level: str, after: float = 0.0) -> float | None:
        """Virtual time of the first transition of ``name`` to ``to_level`` from ``after`` on."""
        for record in self.registry.transitions():
            at = seconds(record.at)
            if record.name == name and record.to_level == to_level and at >= after:
                return at
        return None

    def left_fail_safe_at(self, name: str, after: float) -> float | None:
        for record in self.registry.transitions():
            at = seconds(record.at)
            if (
                record.name == name
                and record.from_level == FAIL_SAFE
                and record.to_level != FAIL_SAFE
                and at >= after
            ):
                return at
        return None


def seconds(at: datetime) -> float:
    """A status timestamp as virtual seconds since the clock's start."""
    return (at - EPOCH).total_seconds()
