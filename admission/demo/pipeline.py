"""The demo's pipeline: producers, three worker stages, the monitor, the outage.

Files flow as in Nemesis: producers publish to ``files-new_file``;
``file_enrichment`` workers (behind the :class:`FileEnrichmentGate`) enrich
each file and pass documents on to ``files-document_conversion_input`` and
text to ``titus-titus_input``; ``document_conversion`` workers run a workflow
per document behind :class:`WorkflowAdmission`; a titus scanner drains its
queue.  The pressure monitor polls the broker's telemetry on the ``balanced``
preset and retunes both integrations' limiters; the scenario's outage makes
its reads fail for a while.

A message the gate hands back (``RetryLater``) is held for its ``retry_after``
(bounded) and nacked with requeue: the broker redelivers it later.  Nothing
is dropped: when the pipeline stops, the consumers' unsettled messages go back
to their queues, and :attr:`Pipeline.accounts` says, per queue, that every
message published was processed or is still queued.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from admission._tasks import start_owned, stop_owned
from admission.clock import Clock
from admission.demo.broker import Broker, Delivery, Handler, QueueAccount
from admission.demo.scenario import CONVERSION, NEW_FILE, QUEUES, TITUS, Arrival, Scenario, kind_of
from admission.errors import AdmissionTimeout
from admission.monitor import PressureMonitor
from admission.registry import Registry
from integrations.document_conversion import WorkflowAdmission
from integrations.file_enrichment import EXPENSIVE, FileEnrichmentGate, RetryLater

__all__ = ["CONVERSION_STAGE", "ENRICHMENT", "SCANNER", "Pipeline", "StageStats"]

ENRICHMENT = "file_enrichment"
CONVERSION_STAGE = "document_conversion"
SCANNER = "titus_scanner"

#: Messages each stage's consumer holds at once (the AMQP prefetch).
PREFETCH = {ENRICHMENT: 12, CONVERSION_STAGE: 8, SCANNER: 6}
#: A handed-back message is held this long at least and at most before the nack
#: (a broker would redeliver it at once; holding it keeps the demo from spinning).
HOLD_BOUNDS = (0.5, 3.0)
#: Seconds a file event may wait at the gate before it is handed back.
GATE_MAX_WAIT = 5.0
#: Seconds a document may wait for a workflow slot before it is handed back.
WORKFLOW_TIMEOUT = 20.0
# Seconds the final settling (ack + publish on a real broker) may take.
_SETTLE_TIMEOUT = 10.0
#: Scenario seconds the pipeline may run past the scenario's end while the
#: queues drain and the levels cool down: a slow or busy machine falls behind
#: the scaled clock, and the demo should still end the way the scenario says.
SETTLE_LIMIT = 300.0
#: Scenario seconds between two looks at whether the pipeline has settled.
_SETTLE_EVERY = 1.0


@dataclass(slots=True)
class StageStats:
    """What one worker stage did: deliveries, hand-backs by reason, work processed."""

    stage: str
    queue: str
    delivered: int = 0
    redelivered: int = 0
    processed: int = 0
    handed_back: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "queue": self.queue,
            "delivered": self.delivered,
            "redelivered": self.redelivered,
            "processed": self.processed,
            "handed_back": dict(self.handed_back),
        }


def _event(arrival: Arrival) -> bytes:
    """A structured CloudEvent (Dapr's envelope) carrying the file record."""
    data = arrival.file.to_data()
    event = {
        "specversion": "1.0",
        "type": "file.new",
        "source": "admission-demo",
        "id": data["object_id"],
        "data": data,
    }
    return json.dumps(event).encode()


def _data(body: bytes) -> Mapping[str, Any]:
    data: Mapping[str, Any] = json.loads(body)["data"]
    return data


def _file_id(data: Mapping[str, Any]) -> int:
    return int(str(data["object_id"]).rsplit("-", 1)[-1])


class Pipeline:
    """The running pipeline: ``async with Pipeline(...) as p: await p.play()``."""

    def __init__(
        self, scenario: Scenario, broker: Broker, registry: Registry, *, seed: int = 6
    ) -> None:
        self.scenario = scenario
        self.broker = broker
        self.registry = registry
        self.clock: Clock = registry.clock
        self.gate = FileEnrichmentGate(registry, max_wait=GATE_MAX_WAIT)
        self.workflows = WorkflowAdmission(
            registry=registry, execution_limit_seconds=10 * WORKFLOW_TIMEOUT
        )
        self.monitor = PressureMonitor(
            broker.pressure_source(), registry=registry, queues=QUEUES, seed=seed
        )
        self.stats = {
            ENRICHMENT: StageStats(ENRICHMENT, NEW_FILE),
            CONVERSION_STAGE: StageStats(CONVERSION_STAGE, CONVERSION),
            SCANNER: StageStats(SCANNER, TITUS),
        }
        self.published: Counter[str] = Counter()
        self.processed: Counter[str] = Counter()
        self.outage = False
        self.t0 = 0.0
        #: Set when the pipeline has stopped: one account per queue.
        self.accounts: tuple[QueueAccount, ...] = ()
        self._tg: TaskGroup | None = None
        self._workflow_ids = itertools.count(1)
        self._done_at: dict[str, float] = {}

    def now(self) -> float:
        """Scenario seconds since the pipeline started."""
        return self.clock.monotonic() - self.t0

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.t0 = self.clock.monotonic()
        handlers = {
            ENRICHMENT: self._enrich,
            CONVERSION_STAGE: self._convert,
            SCANNER: self._scan,
        }
        consumers = [
            functools.partial(
                _consume, self.broker, self.stats[stage].queue, handler, PREFETCH[stage]
            )
            for stage, handler in handlers.items()
        ]
        self._tg = await start_owned(self.workflows.run, self.monitor.run, *consumers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        assert tg is not None
        try:
            await stop_owned(tg)
        finally:
            with anyio.move_on_after(_SETTLE_TIMEOUT, shield=True):
                queued = await self.broker.still_queued(QUEUES)
                self.accounts = tuple(
                    QueueAccount(q, self.published[q], self.processed[q], queued[q]) for q in QUEUES
                )

    async def play(self) -> None:
        """Publish the scenario's files and run its outage; return at its end.

        If the queues still hold work or a level is still raised at the end,
        the pipeline runs on (at most :data:`SETTLE_LIMIT` scenario seconds)
        until everything published is processed and every level is normal.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._produce)
            tg.start_soon(self._telemetry_outage)
            await self._until(self.scenario.duration)
            tg.cancel_scope.cancel()
        deadline = self.scenario.duration + SETTLE_LIMIT
        while not self.settled() and self.now() < deadline:
            await self.clock.sleep(min(_SETTLE_EVERY, deadline - self.now()))

    def settled(self) -> bool:
        """Every message published is processed, and the status is normal, not fail-safe."""
        if any(self.processed[q] < self.published[q] for q in QUEUES):
            return False
        status = self.registry.status()
        return status.queue_pressure_level == "normal" and not status.fail_safe

    async def _until(self, t: float) -> None:
        delay = self.t0 + t - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)

    async def _produce(self) -> None:
        for arrival in self.scenario.arrivals():
            await self._until(arrival.at)
            await self._publish(NEW_FILE, _event(arrival))

    async def _telemetry_outage(self) -> None:
        window = self.scenario.outage
        await self._until(window.start)
        self.outage = True
        self.broker.telemetry_outage(
            f"demo: telemetry outage injected (t={window.start:g}s to {window.end:g}s)"
        )
        try:
            await self._until(window.end)
        finally:
            self.outage = False
            self.broker.telemetry_outage(None)

    async def _publish(self, queue: str, body: bytes) -> None:
        await self.broker.publish(queue, body)
        self.published[queue] += 1

    async def _settle(self, delivery: Delivery, queue: str, forward: dict[str, bytes]) -> None:
        """Publish the results, then ack: shielded, so a stop cannot split the two."""
        with anyio.CancelScope(shield=True):
            for target, body in forward.items():
                await self._publish(target, body)
            await delivery.ack()
            self.processed[queue] += 1

    async def _hand_back(
        self, delivery: Delivery, stats: StageStats, reason: str, after: float
    ) -> None:
        stats.handed_back[reason] += 1
        low, high = HOLD_BOUNDS
        await self.clock.sleep(min(max(after, low), high))
        await delivery.nack(requeue=True)

    def _delivered(self, stats: StageStats, delivery: Delivery) -> None:
        stats.delivered += 1
        if delivery.redelivered:
            stats.redelivered += 1

    # -- the three stages ----------------------------------------------------------

    async def _enrich(self, delivery: Delivery) -> None:
        stats = self.stats[ENRICHMENT]
        self._delivered(stats, delivery)
        event = json.loads(delivery.body)
        data = event["data"]
        try:
            async with self.gate.admit(event) as permit:
                expensive = permit.workload_class == EXPENSIVE
                seconds = self.scenario.work_seconds("enrich", _file_id(data), expensive=expensive)
                await self.clock.sleep(seconds)
        except RetryLater as exc:
            await self._hand_back(delivery, stats, exc.reason, exc.retry_after)
            return
        kind = kind_of(str(data["path"]))
        forward = {}
        if kind.convert:
            forward[CONVERSION] = delivery.body
        if kind.scan:
            forward[TITUS] = delivery.body
        await self._settle(delivery, NEW_FILE, forward)
        stats.processed += 1

    async def _convert(self, delivery: Delivery) -> None:
        stats = self.stats[CONVERSION_STAGE]
        self._delivered(stats, delivery)
        data = _data(delivery.body)
        path = str(data["path"])
        expensive = self.workflows.classify(path) == EXPENSIVE
        seconds = self.scenario.work_seconds("convert", _file_id(data), expensive=expensive)
        workflow_id = f"convert-{data['object_id']}-{next(self._workflow_ids)}"

        async def schedule(workflow_id: str) -> None:
            self._done_at[workflow_id] = self.clock.monotonic() + seconds

        async def poll(workflow_id: str) -> str | None:
            return "COMPLETED" if self.clock.monotonic() >= self._done_at[workflow_id] else None

        try:
            await self.workflows.run_workflow(
                workflow_id,
                schedule=schedule,
                poll=poll,
                poll_interval=0.5,
                path=path,
                timeout=WORKFLOW_TIMEOUT,
            )
        except AdmissionTimeout as exc:
            await self._hand_back(delivery, stats, "timeout", exc.retry_after)
            return
        finally:
            self._done_at.pop(workflow_id, None)
        await self._settle(delivery, CONVERSION, {})
        stats.processed += 1

    async def _scan(self, delivery: Delivery) -> None:
        stats = self.stats[SCANNER]
        self._delivered(stats, delivery)
        data = _data(delivery.body)
        await self.clock.sleep(self.scenario.work_seconds("scan", _file_id(data)))
        await self._settle(delivery, TITUS, {})
        stats.processed += 1

    # -- figures -------------------------------------------------------------------

    def admitted(self) -> dict[str, dict[str, int]]:
        """Admissions per stage and workload class, from the limiters themselves."""
        out: dict[str, dict[str, int]] = {}
        for stage, limiter in (
            (ENRICHMENT, self.gate.limiter),
            (CONVERSION_STAGE, self.workflows.limiter),
        ):
            snap = limiter.snapshot()
            out[stage] = {c.name: c.admitted_total for c in snap.classes}
        return out


async def _consume(
    broker: Broker,
    queue: str,
    handler: Handler,
    prefetch: int,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    await broker.consume(queue, handler, prefetch=prefetch, task_status=task_status)
