"""Management-API answers as hypothesis strategies, and what each must read as.

The answers start from real RabbitMQ 3.10 queue objects (tests/fixtures/rabbitmq/)
and break them anywhere: junk bytes, text that is not JSON, JSON of the wrong
type, huge and non-finite numbers (as tokens and as strings), negative and
fractional counts, missing fields, nested junk, arrays instead of objects,
nesting deeper than the decoder allows, bodies of megabytes, any status code.

:func:`expect_answer` says what the source must make of an answer, from the rules
in DESIGN.md "Telemetry" and admission/telemetry/_rabbitmq_body.py's docstring:
absent or null is unknown (never zero); a wrong JSON type is ``malformed_body``;
a boolean, negative, NaN, infinite, > 10**12 or fractional count is
``impossible_value``; no ``messages_ready`` is ``no_sample``.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from rabbitmq_helpers import CONVERSION, FIXTURES, NEW_FILE, TITUS

from admission.telemetry import FailureKind, QueueSample

QUEUES = (NEW_FILE, CONVERSION, TITUS)
LIMIT = 10**12
LIVE_STATES = {"running", "idle", "flow"}
RATES = (
    ("publish_rate", "publish_details"),
    ("deliver_rate", "deliver_get_details"),
    ("ack_rate", "ack_details"),
)
REAL = [
    json.loads(path.read_text(encoding="utf-8")) for path in sorted(FIXTURES.glob("queue-*.json"))
]
ABSENT = "<absent>"  # a marker: the key is left out


@dataclass(frozen=True)
class Expected:
    """A sample, or a failure of ``kind`` whose reason contains ``words``."""

    sample: QueueSample | None = None
    kind: FailureKind | None = None
    words: str = ""


# -- values ------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
junk = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)
counts = st.one_of(
    st.integers(0, LIMIT),
    st.integers(0, 10**6).map(float),  # a whole float is a count
    st.none(),
    st.just(ABSENT),
    st.integers(max_value=-1),
    st.integers(min_value=LIMIT + 1, max_value=10**40),
    st.floats(),  # fractions, NaN, infinities
    st.booleans(),
    st.sampled_from(["NaN", "Infinity", "-1", "1e400", "477", ""]),
    junk,
)
rates = st.one_of(st.floats(0, 1e6), st.none(), st.just(ABSENT), st.floats(), counts)
#: Mostly 200: the bodies are the point; now and then any other status.
statuses = st.one_of(st.just(200), st.just(200), st.just(200), st.integers(200, 599))
#: Number tokens json.dumps never writes.
TOKENS = ("1e400", "-1e400", "9" * 5000, "1" + "0" * 13, "-0", "0.5e1", "1E2", "12.0")


def _set(target: dict[str, Any], key: str, value: object) -> None:
    if isinstance(value, str) and value == ABSENT:
        target.pop(key, None)
    else:
        target[key] = value


@st.composite
def queue_object(draw: st.DrawFn, queue: str) -> Any:
    """A real queue object for ``queue``, edited anywhere (or junk in its place)."""
    body: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(REAL)))
    body["name"] = queue
    if draw(st.booleans()):
        _set(body, "name", draw(st.just(ABSENT) | st.sampled_from(QUEUES) | junk))
    for key in ("messages_ready", "messages_unacknowledged", "consumers"):
        if draw(st.booleans()):
            _set(body, key, draw(counts))
    if draw(st.booleans()):
        _set(body, "state", draw(st.sampled_from(["running", "idle", "down", ABSENT]) | junk))
    if draw(st.booleans()):
        stats = draw(st.just(ABSENT) | junk | st.just(body.get("message_stats", {})))
        if isinstance(stats, dict):
            stats = dict(stats)
            for _, block in RATES:
                if draw(st.booleans()):
                    _set(stats, block, draw(st.just(ABSENT) | junk | st.just({})))
                if isinstance(stats.get(block), dict) and draw(st.booleans()):
                    stats[block] = {**stats[block]}
                    _set(stats[block], "rate", draw(rates))
        _set(body, "message_stats", stats)
    if draw(st.integers(0, 19)) == 0:  # a huge body: a megabyte of something nobody reads
        body["backing_queue_status"] = {"padding": "x" * 1_000_000}
    return body


@st.composite
def answer(draw: st.DrawFn, queue: str) -> tuple[int, bytes]:
    """(status, body) of ``GET /api/queues/%2F/{queue}``."""
    status = draw(statuses)
    form = draw(st.sampled_from(["object", "token", "json", "text", "bytes", "deep", "array"]))
    if form == "object":
        return status, json.dumps(draw(queue_object(queue))).encode()
    if form == "token":
        key = draw(st.sampled_from(["messages_ready", "consumers", "messages_unacknowledged"]))
        token = draw(st.sampled_from(TOKENS))
        text = f'{{"name": {json.dumps(queue)}, "messages_ready": 1, "{key}": {token}}}'
        return status, text.encode()
    if form == "json":
        return status, json.dumps(draw(junk)).encode()
    if form == "text":
        return status, draw(st.text(max_size=50)).encode()
    if form == "deep":
        depth = draw(st.sampled_from([10, 900, 5000, 100_000]))
        return status, b"[" * depth + b"]" * depth
    if form == "array":
        return status, json.dumps([draw(queue_object(queue))]).encode()
    return status, draw(st.binary(max_size=200))


@st.composite
def list_answer(draw: st.DrawFn) -> tuple[int, bytes]:
    """(status, body) of ``GET /api/queues/%2F``: an array of queues, paginated or not, or junk."""
    status = draw(statuses)
    form = draw(st.sampled_from(["array", "paginated", "junk"]))
    if form == "junk":
        return status, draw(answer(NEW_FILE))[1]
    items: list[Any] = [draw(queue_object(q)) for q in QUEUES if draw(st.booleans())]
    items += draw(st.lists(st.builds(dict, name=st.text(max_size=8)) | junk, max_size=3))
    if draw(st.integers(0, 19)) == 0:  # a crowded vhost
        items += [{"name": f"other-{i}", "messages_ready": i} for i in range(5000)]
    items = draw(st.permutations(items))
    body: object = items if form == "array" else {"items": items, "page": 1, "page_count": 1}
    return status, json.dumps(body).encode()


# -- what each answer must read as ---------------------------------------------------------


def expect_answer(status: int, content: bytes, queue: str, now: float, where: str) -> Expected:
    """What ``GET`` answering ``status`` and ``content`` must read as for ``queue``."""
    if status == 401:
        return Expected(kind=FailureKind.BAD_CREDENTIALS, words=f"{where}: HTTP 401")
    if status == 404:
        return Expected(kind=FailureKind.MISSING_QUEUE, words=f"{where}: HTTP 404")
    if not 200 <= status < 300:
        return Expected(kind=FailureKind.HTTP_STATUS, words=f"{where}: HTTP {status}")
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return Expected(kind=FailureKind.MALFORMED, words=f"{where}: invalid JSON (")
    if where.endswith("/%2F"):
        return _expect_listed(body, queue, now, where)
    return expect_object(body, queue, now, where)


def _expect_listed(body: object, queue: str, now: float, where: str) -> Expected:
    items = body["items"] if isinstance(body, dict) and "items" in body else body
    if not isinstance(items, list):
        return Expected(kind=FailureKind.MALFORMED, words=f"{where}: expected an array of queues")
    found = None
    for position, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("name"), str)):
            words = f"{where}: item {position} is not a queue object with a name"
            return Expected(kind=FailureKind.MALFORMED, words=words)
        if item["name"] == queue:
            found = item  # the last one of that name counts
    if found is None:
        return Expected(kind=FailureKind.MISSING_QUEUE, words=f"{where}: no queue {queue!r}")
    return expect_object(found, queue, now, where)


def _number(value: object, field: str, *, count: bool) -> Expected | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return Expected(kind=FailureKind.IMPOSSIBLE_VALUE, words=f"{field}=")
    if not isinstance(value, int | float):
        return Expected(kind=FailureKind.MALFORMED, words=f"{field} is ")
    if not math.isfinite(value) or value < 0 or value > LIMIT:
        return Expected(kind=FailureKind.IMPOSSIBLE_VALUE, words=f"{field}=")
    if count and isinstance(value, float) and not value.is_integer():
        return Expected(kind=FailureKind.IMPOSSIBLE_VALUE, words=f"{field}=")
    return None


def expect_object(body: object, queue: str, now: float, where: str) -> Expected:
    """What one decoded queue object must read as: the first broken field, in reading order."""
    malformed = FailureKind.MALFORMED
    if not isinstance(body, dict):
        return Expected(kind=malformed, words=f"{where}: expected a queue object")
    if body.get("name") is not None and body.get("name") != queue:
        return Expected(kind=malformed, words=f"the answer is not for {queue!r}")
    for field in ("messages_ready", "messages_unacknowledged", "consumers"):
        broken = _number(body.get(field), field, count=True)
        if broken is not None:
            return broken
    state = body.get("state")
    if state is not None and not isinstance(state, str):
        return Expected(kind=malformed, words="state is ")
    found: dict[str, float | None] = {}
    stats = body.get("message_stats")
    if stats is not None and not isinstance(stats, dict):
        return Expected(kind=malformed, words="message_stats is ")
    for field, block in RATES:
        details = (stats or {}).get(block)
        if details is not None and not isinstance(details, dict):
            return Expected(kind=malformed, words=f"message_stats.{block} is ")
        rate = None if details is None else details.get("rate")
        broken = _number(rate, f"message_stats.{block}.rate", count=False)
        if broken is not None:
            return broken
        found[field] = None if rate is None else float(rate)
    ready = body.get("messages_ready")
    if ready is None:
        return Expected(kind=FailureKind.NO_SAMPLE, words="no messages_ready in the answer")

    def count(key: str) -> int | None:
        value = body.get(key)
        return None if value is None else int(value)

    health = "ok" if state is None or state in LIVE_STATES else "degraded"
    sample = QueueSample(
        queue,
        now,
        int(ready),
        count("messages_unacknowledged"),
        count("consumers"),
        found["publish_rate"],
        found["deliver_rate"],
        found["ack_rate"],
        health=health,
    )
    return Expected(sample=sample)
