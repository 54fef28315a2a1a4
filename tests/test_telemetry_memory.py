"""MemorySource: static values, callables, failure injection; never raises, never zeroes."""

from __future__ import annotations

import asyncio
import math

import anyio
import pytest

from admission.telemetry import FailureKind, MemorySource, PressureSource, QueueSample, ReadFailure

pytestmark = pytest.mark.anyio

NEW_FILE = "files-new_file"
TITUS = "titus-titus_input"


async def sample(source: MemorySource, queue: str, now: float = 10.0) -> QueueSample:
    reading = (await source.read([queue], now=now))[queue]
    assert isinstance(reading, QueueSample), reading
    return reading


async def failure(source: MemorySource, queue: str, now: float = 10.0) -> ReadFailure:
    reading = (await source.read([queue], now=now))[queue]
    assert isinstance(reading, ReadFailure), reading
    return reading


# -- values and callables -----------------------------------------------------------


async def test_static_values_are_read_back_stamped_with_now() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 250, unacked=4, consumers=2, publish_rate=3.5, ack_rate=1.0)
    got = await sample(source, NEW_FILE, now=42.5)
    assert got == QueueSample(
        NEW_FILE, 42.5, 250, 4, 2, publish_rate=3.5, deliver_rate=None, ack_rate=1.0
    )
    assert isinstance(source, PressureSource)


async def test_set_changes_only_the_fields_given_and_none_makes_a_field_unknown() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 10, unacked=3, consumers=1)
    source.set(NEW_FILE, 20)
    got = await sample(source, NEW_FILE)
    assert (got.messages_ready, got.messages_unacknowledged, got.consumers) == (20, 3, 1)
    source.set(NEW_FILE, unacked=None)
    got = await sample(source, NEW_FILE)
    assert (got.messages_ready, got.messages_unacknowledged, got.consumers) == (20, None, 1)


async def test_callables_are_read_at_every_read() -> None:
    backlog = [5]
    in_flight = {"n": 0}
    source = MemorySource()
    source.watch(NEW_FILE, ready=lambda: backlog[0], unacked=lambda: in_flight["n"])
    source.set(NEW_FILE, consumers=3)
    assert (await sample(source, NEW_FILE)).messages_ready == 5
    backlog[0], in_flight["n"] = 70, 4
    got = await sample(source, NEW_FILE, now=15.0)
    assert (got.messages_ready, got.messages_unacknowledged, got.consumers) == (70, 4, 3)
    assert got.sampled_at == 15.0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_asyncio_queue_qsize_is_a_ready_count() -> None:
    work: asyncio.Queue[str] = asyncio.Queue()
    source = MemorySource()
    source.watch(NEW_FILE, ready=work.qsize)
    assert (await sample(source, NEW_FILE)).messages_ready == 0
    for name in ("a.zip", "b.pdf", "c.exe"):
        work.put_nowait(name)
    assert (await sample(source, NEW_FILE)).messages_ready == 3
    work.get_nowait()
    assert (await sample(source, NEW_FILE)).messages_ready == 2


async def test_a_whole_sample_callable_with_per_field_overrides() -> None:
    source = MemorySource()
    source.watch(
        NEW_FILE,
        sample=lambda: {"messages_ready": 9, "consumers": 2, "deliver_rate": 1.5, "health": "ok"},
    )
    got = await sample(source, NEW_FILE)
    assert (got.messages_ready, got.consumers, got.deliver_rate) == (9, 2, 1.5)
    source.set(NEW_FILE, consumers=5)  # a field set one by one wins over the mapping
    assert (await sample(source, NEW_FILE)).consumers == 5


async def test_a_sample_callable_may_return_a_queue_sample_which_is_restamped() -> None:
    source = MemorySource()
    given = QueueSample("elsewhere", 1.0, 12, 3, 1, health="degraded")
    source.watch(NEW_FILE, sample=lambda: given)
    got = await sample(source, NEW_FILE, now=99.0)
    assert got == QueueSample(NEW_FILE, 99.0, 12, 3, 1, health="degraded")


