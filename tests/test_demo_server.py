"""The demo's status server: its connections answer a keep-alive client without delay."""

from __future__ import annotations

import gc
import socket

import anyio
import anyio.abc
import httpx
import pytest

from admission.demo.server import StatusServer
from admission.registry import Registry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn


def _server_side(port: int, peer: tuple[str, int]) -> list[socket.socket]:
    """The server's sockets of the connection from ``peer`` (found among live objects)."""
    found = []
    for obj in gc.get_objects():
        if not isinstance(obj, socket.socket) or obj.family != socket.AF_INET:
            continue
        if obj.fileno() == -1:
            continue
        try:
            if obj.getsockname()[1] == port and obj.getpeername() == peer:
                found.append(obj)
        except OSError:  # a listening socket has no peer
            continue
    return found


async def test_its_connections_are_tcp_nodelay() -> None:
    # Without TCP_NODELAY each answer (head and body written apart) waits out the
    # keep-alive client's delayed ACK: about 40 ms a request.
    server = StatusServer(Registry(), port=0)
    async with anyio.create_task_group() as group:
        url = await group.start(server.run)
        assert server.port is not None
        async with await anyio.connect_tcp("127.0.0.1", server.port) as client:
            path = httpx.URL(url).raw_path.decode()
            await client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert (await client.receive()).startswith(b"HTTP/1.1 200")
            peer = client.extra(anyio.abc.SocketAttribute.local_address)
            [conn] = _server_side(server.port, peer)  # type: ignore[arg-type]
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        group.cancel_scope.cancel()
