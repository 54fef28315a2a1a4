"""Logging: stable event names, JSON or console lines, tracebacks kept."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from monitor_helpers import NEW_FILE, pipeline

from admission import events
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.mark.usefixtures("restore_structlog")
async def test_json_lines_carry_the_event_and_its_fields(admission_clock: VirtualClock) -> None:
    stream = io.StringIO()
    events.configure_logging("json", stream=stream)
    p = pipeline(admission_clock)
    p.registry.add_override("queue", NEW_FILE, level="critical", ttl_seconds=30)
    await admission_clock.advance(30)
    p.registry.status()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    names = [line["event"] for line in lines]
    assert names.count(events.TRANSITION) == 6  # queue + 2 classes, set and expired
    assert events.OVERRIDE_EXPIRED in names
    first = lines[0]
    assert first["event"] == events.TRANSITION
    assert (first["scope"], first["name"], first["to_level"]) == ("queue", NEW_FILE, "critical")
    assert first["reason"] == "override_set"
    assert first["level"] == "info"
    assert first["timestamp"].endswith("Z")


@pytest.mark.usefixtures("restore_structlog")
def test_json_lines_keep_the_traceback() -> None:
    stream = io.StringIO()
    events.configure_logging("json", stream=stream)
    try:
        raise ZeroDivisionError("engine bug")
    except ZeroDivisionError as exc:
        events.logger().error(events.TICK_ERROR, exc_info=exc)
    line = json.loads(stream.getvalue())
    assert "ZeroDivisionError: engine bug" in line["exception"]
    assert "Traceback" in line["exception"]


@pytest.mark.usefixtures("restore_structlog")
def test_console_lines_are_readable() -> None:
    stream = io.StringIO()
    events.configure_logging("console", stream=stream)
    events.logger().warning(events.FAIL_SAFE_ENTER, scope="queue", name=NEW_FILE)
    text = stream.getvalue()
    assert "admission.fail_safe.enter" in text
    assert f"name={NEW_FILE}" in text


@pytest.mark.usefixtures("restore_structlog")
def test_a_level_filters_events() -> None:
    stream = io.StringIO()
    events.configure_logging("json", stream=stream, level=30)
    events.logger().info(events.TRANSITION)
    events.logger().warning(events.FAIL_SAFE_ENTER)
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()] == [
        events.FAIL_SAFE_ENTER
    ]


def test_an_unknown_renderer_is_refused() -> None:
    with pytest.raises(ValueError, match="renderer must be 'json' or 'console', got 'xml'"):
        events.configure_logging("xml")  # type: ignore[arg-type]