async def test_counts_given_as_whole_floats_become_ints() -> None:
    source = MemorySource()
    source.watch(NEW_FILE, ready=lambda: 7.0)
    got = await sample(source, NEW_FILE)
    assert got.messages_ready == 7
    assert type(got.messages_ready) is int


# -- what is not a sample -------------------------------------------------------------


async def test_every_queue_asked_gets_an_answer_and_unknown_ones_are_missing() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 1)
    readings = await source.read([NEW_FILE, "nope", NEW_FILE], now=3.0)
    assert list(readings) == [NEW_FILE, "nope"]
    missing = readings["nope"]
    assert isinstance(missing, ReadFailure)
    assert (missing.kind, missing.at) == (FailureKind.MISSING_QUEUE, 3.0)
    assert "nope" in missing.reason
    source.remove(NEW_FILE)
    assert (await failure(source, NEW_FILE)).kind is FailureKind.MISSING_QUEUE
    assert source.queues == ()


async def test_a_queue_without_a_ready_count_is_no_sample_not_zero() -> None:
    source = MemorySource()
    source.set(NEW_FILE, unacked=3)
    got = await failure(source, NEW_FILE)
    assert got.kind is FailureKind.NO_SAMPLE
    assert "messages_ready" in got.reason
    source.watch(TITUS, ready=lambda: None)
    assert (await failure(source, TITUS)).kind is FailureKind.NO_SAMPLE


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (-1, "-1 is not a finite number >= 0"),
        (math.nan, "nan is not a finite number >= 0"),
        (math.inf, "inf is not a finite number >= 0"),
        ("12", "'12' is not a number"),
        (True, "True is not a number"),
        (2.5, "2.5 is not a whole number"),
    ],
)
async def test_a_bad_callable_value_is_impossible_naming_queue_and_field(
    value: object, words: str
) -> None:
    source = MemorySource()
    source.set(TITUS, 1)
    source.set(NEW_FILE, 1)
    source.watch(NEW_FILE, unacked=lambda: value)
    readings = await source.read([NEW_FILE, TITUS], now=1.0)
    got = readings[NEW_FILE]
    assert isinstance(got, ReadFailure)
    assert got.kind is FailureKind.IMPOSSIBLE_VALUE
    assert got.reason == f"{NEW_FILE}: messages_unacknowledged={words}"
    assert isinstance(readings[TITUS], QueueSample)  # one bad queue spoils no other


async def test_a_negative_rate_from_a_whole_sample_is_impossible() -> None:
    source = MemorySource()
    source.watch(NEW_FILE, sample=lambda: {"messages_ready": 1, "ack_rate": -0.5})
    got = await failure(source, NEW_FILE)
    assert got.kind is FailureKind.IMPOSSIBLE_VALUE
    assert "ack_rate=-0.5" in got.reason


async def test_a_raising_callable_is_a_source_error_naming_the_exception() -> None:
    def broken() -> int:
        raise RuntimeError("the counter is gone")

    source = MemorySource()
    source.watch(NEW_FILE, ready=lambda: 1, consumers=broken)
    got = await failure(source, NEW_FILE)
    assert got.kind is FailureKind.SOURCE_ERROR
    assert got.reason == (
        f"{NEW_FILE}: the consumers callable raised RuntimeError: the counter is gone"
    )


@pytest.mark.parametrize(
    ("returned", "words"),
    [
        ([1, 2], "returned list, expected a mapping"),
        ({"messages_ready": 1, "depth": 2}, "unknown field(s) depth"),
        ({"messages_ready": 1, "health": "fine"}, "health='fine'"),
    ],
)
async def test_a_whole_sample_of_the_wrong_shape_is_malformed(returned: object, words: str) -> None:
    source = MemorySource()
    source.watch(NEW_FILE, sample=lambda: returned)  # type: ignore[arg-type,return-value]
    got = await failure(source, NEW_FILE)
    assert got.kind is FailureKind.MALFORMED
    assert words in got.reason


