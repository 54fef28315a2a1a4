"""The status router over an in-process ASGI transport, on the virtual clock.

``served()`` mounts ``throughput_router`` at the documented prefix on a fresh
app around a governed pipeline (tests/monitor_helpers.py) and gives an httpx
client that talks to it without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from monitor_helpers import Pipeline, pipeline

from admission.testing import EPOCH, VirtualClock
from integrations.web_api import DEFAULT_PREFIX, throughput_router

TOKEN = "test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONVERSION = "files-document_conversion_input"


def wall(seconds: float) -> str:
    """How the API shows the instant ``seconds`` into the virtual clock's run."""
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@dataclass
class Served:
    pipeline: Pipeline
    client: httpx.AsyncClient

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return await self.client.get(DEFAULT_PREFIX + path, **options)

    async def post(self, path: str, **options: Any) -> httpx.Response:
        return await self.client.post(DEFAULT_PREFIX + path, **options)

    async def delete(self, path: str, **options: Any) -> httpx.Response:
        return await self.client.delete(DEFAULT_PREFIX + path, **options)

    async def status(self) -> dict[str, Any]:
        response = await self.get("/status")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def app_for(p: Pipeline, token: str | None = TOKEN) -> FastAPI:
    app = FastAPI()
    app.include_router(throughput_router(p.registry, api_token=token), prefix=DEFAULT_PREFIX)
    return app


@asynccontextmanager
async def served(
    clock: VirtualClock, *queues: str, preset: str = "balanced", token: str | None = TOKEN
) -> AsyncIterator[Served]:
    p = pipeline(clock, *queues, preset=preset)
    transport = httpx.ASGITransport(app=app_for(p, token))
    async with httpx.AsyncClient(transport=transport, base_url="http://admission.test") as client:
        yield Served(p, client)
