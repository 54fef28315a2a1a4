"""ReplaySource: a recorded trace answered on the caller's clock."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from admission._trace import TraceError
from admission.telemetry import FailureKind, PressureSource, QueueSample, ReadFailure, ReplaySource

pytestmark = pytest.mark.anyio

BURST = Path(__file__).parent / "fixtures" / "rabbitmq-burst.csv"
NEW_FILE = "files-new_file"
CONVERSION = "files-document_conversion_input"
TITUS = "titus-titus_input"


def csv_row(t: float, queue: str) -> dict[str, str]:
    """The fixture's own row for (t, queue), read straight from the file."""
    with BURST.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if float(row["t"]) == t and row["queue"] == queue:
                return row
    raise AssertionError(f"no row t={t} queue={queue}")


def rows(*cells: tuple[float, str, object]) -> list[dict[str, object]]:
    return [{"t": t, "queue": q, "messages_ready": ready} for t, q, ready in cells]


async def test_the_first_read_maps_to_the_trace_start_and_time_moves_it_on() -> None:
    source = ReplaySource(BURST)
    assert isinstance(source, PressureSource)
    queues = [NEW_FILE, CONVERSION, TITUS]
    first = await source.read(queues, now=1000.0)
    assert source.start == 1000.0
    for queue in queues:
        got = first[queue]
        assert isinstance(got, QueueSample)
        assert got.sampled_at == 1000.0
        assert got.messages_ready == int(csv_row(5.0, queue)["messages_ready"])
    later = await source.read(queues, now=1035.0)  # trace t = 5 + 35 = 40
    for queue in queues:
        got = later[queue]
        want = csv_row(40.0, queue)
        assert isinstance(got, QueueSample)
        assert got.sampled_at == 1035.0
        assert got.messages_ready == int(want["messages_ready"])
        assert got.messages_unacknowledged == int(want["messages_unacknowledged"])
        assert got.consumers == int(want["consumers"])
        assert got.publish_rate == float(want["publish_rate"])
        assert got.deliver_rate == float(want["deliver_get_rate"])
    new_file = later[NEW_FILE]
    assert isinstance(new_file, QueueSample)
    assert new_file.messages_ready > 100  # the burst is on at t=40


async def test_between_rows_the_latest_row_at_or_before_the_position_answers() -> None:
    source = ReplaySource(BURST, start=0.0)
    got = (await source.read([NEW_FILE], now=34.999))[NEW_FILE]  # trace t = 39.999
    assert isinstance(got, QueueSample)
    assert got.messages_ready == int(csv_row(35.0, NEW_FILE)["messages_ready"])
    assert source.position(34.999) == pytest.approx(39.999)


async def test_empty_rates_are_unknown_not_zero() -> None:
    source = ReplaySource(BURST)
    got = (await source.read([CONVERSION], now=0.0))[CONVERSION]
    assert isinstance(got, QueueSample)
    assert csv_row(5.0, CONVERSION)["publish_rate"] == ""
    assert (got.publish_rate, got.deliver_rate, got.ack_rate) == (None, None, None)


async def test_before_a_queues_first_row_and_an_unknown_queue_are_failures() -> None:
    source = ReplaySource(rows((0, "a", 1), (10, "b", 5), (20, "a", 2)))
    readings = await source.read(["a", "b", "c"], now=50.0)
    assert isinstance(readings["a"], QueueSample)
    before = readings["b"]
    assert isinstance(before, ReadFailure)
    assert before.kind is FailureKind.NO_SAMPLE
    assert before.at == 50.0
    assert before.reason == "<rows>: no row for 'b' yet at t=0 (its first is at t=10)"
    unknown = readings["c"]
    assert isinstance(unknown, ReadFailure)
    assert unknown.kind is FailureKind.MISSING_QUEUE
    later = await source.read(["a", "b"], now=70.0)  # trace t = 20
    assert [r.messages_ready for r in later.values() if isinstance(r, QueueSample)] == [2, 5]


async def test_an_empty_ready_cell_is_a_no_sample_failure_naming_the_row() -> None:
    source = ReplaySource(rows((0, "a", 3), (5, "a", None), (10, "a", 4)))
    got = await source.read(["a"], now=0.0)
    assert isinstance(got["a"], QueueSample)
    gap = (await source.read(["a"], now=5.0))["a"]
    assert isinstance(gap, ReadFailure)
    assert gap.kind is FailureKind.NO_SAMPLE
    assert gap.reason == "<rows>:2: no messages_ready for 'a' at t=5 (empty cell)"
    back = (await source.read(["a"], now=10.0))["a"]
    assert isinstance(back, QueueSample)
    assert back.messages_ready == 4


async def test_an_explicit_start_and_reads_before_it() -> None:
    source = ReplaySource(rows((100, "a", 1), (105, "a", 2)), start=50.0)
    early = (await source.read(["a"], now=49.0))["a"]
    assert isinstance(early, ReadFailure)
    assert early.kind is FailureKind.NO_SAMPLE
    on_time = (await source.read(["a"], now=55.0))["a"]
    assert isinstance(on_time, QueueSample)
    assert on_time.messages_ready == 2
    assert source.start == 50.0


async def test_after_the_end_the_last_rows_hold_and_finished_says_so() -> None:
    source = ReplaySource(rows((0, "a", 1), (5, "a", 9)))
    await source.read(["a"], now=0.0)
    assert not source.finished(5.0)
    assert source.finished(5.5)
    got = (await source.read(["a"], now=3600.0))["a"]
    assert isinstance(got, QueueSample)
    assert (got.messages_ready, got.sampled_at) == (9, 3600.0)


async def test_loop_starts_over_after_one_period() -> None:
    source = ReplaySource(rows((0, "a", 1), (5, "a", 2), (10, "a", 3), (5, "b", 7)), loop=True)
    assert source.period == 15.0  # span 10 + one 5 s interval
    seen = []
    for now in (0.0, 5.0, 10.0, 14.0, 15.0, 20.0, 31.0):
        got = (await source.read(["a"], now=now))["a"]
        assert isinstance(got, QueueSample)
        seen.append(got.messages_ready)
    assert seen == [1, 2, 3, 3, 1, 2, 1]
    assert not source.finished(1e9)
    first = (await source.read(["b"], now=0.0))["b"]
    assert isinstance(first, ReadFailure)  # the first pass: b has no row yet
    wrapped = (await source.read(["b"], now=15.0))["b"]
    assert isinstance(wrapped, QueueSample)  # a later pass: the previous pass's row holds
    assert wrapped.messages_ready == 7


async def test_a_whole_trace_replays_row_for_row() -> None:
    source = ReplaySource(BURST, start=0.0)
    with BURST.open(newline="", encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    for row in expected:
        now = float(row["t"]) - 5.0
        got = (await source.read([row["queue"]], now=now))[row["queue"]]
        assert isinstance(got, QueueSample), row
        assert got.messages_ready == int(row["messages_ready"]), row
    assert len(expected) == 180


def test_a_bad_trace_is_refused_when_the_source_is_built(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        ReplaySource(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="start must be a finite number"):
        ReplaySource(BURST, start=float("nan"))