def test_bad_static_values_and_registrations_raise_at_once() -> None:
    source = MemorySource()
    with pytest.raises(ValueError, match="messages_ready=-3"):
        source.set(NEW_FILE, -3)
    with pytest.raises(TypeError, match="consumers='2' is not a number"):
        source.set(NEW_FILE, 1, consumers="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ready must be a callable"):
        source.watch(NEW_FILE, ready=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times must be"):
        source.fail(NEW_FILE, times=0)
    assert source.queues == ()


# -- failure injection --------------------------------------------------------------


async def test_fail_times_n_fails_exactly_n_reads_then_heals_itself() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 30)
    source.set(TITUS, 4)
    source.fail(NEW_FILE, FailureKind.HTTP_STATUS, "HTTP 503", times=2)
    kinds = []
    for now in (1.0, 2.0, 3.0):
        readings = await source.read([NEW_FILE, TITUS], now=now)
        kinds.append(type(readings[NEW_FILE]).__name__)
        assert isinstance(readings[TITUS], QueueSample)
    assert kinds == ["ReadFailure", "ReadFailure", "QueueSample"]
    source.fail(NEW_FILE, times=1)
    got = await failure(source, NEW_FILE, now=4.0)
    assert (got.kind, got.reason, got.at) == (
        FailureKind.TIMEOUT,
        "injected failure (timeout)",
        4.0,
    )
    assert (await sample(source, NEW_FILE)).messages_ready == 30


async def test_fail_without_times_lasts_until_heal_even_for_unknown_queues() -> None:
    source = MemorySource()
    source.fail("later", FailureKind.MISSING_QUEUE, "no such queue")
    for now in range(5):
        got = await failure(source, "later", now=float(now))
        assert (got.kind, got.reason) == (FailureKind.MISSING_QUEUE, "no such queue")
    source.heal("later")
    source.set("later", 2)
    assert (await sample(source, "later")).messages_ready == 2


async def test_fail_all_is_an_outage_counted_in_reads_and_heal_all_ends_everything() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 1)
    source.set(TITUS, 2)
    source.fail(TITUS, FailureKind.MALFORMED, "bad body")
    source.fail_all(FailureKind.CONNECTION, "connection refused", times=2)
    for now in (1.0, 2.0):
        readings = await source.read([NEW_FILE, TITUS], now=now)
        assert {r.kind for r in readings.values() if isinstance(r, ReadFailure)} == {
            FailureKind.CONNECTION
        }
        assert len(readings) == 2
    readings = await source.read([NEW_FILE, TITUS], now=3.0)
    assert isinstance(readings[NEW_FILE], QueueSample)
    titus = readings[TITUS]
    assert isinstance(titus, ReadFailure)
    assert titus.kind is FailureKind.MALFORMED  # the queue's own injection is still there
    source.fail_all()
    assert (await failure(source, NEW_FILE)).kind is FailureKind.CONNECTION
    source.heal_all()
    readings = await source.read([NEW_FILE, TITUS], now=4.0)
    assert all(isinstance(r, QueueSample) for r in readings.values())
    assert source.reads == 5


async def test_read_is_a_checkpoint_so_a_cancelled_poller_stops_there() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 1)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await source.read([NEW_FILE], now=1.0)
        pytest.fail("read() returned inside a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    assert source.reads == 0


async def test_aclose_releases_nothing_and_the_source_reads_on() -> None:
    source = MemorySource()
    source.set(NEW_FILE, 8)
    await source.aclose()
    assert (await sample(source, NEW_FILE)).messages_ready == 8
    assert repr(source) == "MemorySource(queues=['files-new_file'])"


async def test_callables_run_on_every_backend_with_a_shared_counter() -> None:
    counter = 0

    def bump() -> int:
        nonlocal counter
        counter += 1
        return counter

    source = MemorySource()
    source.watch(NEW_FILE, ready=bump)
    got: list[int] = []

    async def poll(now: float) -> None:
        got.append((await sample(source, NEW_FILE, now=now)).messages_ready)

    async with anyio.create_task_group() as group:
        for now in range(4):
            group.start_soon(poll, float(now))
    assert sorted(got) == [1, 2, 3, 4]
