"""Helpers shared by the respx tests of RabbitMQManagementSource.

The bodies are real RabbitMQ 3.10 answers (tests/fixtures/rabbitmq/, copied from
shared/fixtures/rabbitmq/), edited where a test needs a broken one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import respx

from admission.telemetry import QueueSample, ReadFailure
from admission.telemetry.rabbitmq import RabbitMQManagementSource

FIXTURES = Path(__file__).parent / "fixtures" / "rabbitmq"
BASE = "http://127.0.0.1:15672"
NEW_FILE = "files-new_file"
CONVERSION = "files-document_conversion_input"
TITUS = "titus-titus_input"
ONE = f"/api/queues/%2F/{NEW_FILE}"
WHERE = f"GET {ONE}"


def body(name: str) -> Any:
    """A fixture body, decoded afresh (tests may edit it)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


async def read_one(
    mock: respx.MockRouter, response: httpx.Response | Exception, **options: Any
) -> QueueSample | ReadFailure:
    """``files-new_file`` read once in per_queue mode, the API answering ``response``."""
    route = mock.get(ONE)
    if isinstance(response, Exception):
        route.side_effect = response
    else:
        route.return_value = response
    source = RabbitMQManagementSource(mode="per_queue", **options)
    try:
        return (await source.read([NEW_FILE], now=7.0))[NEW_FILE]
    finally:
        await source.aclose()


async def fails(
    mock: respx.MockRouter, response: httpx.Response | Exception, **options: Any
) -> ReadFailure:
    """As :func:`read_one`, asserting the read failed (for that queue, at that time)."""
    got = await read_one(mock, response, **options)
    assert isinstance(got, ReadFailure), got
    assert (got.queue, got.at) == (NEW_FILE, 7.0)
    return got
