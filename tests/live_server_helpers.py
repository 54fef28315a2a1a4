"""A real uvicorn server on 127.0.0.1, served from the test's own event loop (asyncio).

The socket listens before the server starts, so a client can connect at once
(the kernel queues the connection until uvicorn accepts it): no polling for
start-up.  Also a socket that listens and never answers, for real timeouts.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import uvicorn
from starlette.types import ASGIApp


def _listening() -> socket.socket:
    # IPPROTO_TCP: asyncio sets TCP_NODELAY on its connections (see demo/server.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def live_server(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` over real HTTP for the block; yields ``http://127.0.0.1:PORT``."""
    sock = _listening()
    port = sock.getsockname()[1]
    # No log_config: uvicorn must not reconfigure the test process's logging.
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers; yields its base URL."""
    with _listening() as sock:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
