"""``create_app`` and ``uvicorn integrations.web_api:app``: the status service on its own.

The lifespan is driven in the test's own event loop (virtual clock); the
deployment path runs a real uvicorn process against the real RabbitMQ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from services import RABBITMQ_AMQP_URL, free_port, rabbitmq_management
from web_api_helpers import AUTH, TOKEN

from admission.policy import parse_config
from admission.registry import Registry
from admission.telemetry import MemorySource
from admission.testing import VirtualClock
from integrations.web_api import DEFAULT_PREFIX, app_from_environment, create_app

ROOT = Path(__file__).resolve().parent.parent
NEW_FILE = "files-new_file"


async def _get(app: object, path: str, **options: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://admission.test") as client:
        return await client.request(
            str(options.pop("method", "GET")),
            DEFAULT_PREFIX + path,
            **options,  # type: ignore[arg-type]
        )


@pytest.mark.anyio
async def test_the_lifespan_runs_the_monitor_and_stops_it(admission_clock: VirtualClock) -> None:
    registry = Registry(parse_config({"queues": [{"name": NEW_FILE}]}), clock=admission_clock)
    source = MemorySource()
    source.set(NEW_FILE, 42)
    app = create_app(registry=registry, source=source, api_token=TOKEN)
    async with app.router.lifespan_context(app):
        await admission_clock.advance(5)
        running = (await _get(app, "/status")).json()
        assert app.state.monitor.running
    stopped = (await _get(app, "/status")).json()
    assert running["monitor"] == "running"
    assert running["queue_states"][0]["queued_messages"] == 42
    assert stopped["monitor"] == "stopped"
    assert stopped["fail_safe"] is True  # a dead governor leaves nothing permissive


@pytest.mark.anyio
async def test_without_telemetry_no_monitor_runs(admission_clock: VirtualClock) -> None:
    app = create_app(parse_config({"queues": [{"name": NEW_FILE}]}))
    async with app.router.lifespan_context(app):
        body = (await _get(app, "/status")).json()
    assert body["monitor"] == "absent"
    assert app.state.monitor is None


def _environment(tmp_path: Path, toml: str, **extra: str) -> dict[str, str]:
    config = tmp_path / "admission.toml"
    config.write_text(toml, encoding="utf-8")
    return {"ADMISSION_CONFIG": str(config), **extra}


@pytest.mark.anyio
async def test_the_environment_configures_preset_queues_and_token(tmp_path: Path) -> None:
    environ = _environment(
        tmp_path,
        '[[queues]]\nname = "titus-titus_input"\n',
        ADMISSION_PRESET="aggressive",
        ADMISSION_API_TOKEN=TOKEN,
    )
    app = app_from_environment(environ)
    status = (await _get(app, "/status")).json()
    pin = {"scope": "queue", "name": "titus-titus_input", "level": "warning", "ttl_seconds": 5}
    created = await _get(app, "/overrides", method="POST", json=pin, headers=AUTH)
    assert status["requested_preset"] == "aggressive"
    assert [q["queue"] for q in status["queue_states"]] == ["titus-titus_input"]
    assert created.status_code == 201


def test_a_bad_configuration_exits_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = _environment(tmp_path, '[[queues]]\nname = "q"\nexit_ratio = 1.5\n')
    with pytest.raises(SystemExit) as exited:
        app_from_environment(environ)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "queues[0].exit_ratio=1.5" in err
    assert "Traceback" not in err


def test_uvicorn_stops_on_a_bad_configuration_without_a_traceback(tmp_path: Path) -> None:
    environ = _environment(tmp_path, 'preset = "turbo"\n')
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "integrations.web_api:app", "--port", str(free_port())],
        cwd=ROOT,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "preset='turbo' is not a known preset" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def declared_queue() -> Iterator[str]:
    """A queue named like Nemesis's (per-run suffix) holding 7 messages, deleted after."""
    import asyncio

    rabbitmq_management()
    name = f"{NEW_FILE}-{uuid.uuid4().hex[:8]}"

    async def declare() -> None:
        connection = await aio_pika.connect(RABBITMQ_AMQP_URL, timeout=5)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True)
            for number in range(7):
                message = aio_pika.Message(f"file-{number}.zip".encode())
                await channel.default_exchange.publish(message, routing_key=name)

    async def delete() -> None:
        connection = await aio_pika.connect(RABBITMQ_AMQP_URL, timeout=5)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)

    asyncio.run(declare())
    try:
        yield name
    finally:
        asyncio.run(delete())


@pytest.mark.service
def test_uvicorn_serves_the_real_brokers_figures(tmp_path: Path, declared_queue: str) -> None:
    port = free_port()
    environ = _environment(
        tmp_path,
        "poll_interval_seconds = 1\n"
        '[telemetry.rabbitmq]\nurl = "http://127.0.0.1:15672"\npassword = "guest"\n'
        f'[[queues]]\nname = "{declared_queue}"\n',
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "integrations.web_api:app", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}{DEFAULT_PREFIX}/status/{declared_queue}"
    seen: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 45  # the broker's statistics lag by ~5 s
        while time.monotonic() < deadline and seen.get("queued_messages") != 7:
            try:
                response = httpx.get(url, timeout=2)
                seen = response.json() if response.status_code == 200 else seen
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.25)
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert seen.get("queued_messages") == 7, output
    assert seen["consumers"] == 0
    telemetry = seen["telemetry"]
    assert isinstance(telemetry, dict)
    assert telemetry["health"] == "ok"
    # A clean shutdown: the lifespan stopped the monitor (uvicorn re-raises SIGTERM after it).
    assert "Application shutdown complete" in output
    assert "admission.monitor.stopped" in output
