"""RabbitMQManagementSource reading real and broken bodies (respx serves them)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
import respx
from rabbitmq_helpers import BASE, CONVERSION, NEW_FILE, TITUS, WHERE, body, fails, read_one

from admission.telemetry import FailureKind, QueueSample, ReadFailure
from admission.telemetry.rabbitmq import (
    AUTO_CROSSOVER,
    FILTER_MAX_QUEUES,
    RabbitMQManagementSource,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


# -- real bodies ----------------------------------------------------------------------


async def test_a_real_answer_in_the_burst_is_read_field_by_field(mock: respx.MockRouter) -> None:
    got = await read_one(mock, httpx.Response(200, json=body("queue-files-new_file-t40.json")))
    assert got == QueueSample(NEW_FILE, 7.0, 477, 10, 2, 50.8, 10.0, 10.0, health="ok")
    request = mock.routes[0].calls.last.request
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"guest:guest").decode()
    assert request.url.params["columns"].split(",")[:3] == [
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]


async def test_absent_message_stats_means_unknown_rates_not_zero(mock: respx.MockRouter) -> None:
    answer = body("queue-files-new_file-t0.json")
    del answer["message_stats"]
    got = await read_one(mock, httpx.Response(200, json=answer))
    assert got == QueueSample(NEW_FILE, 7.0, 0, 0, 0, None, None, None)


async def test_an_absent_details_block_leaves_only_that_rate_unknown(
    mock: respx.MockRouter,
) -> None:
    answer = body("queue-files-new_file-t70.json")
    del answer["message_stats"]["ack_details"]
    got = await read_one(mock, httpx.Response(200, json=answer))
    assert isinstance(got, QueueSample)
    assert (got.publish_rate, got.deliver_rate, got.ack_rate) == (3.2, 10.0, None)


async def test_a_queue_the_broker_has_no_stats_for_yet_is_no_sample(
    mock: respx.MockRouter,
) -> None:
    # What RabbitMQ answers for a queue declared a moment ago: no counts at all.
    answer = {"name": NEW_FILE, "durable": True, "vhost": "/", "consumer_details": []}
    got = await fails(mock, httpx.Response(200, json=answer))
    assert got.kind is FailureKind.NO_SAMPLE
    assert "no messages_ready in the answer" in got.reason


async def test_a_queue_that_is_not_running_gives_a_degraded_sample(
    mock: respx.MockRouter,
) -> None:
    answer = body("queue-titus-titus_input-t40.json") | {"name": NEW_FILE, "state": "down"}
    got = await read_one(mock, httpx.Response(200, json=answer))
    assert isinstance(got, QueueSample)
    assert (got.health, got.messages_ready) == ("degraded", 56)


async def test_list_mode_asks_the_broker_for_the_queues_and_picks_them_exactly(
    mock: respx.MockRouter,
) -> None:
    route = mock.get("/api/queues/%2F").respond(200, json=body("queues-list.json"))
    source = RabbitMQManagementSource(mode="list")
    readings = await source.read([TITUS, NEW_FILE, "Files-New_File"], now=3.0)
    await source.aclose()
    titus, new_file, other_case = readings.values()
    assert titus == QueueSample(TITUS, 3.0, 0, 1, 1, 0.4, 0.4, 0.4)
    assert new_file == QueueSample(NEW_FILE, 3.0, 0, 1, 2, 3.2, 3.2, 3.2)
    assert isinstance(other_case, ReadFailure)
    assert other_case.kind is FailureKind.MISSING_QUEUE
    assert other_case.reason == "GET /api/queues/%2F: no queue 'Files-New_File' in vhost '/'"
    params = route.calls.last.request.url.params
    assert params["use_regex"] == "true"
    assert params["name"] == r"^(?:titus\-titus_input|files\-new_file|Files\-New_File)$"


async def test_list_mode_reads_the_paginated_answer_and_the_whole_list(
    mock: respx.MockRouter,
) -> None:
    items = body("queues-list.json")
    route = mock.get("/api/queues/%2F")
    route.return_value = httpx.Response(200, json={"items": items, "page": 1, "page_count": 1})
    source = RabbitMQManagementSource(mode="list")
    first = await source.read([CONVERSION], now=1.0)
    source.server_filter_limit = 0  # too long a filter: the whole list comes
    route.return_value = httpx.Response(200, json=items)
    second = await source.read([CONVERSION], now=2.0)
    await source.aclose()
    assert first[CONVERSION] == QueueSample(CONVERSION, 1.0, 0, 1, 1, 0.6, 0.6, 0.8)
    assert second[CONVERSION] == QueueSample(CONVERSION, 2.0, 0, 1, 1, 0.6, 0.6, 0.8)
    assert "name" not in route.calls.last.request.url.params


async def test_many_queues_take_the_whole_list_which_is_cheaper_then(
    mock: respx.MockRouter,
) -> None:
    route = mock.get("/api/queues/%2F").respond(200, json=body("queues-list.json"))
    source = RabbitMQManagementSource(mode="list")
    names = [NEW_FILE, *(f"q{i}" for i in range(FILTER_MAX_QUEUES))]
    readings = await source.read(names, now=1.0)
    await source.aclose()
    assert "name" not in route.calls.last.request.url.params
    assert isinstance(readings[NEW_FILE], QueueSample)
    assert sum(isinstance(r, ReadFailure) for r in readings.values()) == FILTER_MAX_QUEUES


async def test_auto_mode_switches_to_the_list_above_the_measured_crossover(
    mock: respx.MockRouter,
) -> None:
    listed = mock.get("/api/queues/%2F").respond(200, json=[])
    each = mock.get(url__regex=rf"{BASE}/api/queues/%2F/q\d+").respond(404)
    source = RabbitMQManagementSource()
    few = [f"q{i}" for i in range(AUTO_CROSSOVER)]
    many = [f"q{i}" for i in range(AUTO_CROSSOVER + 1)]
    await source.read(few, now=0.0)
    assert (each.call_count, listed.call_count) == (AUTO_CROSSOVER, 0)
    await source.read(many, now=0.0)
    assert (each.call_count, listed.call_count) == (AUTO_CROSSOVER, 1)
    assert source.strategy(1) == "per_queue"
    assert RabbitMQManagementSource(mode="per_queue").strategy(500) == "per_queue"
    await source.aclose()


async def test_vhost_and_queue_names_are_quoted_whole(mock: respx.MockRouter) -> None:
    route = mock.get("/api/queues/%2Fprod/a%2Fb%20c").respond(200, json={"messages_ready": 3})
    source = RabbitMQManagementSource(vhost="/prod", mode="per_queue")
    got = (await source.read(["a/b c"], now=0.0))["a/b c"]
    await source.aclose()
    assert isinstance(got, QueueSample)
    assert route.call_count == 1


# -- bodies that cannot be right ------------------------------------------------------


async def test_invalid_json_is_malformed(mock: respx.MockRouter) -> None:
    text = json.dumps(body("queue-files-new_file-t40.json"))[:-40]  # cut short
    got = await fails(mock, httpx.Response(200, text=text))
    assert got.kind is FailureKind.MALFORMED
    assert got.reason.startswith(f"{WHERE}: invalid JSON (")


def edited(path: str, value: object) -> httpx.Response:
    """The t40 body with the dotted ``path`` set to ``value``."""
    answer = body("queue-files-new_file-t40.json")
    *parents, last = path.split(".")
    node = answer
    for key in parents:
        node = node[key]
    node[last] = value
    # json.dumps writes NaN and Infinity as RabbitMQ never would, and Python reads them back.
    return httpx.Response(200, text=json.dumps(answer))


@pytest.mark.parametrize(
    ("path", "value", "kind", "words"),
    [
        ("messages_ready", float("nan"), "impossible", "messages_ready=nan is not a finite number"),
        ("messages_ready", -5, "impossible", "messages_ready=-5 is negative"),
        ("consumers", 10**13, "impossible", f"consumers={10**13} is absurdly large (> 10**12)"),
        (
            "messages_unacknowledged",
            True,
            "impossible",
            "messages_unacknowledged=true is a boolean",
        ),
        ("messages_ready", 3.5, "impossible", "messages_ready=3.5 is not a whole number"),
        ("messages_ready", "477", "malformed", "messages_ready is a string, expected a number"),
        ("consumers", [2], "malformed", "consumers is an array, expected a number"),
        ("state", 1, "malformed", "state is a number, expected a string"),
        ("name", "other", "malformed", "name='other': the answer is not for 'files-new_file'"),
        (
            "message_stats.publish_details.rate",
            float("inf"),
            "impossible",
            "message_stats.publish_details.rate=inf is not a finite number",
        ),
        (
            "message_stats.ack_details.rate",
            -1.5,
            "impossible",
            "message_stats.ack_details.rate=-1.5 is negative",
        ),
        ("message_stats", [], "malformed", "message_stats is an array, expected an object"),
        (
            "message_stats.deliver_get_details",
            3,
            "malformed",
            "message_stats.deliver_get_details is a number, expected an object",
        ),
    ],
)
async def test_impossible_and_malformed_fields_are_named(
    mock: respx.MockRouter, path: str, value: object, kind: str, words: str
) -> None:
    got = await fails(mock, edited(path, value))
    expected = FailureKind.IMPOSSIBLE_VALUE if kind == "impossible" else FailureKind.MALFORMED
    assert (got.kind, got.reason) == (expected, f"{WHERE}: {words}")


async def test_a_body_of_the_wrong_shape_is_malformed(mock: respx.MockRouter) -> None:
    got = await fails(mock, httpx.Response(200, json=[body("queue-files-new_file-t40.json")]))
    assert (got.kind, got.reason) == (
        FailureKind.MALFORMED,
        f"{WHERE}: expected a queue object, got an array",
    )
    mock.get("/api/queues/%2F").respond(200, json=[{"messages_ready": 1}])
    source = RabbitMQManagementSource(mode="list")
    listed = (await source.read([NEW_FILE], now=1.0))[NEW_FILE]
    await source.aclose()
    assert isinstance(listed, ReadFailure)
    assert listed.reason == "GET /api/queues/%2F: item 0 is not a queue object with a name"
