"""The file_enrichment gate on the virtual clock: classification, admission, deferral, adapters."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import PurePosixPath
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from file_enrichment_helpers import NEW_FILE, FakeMessage, event, registry
from limiter_helpers import running, start_in_order
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, AdmissionError, WorkloadClass
from admission.testing import VirtualClock
from integrations.file_enrichment import (
    EXPENSIVE,
    STANDARD,
    AmqpEvent,
    FileClassifier,
    FileEnrichmentGate,
    RetryLater,
    amqp_consumer,
    dapr_subscription,
)
from integrations.file_enrichment.amqp import HANDLER_FAILED
from integrations.file_enrichment.classify import UNCLASSIFIED

pytestmark = pytest.mark.anyio

# -- classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/a.ZIP", EXPENSIVE),
        ("C:\\Temp\\SETUP.EXE", EXPENSIVE),  # Windows separators, any case
        ("archive.7z", EXPENSIVE),
        ("disk.vhdx", EXPENSIVE),
        ("  image.iso  ", EXPENSIVE),
        (PurePosixPath("/lib/x.dll"), EXPENSIVE),  # os.PathLike
        (b"/raw/y.rar", EXPENSIVE),
        ("report.pdf", STANDARD),
        ("backup.tar.gz", STANDARD),  # not listed by the preset
        ("dir.zip/readme.txt", STANDARD),  # only the last component counts
        ("/home/u/.zip", STANDARD),  # a dotfile named like the extension has none
        ("zip", STANDARD),
    ],
)
async def test_the_preset_extensions_classify(path: object, expected: str) -> None:
    gate = FileEnrichmentGate(registry())
    assert gate.classify(event(path)) == expected
    assert gate.classify(SimpleNamespace(data=SimpleNamespace(path=path))) == expected


async def test_the_extensions_are_config_or_given() -> None:
    configured = FileEnrichmentGate(registry(classes={"expensive": {"extensions": [".bin"]}}))
    assert configured.classifier is not None
    assert configured.classifier.extensions == (".bin",)
    assert configured.classify(event("fw.BIN")) == EXPENSIVE
    assert configured.classify(event("a.zip")) == STANDARD

    given = FileEnrichmentGate(registry(), extensions=["tar.gz", ".PDF", ".pdf"])
    assert given.classifier is not None
    assert given.classifier.extensions == (".tar.gz", ".pdf")
    assert [given.classify(event(p)) for p in ("b.tar.gz", "c.Pdf", "d.gz", "e.zip")] == [
        EXPENSIVE,
        EXPENSIVE,
        STANDARD,
        STANDARD,
    ]


async def test_bad_extensions_and_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"extensions\[1\]='': not a file extension"):
        FileClassifier([".zip", ""])
    with pytest.raises(ValueError, match=r"extensions\[0\]='a/b': not a file extension"):
        FileClassifier(["a/b"])
    with pytest.raises(TypeError, match=r"got the string '\.zip'"):
        FileClassifier(".zip")
    with pytest.raises(TypeError, match=r"extensions\[0\]=3"):
        FileClassifier([3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_wait must be a finite number >= 0, got -1"):
        FileEnrichmentGate(registry(), max_wait=-1)
    with pytest.raises(ValueError, match="not both"):
        FileEnrichmentGate(registry(), extensions=[".zip"], classify=lambda e: STANDARD)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"type": "new_file"}, "event.data is missing"),
        ({"data": None}, "event.data is missing"),
        ({"data": {"size": 3}}, "event.data.path is missing (event.data={'size': 3})"),
        ({"data": {"path": 42}}, "event.data.path=42: not a file path"),
        ({"data": {"path": "  "}}, "event.data.path='  ': empty"),
        ("not an event", "event.data is missing (event='not an event')"),
    ],
)
async def test_an_event_without_a_usable_path_is_standard_and_logged(
    body: object, problem: str
) -> None:
    gate = FileEnrichmentGate(registry())
    with capture_logs() as logs:
        assert gate.classify(body) == STANDARD
    assert len(logs) == 1
    assert logs[0]["event"] == UNCLASSIFIED
    assert logs[0]["log_level"] == "warning"
    assert problem in logs[0]["problem"]


# -- the gate and its limiter -----------------------------------------------------------


async def test_the_gate_registers_a_limiter_the_policy_retunes() -> None:
    reg = registry()
    gate = FileEnrichmentGate(reg)
    assert reg.limiters == {"file_enrichment": gate.limiter}
    expensive = gate.limiter.snapshot().workload_class(EXPENSIVE)
    assert (expensive.max_concurrency, expensive.rate, expensive.minimum_floor) == (1, 2.0, 1)
    assert gate.limiter.snapshot().workload_class(STANDARD).max_concurrency == 3
    reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=60)
    assert gate.limiter.snapshot().workload_class(EXPENSIVE).rate == 0.5
    # The limiter-wide bucket never binds before the classes' own limits (12 = 8 + 4, aggressive).
    assert (gate.limiter.rate, gate.limiter.burst, gate.limiter.max_concurrency) == (12, 12, None)
    with pytest.raises(ValueError, match="'file_enrichment' is already registered"):
        FileEnrichmentGate(reg)


async def test_a_limiter_of_your_own() -> None:
    reg = registry()
    own = AdaptiveLimiter("mine", rate=10, burst=10, classes=[STANDARD, EXPENSIVE])
    reg.add_limiter(own)
    gate = FileEnrichmentGate(reg, limiter=own)  # already registered: kept as is
    assert gate.limiter is own
    assert reg.limiters == {"mine": own}
    other = AdaptiveLimiter("mine", rate=10, burst=10, classes=[STANDARD, EXPENSIVE])
    with pytest.raises(ValueError, match="another limiter named 'mine'"):
        FileEnrichmentGate(reg, limiter=other)
    plain = AdaptiveLimiter("plain", rate=1, burst=1)
    with pytest.raises(ValueError, match=r"lacks workload class\(es\) \['expensive', 'standard'\]"):
        FileEnrichmentGate(reg, limiter=plain)
    bulk = AdaptiveLimiter("bulk", rate=1, burst=1, classes=[WorkloadClass("bulk")])
    governed = registry()
    governed.add_limiter(bulk, follows=EXPENSIVE)  # the whole limiter follows one class
    gate = FileEnrichmentGate(governed, limiter=bulk, classify=lambda e: "bulk")
    async with gate.admit(event("a.zip")) as permit:
        assert permit.workload_class == "bulk"
    unknown = FileEnrichmentGate(registry(), classify=lambda e: "huge")
    with pytest.raises(ValueError, match="unknown workload_class 'huge'"):
        async with unknown.admit(event("a.zip")):
            pass


async def test_the_decorator_admits_and_keeps_the_handler() -> None:
    gate = FileEnrichmentGate(registry())
    seen: list[tuple[str, int]] = []

    @gate
    async def enrich(event: dict[str, Any], *, attempt: int = 0) -> str:
        """Enrich one file."""
        in_flight = gate.limiter.snapshot().workload_class(gate.classify(event)).in_flight
        seen.append((event["data"]["path"], in_flight))
        return f"{event['data']['path']}#{attempt}"

    assert enrich.__name__ == "enrich"
    assert enrich.__doc__ == "Enrich one file."
    assert enrich.__wrapped__ is not None  # type: ignore[attr-defined]
    assert await enrich(event("a.zip"), attempt=2) == "a.zip#2"
    assert await gate.handler(enrich.__wrapped__)(event("b.txt")) == "b.txt#0"  # type: ignore[attr-defined]
    assert seen == [("a.zip", 1), ("b.txt", 1)]
    snap = gate.limiter.snapshot()
    assert [(c.name, c.admitted_total, c.in_flight) for c in snap.classes] == [
        (STANDARD, 1, 0),
        (EXPENSIVE, 1, 0),
    ]

    def not_async(event: object) -> None: ...

    with pytest.raises(TypeError, match="can only gate an async def"):
        gate(not_async)  # type: ignore[arg-type]


# -- waiting, timing out, deferring -------------------------------------------------------


class Run:
    """Submits events through a gated handler that holds each for ``hold`` virtual seconds."""

    def __init__(self, gate: FileEnrichmentGate, clock: VirtualClock, hold: float) -> None:
        self.clock = clock
        self.ran: list[tuple[str, float]] = []
        self.outcomes: list[tuple[Any, ...]] = []

        @gate
        async def handle(event: dict[str, Any]) -> str:
            self.ran.append((event["data"]["path"], clock.monotonic()))
            await clock.sleep(hold)
            return "done"

        self.handle = handle

    async def submit(self, path: str) -> None:
        try:
            self.outcomes.append((path, await self.handle(event(path)), self.clock.monotonic()))
        except RetryLater as exc:
            self.outcomes.append(
                (path, exc.reason, exc.workload_class, exc.retry_after, self.clock.monotonic())
            )

    def jobs(self, *paths: str) -> list[partial[Any]]:
        return [partial(self.submit, path) for path in paths]


async def test_not_admitted_within_max_wait_is_retry_later_and_counted(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()  # normal: expensive runs one at a time, nothing deferred
    gate = FileEnrichmentGate(reg, max_wait=2)
    run = Run(gate, admission_clock, hold=10)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *run.jobs("a.zip", "b.zip"))
        await admission_clock.advance(10)
        await start_in_order(admission_clock, tg, *run.jobs("c.zip", "d.zip"))
        await admission_clock.advance(30)
    assert run.ran == [("a.zip", 0.0), ("c.zip", 10.0)]
    assert run.outcomes == [
        # No hold measured yet: a slot is expected after 1 / rate.
        ("b.zip", "timeout", EXPENSIVE, 0.5, 2.0),
        ("a.zip", "done", 10.0),
        # a.zip held its slot 10 s: so will c.zip.
        ("d.zip", "timeout", EXPENSIVE, 10.0, 12.0),
        ("c.zip", "done", 20.0),
    ]
    cls = reg.status().workload_class(EXPENSIVE)
    assert (cls.level, cls.deferred_admission, cls.deferred_total) == ("normal", False, 2)
    assert cls.limiters[0].timed_out_total == 2
    assert cls.limiters[0].admitted_total == 2
    assert reg.status().workload_class(STANDARD).deferred_total == 0


async def test_a_waiter_admitted_within_max_wait_runs(admission_clock: VirtualClock) -> None:
    reg = registry()
    gate = FileEnrichmentGate(reg, max_wait=2)
    run = Run(gate, admission_clock, hold=1.5)
    async with running() as tg:
        await start_in_order(admission_clock, tg, *run.jobs("a.zip", "b.iso"))
        await admission_clock.advance(10)
    assert run.ran == [("a.zip", 0.0), ("b.iso", 1.5)]
    assert reg.status().workload_class(EXPENSIVE).deferred_total == 0


async def test_deferred_admission_hands_back_at_once_and_keeps_the_floor_staffed(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()
    reg.add_override("class", EXPENSIVE, level="warning", ttl_seconds=600)
    gate = FileEnrichmentGate(reg, max_wait=30)
    run = Run(gate, admission_clock, hold=5)
    async with running() as tg:
        jobs = run.jobs("a.zip", "b.zip", "c.zip", "s1.txt", "s2.txt", "s3.txt")
        await start_in_order(admission_clock, tg, *jobs)
        assert admission_clock.monotonic() == 0.0
        waiting = gate.limiter.snapshot().workload_class(EXPENSIVE).waiting
        await admission_clock.advance(20)
    assert waiting == 1  # b.zip: the floor's next one, held by the gate
    # c.zip is handed back at t=0, without waiting: 1 s for a token (rate 1), and
    # two slot turns (b.zip's and its own) at one per second.
    assert run.outcomes[0] == ("c.zip", "deferred", EXPENSIVE, 2.0, 0.0)
    assert sorted(run.ran) == [
        ("a.zip", 0.0),
        ("b.zip", 5.0),  # the moment a.zip's slot freed
        ("s1.txt", 0.0),  # standard keeps flowing: all three at once
        ("s2.txt", 0.0),
        ("s3.txt", 0.0),
    ]
    cls = reg.status().workload_class(EXPENSIVE)
    assert (cls.level, cls.deferred_admission, cls.deferred_total) == ("warning", True, 1)
    assert cls.limiters[0].timed_out_total == 0


@pytest.mark.parametrize("how", ["queue critical", "monitor stopped"])
async def test_critical_and_fail_safe_defer_expensive_while_standard_flows(
    admission_clock: VirtualClock, how: str
) -> None:
    reg = registry()
    gate = FileEnrichmentGate(reg, max_wait=30)
    if how == "queue critical":
        reg.add_override("queue", NEW_FILE, level="critical", ttl_seconds=600)
    else:
        reg.governor_stopped("crashed")
    run = Run(gate, admission_clock, hold=5)
    async with running() as tg:
        jobs = run.jobs("a.7z", "b.7z", "c.7z", "d.7z", "s.txt")
        await start_in_order(admission_clock, tg, *jobs)
        await admission_clock.advance(0)
    assert [o[:2] for o in run.outcomes] == [("c.7z", "deferred"), ("d.7z", "deferred")]
    assert {path for path, at in run.ran} == {"a.7z", "s.txt"}
    cls = reg.status().workload_class(EXPENSIVE)
    assert cls.level == ("critical" if how == "queue critical" else "fail_safe")
    assert (cls.active_parallelism, cls.deferred_admission, cls.deferred_total) == (1, True, 2)


async def test_retry_later_is_an_admission_error_that_pickles() -> None:
    exc = RetryLater(1.5, workload_class=EXPENSIVE, reason="deferred", limiter="file_enrichment")
    assert isinstance(exc, AdmissionError)
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.retry_after, copy.workload_class, copy.reason, copy.limiter) == (
        1.5,
        EXPENSIVE,
        "deferred",
        "file_enrichment",
    )
    assert str(copy) == (
        "'expensive' work not admitted (deferred) by limiter 'file_enrichment'; retry after 1.500s"
    )


# -- Dapr -------------------------------------------------------------------------------


async def test_a_dapr_handler_answers_success_retry_or_its_own_status(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()
    reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600)
    gate = FileEnrichmentGate(reg, max_wait=0)
    calls: list[str] = []

    @dapr_subscription(gate)
    async def on_new_file(event: dict[str, Any]) -> object:
        """Dapr calls this."""
        path = event["data"]["path"]
        calls.append(path)
        if path.startswith("drop"):
            return {"status": "DROP"}
        if path.startswith("later"):
            raise RetryLater(3, workload_class=STANDARD, reason="deferred")
        if path.startswith("boom"):
            raise RuntimeError("corrupt file")
        return {"size": 3}  # not a status: SUCCESS

    assert on_new_file.__name__ == "on_new_file"
    assert on_new_file.__doc__ == "Dapr calls this."
    assert await on_new_file(event("a.zip")) == {"status": "SUCCESS"}
    await admission_clock.advance(2)  # critical: one token per 2 s
    held = await gate.limiter.acquire(workload_class=EXPENSIVE)  # the one slot is busy
    assert await on_new_file(event("b.zip")) == {"status": "RETRY"}
    held.release()
    assert await on_new_file(event("drop.txt")) == {"status": "DROP"}
    assert await on_new_file(event("later.txt")) == {"status": "RETRY"}
    with pytest.raises(RuntimeError, match="corrupt file"):
        await on_new_file(event("boom.txt"))
    assert calls == ["a.zip", "drop.txt", "later.txt", "boom.txt"]  # b.zip never ran
    assert reg.status().workload_class(EXPENSIVE).deferred_total == 1

    with pytest.raises(TypeError, match="can only wrap an async def"):
        dapr_subscription(gate)(lambda event: None)  # type: ignore[arg-type, return-value]


# -- AMQP (the adapter with a stand-in message; the real broker is test_file_enrichment_rabbitmq)


def cloud_event(path: str) -> bytes:
    return (
        b'{"specversion": "1.0", "id": "e-1", "type": "new_file", "data": {"path": "'
        + path.encode()
        + b'"}}'
    )


async def test_amqp_acks_what_ran_and_requeues_what_was_handed_back(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()
    reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600)
    gate = FileEnrichmentGate(reg, max_wait=0)
    seen: list[AmqpEvent] = []

    async def enrich(event: AmqpEvent) -> None:
        seen.append(event)

    consumer = amqp_consumer(gate, enrich)
    ok = FakeMessage(cloud_event("a.zip"))
    await consumer(ok)  # type: ignore[arg-type]
    assert ok.settled == ["ack"]
    assert seen[0].data == {"path": "a.zip"}
    assert seen[0].attributes == {"specversion": "1.0", "id": "e-1", "type": "new_file"}
    assert seen[0].message is ok  # type: ignore[comparison-overlap]

    await admission_clock.advance(2)  # critical: one token per 2 s
    held = await gate.limiter.acquire(workload_class=EXPENSIVE)
    deferred = FakeMessage(cloud_event("b.zip"))
    await consumer(deferred)  # type: ignore[arg-type]
    held.release()
    assert deferred.settled == ["nack(requeue=True)"]
    assert len(seen) == 1
    await admission_clock.advance(2)
    again = FakeMessage(cloud_event("b.zip"), redelivered=True)
    await consumer(again)  # type: ignore[arg-type]
    assert again.settled == ["ack"]

    raw = FakeMessage(b"\xff not json")
    record = FakeMessage(b'{"path": "c.txt"}')  # a bare record: it is the data
    await consumer(raw)  # type: ignore[arg-type]
    await consumer(record)  # type: ignore[arg-type]
    assert [e.data for e in seen[2:]] == [b"\xff not json", {"path": "c.txt"}]
    assert (raw.settled, record.settled) == (["ack"], ["ack"])
    counts = (consumer.acked_total, consumer.requeued_total, consumer.redelivered_total)
    assert counts == (4, 1, 1)
    assert reg.status().workload_class(EXPENSIVE).deferred_total == 1


async def test_amqp_requeues_a_failed_handler_and_logs_it() -> None:
    gate = FileEnrichmentGate(registry())

    async def broken(event: AmqpEvent) -> None:
        raise ValueError(f"cannot parse {event.data['path']}")

    requeue = amqp_consumer(gate, broken)
    dead_letter = amqp_consumer(gate, broken, requeue_failed=False)
    first, second = FakeMessage(cloud_event("x.pdf")), FakeMessage(cloud_event("y.pdf"))
    with capture_logs() as logs:
        await requeue(first)  # type: ignore[arg-type]
        await dead_letter(second)  # type: ignore[arg-type]
    assert first.settled == ["nack(requeue=True)"]
    assert second.settled == ["reject(requeue=False)"]
    assert (requeue.failed_total, requeue.acked_total) == (1, 0)
    assert [log["event"] for log in logs] == [HANDLER_FAILED, HANDLER_FAILED]
    assert logs[0]["error"] == "ValueError: cannot parse x.pdf"
    assert (logs[0]["message_id"], logs[0]["requeue"], logs[1]["requeue"]) == ("m-1", True, False)
    assert gate.limiter.in_flight == 0


async def test_amqp_leaves_a_message_the_handler_settled_and_nacks_on_cancel(
    admission_clock: VirtualClock,
) -> None:
    gate = FileEnrichmentGate(registry())

    async def settles_itself(event: AmqpEvent) -> None:
        await event.message.reject(requeue=False)

    own = FakeMessage(cloud_event("a.txt"))
    await amqp_consumer(gate, settles_itself)(own)  # type: ignore[arg-type]
    assert own.settled == ["reject(requeue=False)"]

    async def slow(event: AmqpEvent) -> None:
        await admission_clock.sleep(60)

    cancelled = FakeMessage(cloud_event("b.txt"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(amqp_consumer(gate, slow), cancelled)  # type: ignore[arg-type]
        await admission_clock.advance(1)
        tg.cancel_scope.cancel()
    assert cancelled.settled == ["nack(requeue=True)"]
    assert gate.limiter.in_flight == 0


async def test_amqp_requeue_delay_holds_a_deferred_message_first(
    admission_clock: VirtualClock,
) -> None:
    reg = registry()
    reg.add_override("class", EXPENSIVE, level="critical", ttl_seconds=600)
    gate = FileEnrichmentGate(reg, max_wait=0)

    async def enrich(event: AmqpEvent) -> None:
        pass

    held = await gate.limiter.acquire(workload_class=EXPENSIVE)
    short, long = FakeMessage(cloud_event("a.zip")), FakeMessage(cloud_event("b.zip"))
    nacked_at: list[float] = []

    async def consume(message: FakeMessage, delay: float) -> None:
        await amqp_consumer(gate, enrich, requeue_delay=delay)(message)  # type: ignore[arg-type]
        nacked_at.append(admission_clock.monotonic())

    async with running() as tg:
        # Critical: rate 0.5 and no hold measured, so retry_after is 2 s.
        await start_in_order(admission_clock, tg, partial(consume, short, 0.5))
        await start_in_order(admission_clock, tg, partial(consume, long, 30))
        await admission_clock.advance(10)
    held.release()
    assert nacked_at == [0.5, 2.0]
    assert short.settled == long.settled == ["nack(requeue=True)"]
    with pytest.raises(ValueError, match="requeue_delay must be a finite number >= 0"):
        amqp_consumer(gate, enrich, requeue_delay=-1)
