"""Hypothesis-made management-API answers, served by respx, in both request modes.

Every read answers every queue asked for: the sample the answer holds when it
is valid, else a failure of the right kind with a reason naming the request and
the field (tests/badinput/badinput_bodies.py says which); it never raises.  A
pressure monitor fed these answers never crashes: no tick fails, and the status
shows each queue's sample or its failure streak.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import pytest
import respx
from badinput_bodies import QUEUES, Expected, answer, expect_answer, list_answer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rabbitmq_helpers import BASE
from structlog.testing import capture_logs

from admission import events
from admission.monitor import PressureMonitor
from admission.policy import parse_config
from admission.registry import Registry
from admission.telemetry import ReadFailure, Reading
from admission.telemetry.rabbitmq import RabbitMQManagementSource
from admission.testing import virtual_clock

pytestmark = pytest.mark.anyio

PROFILE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIST_PATH = "/api/queues/%2F"
TRIED: Counter[str] = Counter()


def path_of(queue: str) -> str:
    return f"{LIST_PATH}/{quote(queue, safe='')}"


Answers = dict[str, tuple[int, bytes]]


@st.composite
def answers(draw: st.DrawFn, mode: str) -> Answers:
    """One answer per queue (per_queue mode), or the one list answer (list mode, key '')."""
    if mode == "list":
        return {"": draw(list_answer())}
    return {queue: draw(answer(queue)) for queue in QUEUES}


def serve(mock: respx.MockRouter, mode: str, served: Answers) -> dict[str, Expected]:
    """Route the answers; what each queue must read as at ``now=7``."""
    expected = {}
    for queue in QUEUES:
        path = LIST_PATH if mode == "list" else path_of(queue)
        status, content = served["" if mode == "list" else queue]
        mock.get(path).respond(status, content=content)
        expected[queue] = expect_answer(status, content, queue, 7.0, f"GET {path}")
    return expected


def check(got: Reading, expected: Expected, queue: str) -> None:
    if expected.sample is not None:
        assert got == expected.sample
        TRIED["sample"] += 1
        return
    assert isinstance(got, ReadFailure), (got, expected)
    assert (got.queue, got.at, got.kind) == (queue, 7.0, expected.kind), (got, expected)
    assert expected.words in got.reason, (got.reason, expected.words)
    assert len(got.reason) < 1000  # a reason, not the body
    TRIED[got.kind.value] += 1


async def _read(mode: str, served: Answers) -> None:
    TRIED[f"reads ({mode})"] += 1
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        expected = serve(mock, mode, served)
        source = RabbitMQManagementSource(mode=mode)  # type: ignore[arg-type]
        try:
            got = await source.read(QUEUES, now=7.0)
        finally:
            await source.aclose()
    assert list(got) == list(QUEUES)
    for queue in QUEUES:
        check(got[queue], expected[queue], queue)


# Everything is drawn before the test body runs: a draw inside an async test that
# runs out of data would end its task with hypothesis' StopTest, unretrieved.
@settings(PROFILE, max_examples=60)
@given(served=answers("per_queue"))
async def test_any_answer_per_queue_reads_as_its_sample_or_a_failure(served: Answers) -> None:
    await _read("per_queue", served)


@settings(PROFILE, max_examples=60)
@given(served=answers("list"))
async def test_any_list_answer_reads_as_the_samples_or_failures(served: Answers) -> None:
    await _read("list", served)


modes_and_ticks = st.sampled_from(["per_queue", "list"]).flatmap(
    lambda mode: st.tuples(st.just(mode), st.lists(answers(mode), min_size=1, max_size=6))
)


@settings(PROFILE, max_examples=20)
@given(plan=modes_and_ticks)
async def test_a_monitor_fed_any_answers_never_crashes(plan: tuple[str, list[Answers]]) -> None:
    mode, ticks = plan
    config = parse_config({"queues": [{"name": queue} for queue in QUEUES]})
    TRIED["monitor ticks"] += len(ticks)
    with virtual_clock() as clock, capture_logs() as logs:
        registry = Registry(config, clock=clock)
        source = RabbitMQManagementSource(mode=mode)  # type: ignore[arg-type]
        monitor = PressureMonitor(source, registry=registry, interval=5, jitter=0)
        streak = dict.fromkeys(QUEUES, 0)
        try:
            for served in ticks:
                with respx.mock(base_url=BASE, assert_all_called=False) as mock:
                    expected = serve(mock, mode, served)
                    assert await monitor.tick() is not None  # the engine stepped
                status = registry.status()
                for queue in QUEUES:
                    shown = status.queue(queue)
                    sample = expected[queue].sample
                    streak[queue] = 0 if sample is not None else streak[queue] + 1
                    assert shown.telemetry.consecutive_failures == streak[queue]
                    if sample is not None:
                        assert shown.queued_messages == sample.messages_ready
                    else:
                        assert expected[queue].words in (shown.telemetry.last_error or "")
                await clock.advance(5)
        finally:
            await source.aclose()
    assert monitor.statistics().failed_ticks == 0
    assert not [entry for entry in logs if entry["event"] == events.TICK_ERROR]


def test_every_kind_of_answer_was_read(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the module's other tests: samples and every failure kind came up."""
    if not TRIED:
        pytest.skip("run with the module's other tests")
    for kind in ("sample", "malformed_body", "impossible_value", "no_sample", "missing_queue"):
        assert TRIED[kind], f"no {kind} read"
    with capsys.disabled():
        print("\nbad-input management examples:", dict(sorted(TRIED.items())))
