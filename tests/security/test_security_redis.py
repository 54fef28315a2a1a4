"""No Redis password in anything the shared budget and the fleet status show.

A ``RedisBackend`` URL carries a password (``redis://:secret@127.0.0.1:PORT``).
Redis is made unreachable (a closed port), silent (a socket that never answers:
timeouts), refusing (a redis-server of the test's own with ``requirepass``, a
wrong password) and answering (the right password): the limiter falls back and
comes back, the fleet is published and read, ``GET /fleet`` answers 200 or 503,
and no log line, repr, exception (and chain), status or response shows either
password.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from live_server_helpers import silent_server
from security_helpers import REDIS_PASSWORD, REDIS_RIGHT_PASSWORD, URL_PASSWORD, Seen
from services import free_port, unavailable
from structlog.testing import capture_logs

from admission import AdaptiveLimiter
from admission.distributed import BackendUnavailable, FleetPublisher, FleetReader, RedisBackend
from admission.metrics import render_metrics
from admission.registry import Registry
from integrations.web_api import throughput_router

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


@pytest.fixture
def seen(caplog: pytest.LogCaptureFixture) -> Seen:
    caplog.set_level("DEBUG")
    return Seen()


@contextmanager
def protected_redis() -> Iterator[int]:
    """A redis-server of the test's own on a free port, with ``requirepass``; its port."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    port = free_port()
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--requirepass", REDIS_RIGHT_PASSWORD]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on {port}") from None
                time.sleep(0.02)
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


async def shared(seen: Seen, label: str, backend: RedisBackend) -> tuple[int, Any]:
    """A shared limiter, the fleet published and read, ``GET /fleet``; all seen."""
    seen.add(f"{label}: backend", backend)
    limiter = AdaptiveLimiter(f"shared-{label}", rate=50, burst=5, backend=backend)
    for _ in range(3):
        async with limiter.admit():
            pass
    registry = Registry()
    registry.add_limiter(limiter, follows="standard")
    publisher = FleetPublisher(backend, registry=registry, replica_id=f"replica-{label}")
    published = await publisher.publish()
    reader = FleetReader(backend)
    try:
        seen.add(f"{label}: fleet", (await reader.read()).model_dump_json())
    except BackendUnavailable as exc:
        seen.error(f"{label}: fleet read", exc)
    try:
        await backend.ping()
    except BackendUnavailable as exc:
        seen.error(f"{label}: ping", exc)
    app = FastAPI()
    app.include_router(throughput_router(registry, fleet=reader))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        fleet = await client.get("/fleet")
        status = await client.get("/status")
    seen.add(f"{label}: GET /fleet", fleet.text, str(fleet.headers))
    seen.add(f"{label}: GET /status", status.text)
    seen.add(f"{label}: metrics", render_metrics(registry))
    seen.add(f"{label}: objects", limiter, limiter.snapshot(), publisher, publisher.last_error)
    seen.add(f"{label}: objects", reader, registry, registry.status().warnings)
    if published:  # leave the server as found
        await publisher.withdraw()
        await backend.redis().delete(backend.bucket_key(limiter.name))
    await backend.aclose()
    return fleet.status_code, limiter.snapshot().shared_budget


@pytest.mark.service
async def test_no_redis_password_shows_whatever_redis_does(
    seen: Seen, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"admission-security:{uuid.uuid4().hex[:8]}:"
    outcomes = {}
    with capture_logs() as events, protected_redis() as port, silent_server() as silent:
        silent_port = int(silent.rpartition(":")[2])
        urls = {
            "closed port": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
            "no answer": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{silent_port}/0",
            "wrong password": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
            "user and wrong password": f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
            "right password": f"redis://:{REDIS_RIGHT_PASSWORD}@127.0.0.1:{port}/0",
        }
        for label, url in urls.items():
            backend = RedisBackend(url, key_prefix=prefix, timeout=0.3)
            outcomes[label] = await shared(seen, label, backend)
    assert outcomes == {
        "closed port": (503, "unavailable"),
        "no answer": (503, "unavailable"),
        "wrong password": (503, "unavailable"),
        "user and wrong password": (503, "unavailable"),
        "right password": (200, "shared"),
    }
    seen.logs("redis", events, caplog)
    seen.assert_clean()


def test_a_redis_url_is_shown_masked_even_written_carelessly() -> None:
    seen = Seen()
    # A password pasted unencoded ('/' and '@' in it) is still found whole.
    careless = RedisBackend(f"redis://:{URL_PASSWORD}@127.0.0.1:6379/0")
    assert (
        repr(careless) == "RedisBackend('redis://:***@127.0.0.1:6379/0', key_prefix='admission:')"
    )
    seen.add("careless URL", careless)
    with pytest.raises(ValueError, match="url must be a redis://") as info:
        RedisBackend(f"http://:{REDIS_PASSWORD}@127.0.0.1:6379/0")
    seen.error("not a redis URL", info.value)
    seen.assert_clean()
