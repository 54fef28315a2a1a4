"""The override routes' token, and where the status service listens.

tests/test_web_api_overrides.py covers 401 without a token, 403 with a wrong
one and 404 when none is configured; here: the comparison is
``hmac.compare_digest`` on bytes and nothing else decides; the token is checked
before the body (even one that is not JSON); ADMISSION_API_TOKEN unset, empty or
blank never opens the routes; and the servers the library starts (the demo's
status server, ``uvicorn integrations.web_api:app`` as documented) listen on
127.0.0.1 only, as the kernel reports their sockets.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from security_helpers import API_TOKEN, listening
from services import free_port

from admission.demo.server import StatusServer
from admission.policy import parse_config
from admission.registry import Registry
from integrations.web_api import DEFAULT_PREFIX, app_from_environment, throughput_router

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
QUEUE = "files-new_file"
PIN = {"scope": "queue", "name": QUEUE, "level": "critical", "ttl_seconds": 60}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


@asynccontextmanager
async def api(
    token: str | None = API_TOKEN, app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    if app is None:
        app = FastAPI()
        registry = Registry(parse_config({"queues": [{"name": QUEUE}]}))
        app.include_router(throughput_router(registry, api_token=token), prefix=DEFAULT_PREFIX)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admission.test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_token_is_compared_by_compare_digest_on_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    async with api() as client:
        right = await client.post(
            DEFAULT_PREFIX + "/overrides", json=PIN, headers=bearer(API_TOKEN)
        )
        wrong = await client.post(DEFAULT_PREFIX + "/overrides", json=PIN, headers=bearer("nope"))
        longer = await client.delete(DEFAULT_PREFIX + "/overrides/x", headers=bearer(API_TOKEN * 2))
    assert (right.status_code, wrong.status_code, longer.status_code) == (201, 403, 403)
    expected = API_TOKEN.encode()
    # Once per request, the token sent against the token configured, both bytes.
    assert calls == [
        (API_TOKEN.encode(), expected),
        (b"nope", expected),
        ((API_TOKEN * 2).encode(), expected),
    ]


@pytest.mark.parametrize(
    ("verdict", "sent", "status"), [(False, API_TOKEN, 403), (True, "nope", 201)]
)
async def test_compare_digest_alone_decides(
    monkeypatch: pytest.MonkeyPatch, verdict: bool, sent: str, status: int
) -> None:
    # If anything else (an ==, a length check) decided too, overriding it would not flip the answer.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: verdict)
    async with api() as client:
        response = await client.post(DEFAULT_PREFIX + "/overrides", json=PIN, headers=bearer(sent))
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("nope"), 403), ({"Authorization": f"Basic {API_TOKEN}"}, 401)],
)
@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b'{"scope": ', b"[]" * 10_000])
async def test_the_token_is_checked_before_a_body_that_is_not_even_json(
    headers: dict[str, str], status: int, content: bytes
) -> None:
    async with api() as client:
        response = await client.post(
            DEFAULT_PREFIX + "/overrides",
            content=content,
            headers={**headers, "content-type": "application/json"},
        )
        listed = (await client.get(DEFAULT_PREFIX + "/status")).json()["overrides"]
    assert response.status_code == status, response.text
    assert "body" not in response.text  # refused for the token, not for the body
    assert listed == []


@pytest.mark.parametrize("value", [None, ""])
async def test_no_admission_api_token_means_no_override_routes(value: str | None) -> None:
    environ = {} if value is None else {"ADMISSION_API_TOKEN": value}
    app = app_from_environment(environ)
    async with api(app=app) as client:
        for token in ("", "x", API_TOKEN):
            response = await client.post(
                DEFAULT_PREFIX + "/overrides", json=PIN, headers=bearer(token)
            )
            assert response.status_code == 404, response.text
            assert "no API token is configured" in response.text


def test_a_blank_admission_api_token_stops_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        app_from_environment({"ADMISSION_API_TOKEN": "   "})
    assert info.value.code == 2
    assert "api_token must not be empty" in capsys.readouterr().err


# -- where the servers listen ---------------------------------------------------------


async def test_the_demo_status_server_listens_on_127_0_0_1_only() -> None:
    server = StatusServer(Registry(), port=0)
    server.bind()  # what `admission demo` does first, so a taken --port fails early
    port = server.port
    assert port is not None
    async with anyio.create_task_group() as group:
        url = await group.start(server.run)
        assert listening(port) == {"127.0.0.1"}
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 200
        group.cancel_scope.cancel()
    assert listening(port) == set()


async def test_the_documented_uvicorn_command_listens_on_127_0_0_1_only() -> None:
    # `uvicorn integrations.web_api:app --port N`: no --host, so uvicorn's default.
    app = app_from_environment({})
    config = uvicorn.Config(app, port=free_port(), lifespan="off", log_config=None)
    assert config.host == "127.0.0.1"
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        for _ in range(1000):  # real I/O: a bounded wait (10 s) for the socket
            if server.started:
                break
            await anyio.sleep(0.01)
        assert server.started
        sockets = [sock for s in server.servers for sock in s.sockets]
        assert [sock.getsockname()[0] for sock in sockets] == ["127.0.0.1"]
        assert listening(config.port) == {"127.0.0.1"}
        server.should_exit = True


def test_the_docs_never_tell_to_listen_on_every_interface() -> None:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"0\.0\.0\.0|--host\s+::", text), path
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "uvicorn integrations.web_api:app" in readme
