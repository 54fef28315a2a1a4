"""The demo's status service: the web_api app on a real uvicorn, on 127.0.0.1.

The socket is bound here first, so a taken ``--port`` is a clear error before
anything runs, and port 0 picks a free port that is known at once.  Ctrl-C
belongs to the demo, not to uvicorn: the server does not install its own
signal handlers, and it is stopped gracefully when the demo stops (or is
cancelled).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import anyio
from anyio.abc import TaskStatus

from admission.clock import SystemClock
from admission.demo.broker import DemoError
from admission.registry import Registry

__all__ = ["HOST", "StatusServer"]

HOST = "127.0.0.1"
# Real seconds: how often the start-up is checked, how long the shutdown may take.
_STARTUP_POLL = 0.005
_SHUTDOWN_TIMEOUT = 5.0


class StatusServer:
    """Serves ``create_app(registry=registry)`` on ``127.0.0.1:port`` while :meth:`run` runs."""

    def __init__(self, registry: Registry, *, port: int = 0) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                f"--port must be a TCP port number (0-65535, 0: any free), got {port!r}"
            )
        self.registry = registry
        self.requested_port = port
        self.port: int | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the status server has not started")
        from integrations.web_api import DEFAULT_PREFIX

        return f"http://{HOST}:{self.port}{DEFAULT_PREFIX}"

    @property
    def status_url(self) -> str:
        return f"{self.base_url}/status"

    def bind(self) -> None:
        """Take the port now (``DemoError`` naming it if it is taken); :meth:`run` serves it."""
        if self._sock is None:
            self._sock = self._bind()
            self.port = self._sock.getsockname()[1]

    def close(self) -> None:
        """Release the port if :meth:`run` never served it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _bind(self) -> socket.socket:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they
        # are TCP, and without it a keep-alive client waits out its delayed ACK
        # (about 40 ms) on every answer, head and body being written apart.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.requested_port))
            # Listening at once: a client that connects early waits, it is not refused.
            sock.listen()
        except OSError as exc:
            sock.close()
            why = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise DemoError(
                f"--port {self.requested_port}: cannot listen on {HOST}: {why}"
            ) from None
        return sock

    async def run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(status_url)`` once it answers."""
        import uvicorn

        from integrations.web_api import create_app

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                # Ctrl-C stops the whole demo (which stops this server), not just the server.
                yield

        self.bind()
        sock = self._sock
        assert sock is not None
        assert self.port is not None
        config = uvicorn.Config(
            create_app(registry=self.registry),
            host=HOST,
            port=self.port,
            log_level="warning",
            # uvicorn's own logging config would reconfigure the whole process's loggers.
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=int(_SHUTDOWN_TIMEOUT),
        )
        server = _Server(config)
        wait = SystemClock()
        try:
            async with anyio.create_task_group() as tg:

                async def serve() -> None:
                    # Shielded: the server stops by should_exit, gracefully, not mid-request.
                    with anyio.CancelScope(shield=True):
                        await server.serve(sockets=[sock])

                tg.start_soon(serve)
                try:
                    while not server.started:
                        if server.should_exit:
                            raise RuntimeError("the status server failed to start")
                        await wait.sleep(_STARTUP_POLL)
                    task_status.started(self.status_url)
                    await anyio.sleep_forever()
                finally:
                    server.should_exit = True
        finally:
            sock.close()
            self._sock = None
