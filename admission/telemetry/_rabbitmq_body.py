"""Turn one queue object of the RabbitMQ management API into a sample, or say why not.

Pure and dependency-free (the HTTP side lives in :mod:`admission.telemetry.rabbitmq`).
Rules: an absent or ``null`` field is unknown (``None``), never zero; a wrong
JSON type is ``malformed_body``; a boolean, a negative, NaN, infinite or
absurdly large (> 10**12) number, or a fractional count, is ``impossible_value``;
a queue the broker has not collected stats for yet (no ``messages_ready``: a
freshly declared queue looks like that for up to one stats interval) is
``no_sample``.
"""

from __future__ import annotations

import math
from typing import Final

from admission.telemetry.base import FailureKind, QueueSample, ReadFailure, Reading

__all__ = ["COLUMNS", "LIMIT", "parse_queue"]

#: Nothing on a real broker comes near this; a value above it is a broken answer.
LIMIT: Final = 10**12
#: (QueueSample field, the ``message_stats`` block holding its ``rate``)
RATES: Final = (
    ("publish_rate", "publish_details"),
    ("deliver_rate", "deliver_get_details"),
    ("ack_rate", "ack_details"),
)
#: The ``columns=`` query parameter: only what is parsed here comes over the wire
#: (RabbitMQ 3.10 honours it on both ``/api/queues/{vhost}`` and
#: ``/api/queues/{vhost}/{name}``; checked against a real broker).
COLUMNS: Final = ",".join(
    [
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "state",
        *(f"message_stats.{block}.rate" for _, block in RATES),
    ]
)
#: Queue states whose counts are live; any other (down, crashed, stopped,
#: minority, terminated) still gives a sample, but a ``degraded`` one.
LIVE_STATES: Final = frozenset({"running", "idle", "flow"})


class _Bad(Exception):
    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def parse_queue(body: object, queue: str, now: float, where: str) -> Reading:
    """``body`` (a decoded JSON queue object) as a sample of ``queue`` stamped ``now``.

    ``where`` (e.g. ``"GET /api/queues/%2F/files-new_file"``) prefixes the reason
    of a failure.
    """
    try:
        return _parse(body, queue, now)
    except _Bad as bad:
        return ReadFailure(queue, now, bad.kind, f"{where}: {bad.reason}")


def describe(value: object) -> str:
    """A JSON value's type, in JSON's words, for reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _parse(body: object, queue: str, now: float) -> Reading:
    if not isinstance(body, dict):
        raise _Bad(FailureKind.MALFORMED, f"expected a queue object, got {describe(body)}")
    name = body.get("name")
    if name is not None and name != queue:
        raise _Bad(FailureKind.MALFORMED, f"name={_show(name)}: the answer is not for {queue!r}")
    ready = _number(body, "messages_ready", "messages_ready", count=True)
    unacked = _number(body, "messages_unacknowledged", "messages_unacknowledged", count=True)
    consumers = _number(body, "consumers", "consumers", count=True)
    state = body.get("state")
    if state is not None and not isinstance(state, str):
        raise _Bad(FailureKind.MALFORMED, f"state is {describe(state)}, expected a string")
    rates: dict[str, float | None] = dict.fromkeys((field for field, _ in RATES), None)
    stats = body.get("message_stats")
    if stats is not None:  # absent: no traffic seen yet, so the rates are unknown
        if not isinstance(stats, dict):
            raise _Bad(
                FailureKind.MALFORMED, f"message_stats is {describe(stats)}, expected an object"
            )
        for field, block in RATES:
            details = stats.get(block)
            if details is None:
                continue
            if not isinstance(details, dict):
                raise _Bad(
                    FailureKind.MALFORMED,
                    f"message_stats.{block} is {describe(details)}, expected an object",
                )
            rate = _number(details, "rate", f"message_stats.{block}.rate", count=False)
            rates[field] = None if rate is None else float(rate)
    if ready is None:
        return ReadFailure(
            queue,
            now,
            FailureKind.NO_SAMPLE,
            "no messages_ready in the answer (the broker has not collected this queue's stats yet)",
        )
    health = "ok" if state is None or state in LIVE_STATES else "degraded"
    return QueueSample(
        queue,
        now,
        int(ready),
        None if unacked is None else int(unacked),
        None if consumers is None else int(consumers),
        rates["publish_rate"],
        rates["deliver_rate"],
        rates["ack_rate"],
        health=health,
    )


def _number(body: dict[str, object], key: str, field: str, *, count: bool) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, f"{field}={_show(value)} is a boolean")
    if not isinstance(value, int | float):
        raise _Bad(FailureKind.MALFORMED, f"{field} is {describe(value)}, expected a number")
    if math.isnan(value) or math.isinf(value):
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, f"{field}={value!r} is not a finite number")
    if value < 0:
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, f"{field}={value!r} is negative")
    if value > LIMIT:
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, f"{field}={value!r} is absurdly large (> 10**12)")
    if count and isinstance(value, float) and not value.is_integer():
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, f"{field}={value!r} is not a whole number")
    return value


def _show(value: object) -> str:
    text = "true" if value is True else "false" if value is False else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
