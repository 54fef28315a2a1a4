"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for putting in front of a real server.

It forwards each request as sent and handles each response by the ``mode``
in force when the response arrives (so a kept-alive connection follows a
mode change at its next response):

- ``pass``: forwarded unchanged;
- ``delay``: held ``delay`` real seconds, then forwarded and the connection
  closed (the client has usually given up by then);
- ``close_mid_body``: the head and the first half of the body, then the
  connection is closed (the declared ``content-length`` is never reached);
- ``cut_body``: the first half of the body with a ``content-length`` that
  matches it: a complete HTTP answer whose body is cut short.

Bodies are read by ``content-length`` or ``transfer-encoding: chunked`` (the
chunks are forwarded as they came); a response with neither has no body.
"""

from __future__ import annotations

import re
from collections import Counter
from types import TracebackType
from typing import Literal, Self

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from admission._tasks import stop_owned

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "delay", "close_mid_body", "cut_body"]

_HEAD_LIMIT = 65536
_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.IGNORECASE | re.MULTILINE)
#: What a closed or vanished peer raises: the connection ends, the proxy goes on.
_GONE = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.DelimiterNotFound,
    OSError,
)


class FaultProxy:
    """``async with FaultProxy(15672) as proxy:`` listens on ``127.0.0.1:proxy.port``."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "pass"
        self.delay = 2.0
        self.port = 0
        #: Responses handled, by the mode they were handled in.
        self.responses: Counter[Mode] = Counter()
        self._tg: TaskGroup | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(SocketAttribute.local_port)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(listener.serve, self._connection, tg)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        assert tg is not None
        await stop_owned(tg)

    async def _connection(self, client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(*self.upstream)
            except OSError:
                return  # the client sees the connection close: as if the server were down
            async with upstream:
                try:
                    await self._relay(client, upstream)
                except _GONE:
                    return

    async def _relay(self, client: SocketStream, upstream: SocketStream) -> None:
        downstream = BufferedByteReceiveStream(client)
        from_upstream = BufferedByteReceiveStream(upstream)
        while True:
            head, body = await _message(downstream)
            await upstream.send(head + body)
            head, body = await _message(from_upstream)
            mode = self.mode
            self.responses[mode] += 1
            if mode == "delay":
                await anyio.sleep(self.delay)
                await client.send(head + body)
                return
            if mode == "close_mid_body":
                await client.send(head + body[: len(body) // 2])
                return
            if mode == "cut_body":
                cut = body[: len(body) // 2]
                await client.send(_with_length(head, len(cut)) + cut)
                continue
            await client.send(head + body)


async def _message(stream: BufferedByteReceiveStream) -> tuple[bytes, bytes]:
    """One HTTP/1.1 message: its head (with the blank line) and its body, as sent."""
    head = await stream.receive_until(b"\r\n\r\n", _HEAD_LIMIT) + b"\r\n\r\n"
    length = _LENGTH.search(head)
    if length is not None:
        return head, await stream.receive_exactly(int(length.group(1)))
    if _CHUNKED.search(head) is None:
        return head, b""
    body = bytearray()
    while True:
        line = await stream.receive_until(b"\r\n", _HEAD_LIMIT)
        body += line + b"\r\n"
        size = int(line.split(b";")[0], 16)
        if size == 0:
            break
        body += await stream.receive_exactly(size + 2)
    while True:  # trailers, up to the blank line
        line = await stream.receive_until(b"\r\n", _HEAD_LIMIT)
        body += line + b"\r\n"
        if not line:
            return head, bytes(body)


def _with_length(head: bytes, length: int) -> bytes:
    replaced, count = _LENGTH.subn(b"content-length: %d" % length, head, count=1)
    if count != 1:
        raise ValueError("cut_body needs a response with a content-length")
    return replaced
