"""Queue telemetry from the RabbitMQ management API (the ``rabbitmq`` extra: httpx, aio-pika).

``per_queue`` mode sends ``GET /api/queues/{vhost}/{queue}`` for every queue,
concurrently; ``list`` mode sends one ``GET /api/queues/{vhost}`` and picks the
queues out (the broker filters by a name regex, so the answer does not grow
with the other queues of the vhost); ``auto`` chooses by the number of queues
(see ``AUTO_CROSSOVER``).  Both ask for only the fields read (``columns=``).  Every failure is a
:class:`ReadFailure` with a short reason; credentials never appear in one, nor
in ``repr()``.

With ``amqp_url`` set, a queue the management API could not answer for
(connection refused, timeout, 5xx) is read by an AMQP passive declare instead:
a ``degraded`` sample with the ready count and the consumers, unacked and rates
unknown.  That path needs asyncio (aio-pika); on trio the management failure
stands.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import anyio
import httpx

from admission._urls import split_userinfo
from admission.telemetry._amqp import AmqpFailure, AmqpFallback, mask_amqp_url
from admission.telemetry._rabbitmq_body import COLUMNS, describe, parse_queue
from admission.telemetry.base import FailureKind, QueueSample, ReadFailure, Reading

__all__ = ["AUTO_CROSSOVER", "Mode", "RabbitMQManagementSource"]

Mode = Literal["auto", "per_queue", "list"]
DEFAULT_URL: Final = "http://127.0.0.1:15672"

#: ``auto`` reads up to this many queues one request each, more with one list.
#: Measured by bench/telemetry.py (``python -m bench --only telemetry``) on
#: RabbitMQ 3.10.8 over loopback, median tick: a request costs ~2 ms, mostly
#: httpx's own CPU, so N concurrent requests take ~2*N ms (N=1: 1.5, 2: 2.7,
#: 3: 4.7, 5: 7.7, 50: 102 ms); the filtered list takes 2.1-3.0 ms for N=1-5 in
#: a vhost of 50 queues, 4.7-5.9 ms with 200 more.  List mode wins from N=2 in
#: the small vhost and from N=3-5 in the crowded one.  A list's cost grows with
#: the vhost's queue count: on a vhost of thousands, prefer ``mode="per_queue"``.
AUTO_CROSSOVER: Final = 2

#: The broker's largest page: a filtered list is one page.
PAGE_SIZE: Final = 500
#: Up to this many queues the list is filtered by the broker (a name regex);
#: above it, the whole list is cheaper (measured: with 20 queues the filter
#: saves 1-9 ms, with 50 its alternation costs 1-3 ms more than it saves).
FILTER_MAX_QUEUES: Final = 20

# (kind, reason, whether the AMQP fallback may answer instead)
_Failed = tuple[FailureKind, str, bool]


class RabbitMQManagementSource:
    """A :class:`~admission.telemetry.PressureSource` over the RabbitMQ management HTTP API.

    ``client``: an ``httpx.AsyncClient`` to use (it is not closed by
    ``aclose()``); by default the source opens its own on first read.
    Credentials in ``url`` (``http://user:pass@host``) are taken out of it and
    used unless ``username``/``password`` are given.
    """

    #: The longest URL-encoded name filter a list request carries (the broker's
    #: HTTP server refuses request lines of about 8 KB); over it, or at 0, the
    #: list comes whole and is filtered here.
    server_filter_limit: int = 4000

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        username: str | None = None,
        password: str | None = None,
        vhost: str = "/",
        timeout: float = 5.0,
        mode: Mode = "auto",
        amqp_url: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        user, written, bare = split_userinfo(url)
        parts = urlsplit(bare)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http(s) URL with a host, got {_strip(url)!r}")
        if mode not in ("auto", "per_queue", "list"):
            raise ValueError(f"mode must be 'auto', 'per_queue' or 'list', got {mode!r}")
        if isinstance(timeout, bool) or not (
            isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        self.url = _strip(url).rstrip("/")
        self.username = username if username is not None else unquote(user or "guest")
        secret = password if password is not None else unquote(written or "guest")
        self.vhost = vhost
        self.timeout = float(timeout)
        self.mode: Mode = mode
        self._auth = httpx.BasicAuth(self.username, secret)
        self._vhost_path = quote(vhost, safe="")
        self._client = client
        self._owns_client = client is None
        self._amqp = AmqpFallback(amqp_url, self.timeout) if amqp_url else None
        self._amqp_shown = mask_amqp_url(amqp_url) if amqp_url else None
        token = base64.b64encode(f"{self.username}:{secret}".encode()).decode()
        amqp_secret = unquote(split_userinfo(amqp_url)[1] or "") if amqp_url else ""
        # Longest first, so a password that contains another is masked whole.
        self._secrets = sorted({s for s in (secret, token, amqp_secret) if s}, key=len)[::-1]

    def __repr__(self) -> str:
        amqp = "" if self._amqp_shown is None else f", amqp_url={self._amqp_shown!r}"
        return (
            f"RabbitMQManagementSource(url={self.url!r}, vhost={self.vhost!r}, "
            f"username={self.username!r}, password='***', mode={self.mode!r}{amqp})"
        )

    def strategy(self, count: int) -> Literal["per_queue", "list"]:
        """How a read of ``count`` queues is made in this source's mode."""
        if self.mode != "auto":
            return self.mode
        return "per_queue" if count <= AUTO_CROSSOVER else "list"

    # -- reading -------------------------------------------------------------------

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        """Read every queue in ``queues``; never raises (bar cancellation)."""
        names = list(dict.fromkeys(queues))
        if not names:
            return {}
        try:
            if self.strategy(len(names)) == "list":
                found = await self._read_list(names, now)
            else:
                found = await self._read_each(names, now)
            if self._amqp is not None and _on_asyncio():
                await self._degrade(self._amqp, found, now)
        except Exception as exc:  # the contract: a source never raises
            reason = f"{type(exc).__name__}: {exc}"
            found = {
                q: (ReadFailure(q, now, FailureKind.SOURCE_ERROR, reason), False) for q in names
            }
        return {q: self._scrubbed(found[q][0]) for q in names}

    async def _read_each(self, names: list[str], now: float) -> dict[str, tuple[Reading, bool]]:
        client = self._http()
        found: dict[str, tuple[Reading, bool]] = {}

        async def one(queue: str) -> None:
            path = f"/api/queues/{self._vhost_path}/{quote(queue, safe='')}"
            try:
                got = await self._get(client, path, f"no queue {queue!r} in vhost {self.vhost!r}")
                if isinstance(got, tuple):
                    kind, reason, degradable = got
                    found[queue] = (ReadFailure(queue, now, kind, reason), degradable)
                else:
                    found[queue] = (parse_queue(got.body, queue, now, got.where), False)
            except Exception as exc:  # one queue's broken answer must not spoil the others'
                reason = f"GET {path}: {type(exc).__name__}: {_first_line(exc)}"
                found[queue] = (ReadFailure(queue, now, FailureKind.SOURCE_ERROR, reason), False)

        async with anyio.create_task_group() as group:
            for queue in names:
                group.start_soon(one, queue)
        return found

    async def _read_list(self, names: list[str], now: float) -> dict[str, tuple[Reading, bool]]:
        path = f"/api/queues/{self._vhost_path}"
        got = await self._get(self._http(), path, f"no vhost {self.vhost!r}", self._filter(names))
        if isinstance(got, tuple):
            kind, reason, degradable = got
            return {q: (ReadFailure(q, now, kind, reason), degradable) for q in names}
        where, items = got.where, got.body
        if isinstance(items, dict) and "items" in items:  # the paginated (filtered) answer
            items = items["items"]
        wanted = set(names)
        by_name: dict[str, object] = {}
        problem = None
        if not isinstance(items, list):
            problem = f"{where}: expected an array of queues, got {describe(items)}"
        else:
            for position, item in enumerate(items):
                name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(name, str):
                    problem = f"{where}: item {position} is not a queue object with a name"
                    break
                if name in wanted:  # exact: the server's name filter ignores case
                    by_name[name] = item
        if problem is not None:
            return {q: (ReadFailure(q, now, FailureKind.MALFORMED, problem), False) for q in names}
        found: dict[str, tuple[Reading, bool]] = {}
        for queue in names:
            if queue in by_name:
                found[queue] = (parse_queue(by_name[queue], queue, now, where), False)
            else:
                reason = f"{where}: no queue {queue!r} in vhost {self.vhost!r}"
                found[queue] = (ReadFailure(queue, now, FailureKind.MISSING_QUEUE, reason), False)
        return found

    def _filter(self, names: list[str]) -> dict[str, str]:
        """Query parameters that make the broker send only ``names`` (when the URL allows)."""
        pattern = "^(?:" + "|".join(re.escape(name) for name in names) + ")$"
        too_long = len(quote(pattern, safe="")) > self.server_filter_limit
        if len(names) > FILTER_MAX_QUEUES or too_long:
            return {}
        # The regex filter needs pagination; one page holds every match.
        return {"page": "1", "page_size": str(PAGE_SIZE), "name": pattern, "use_regex": "true"}

    async def _get(
        self,
        client: httpx.AsyncClient,
        path: str,
        missing: str,
        params: Mapping[str, str] | None = None,
    ) -> _Body | _Failed:
        where = f"GET {path}"
        try:
            response = await client.get(
                self.url + path,
                params={"columns": COLUMNS, **(params or {})},
                auth=self._auth,
                timeout=self.timeout,
            )
        except httpx.TimeoutException as exc:
            why = f"no answer within {self.timeout:g}s ({type(exc).__name__})"
            return FailureKind.TIMEOUT, f"{where}: {why}", True
        except httpx.TransportError as exc:
            return FailureKind.CONNECTION, f"{where}: {_transport(exc, self.url)}", True
        except Exception as exc:
            return FailureKind.SOURCE_ERROR, f"{where}: {type(exc).__name__}: {exc}", False
        status = response.status_code
        if status == 401:
            return FailureKind.BAD_CREDENTIALS, f"{where}: HTTP 401 (login failed)", False
        if status == 404:
            return FailureKind.MISSING_QUEUE, f"{where}: HTTP 404 ({missing})", False
        if not 200 <= status < 300:
            return FailureKind.HTTP_STATUS, f"{where}: HTTP {status}", status >= 500
        try:
            body: object = response.json()
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting
            return FailureKind.MALFORMED, f"{where}: invalid JSON ({_first_line(exc)})", False
        return _Body(where, body)

    async def _degrade(
        self, amqp: AmqpFallback, found: dict[str, tuple[Reading, bool]], now: float
    ) -> None:
        todo = [q for q, (_, degradable) in found.items() if degradable]
        if not todo:
            return
        answers = await amqp.passive_declare(todo)
        for queue in todo:
            failed = found[queue][0]
            assert isinstance(failed, ReadFailure)
            answer = answers[queue]
            if isinstance(answer, AmqpFailure):
                kind = FailureKind.MISSING_QUEUE if answer.missing else failed.kind
                reason = f"{failed.reason}; fallback {answer.reason}"
                found[queue] = (ReadFailure(queue, now, kind, reason), False)
            else:
                ready, consumers = answer
                sample = QueueSample(queue, now, ready, consumers=consumers, health="degraded")
                found[queue] = (sample, False)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._owns_client = True
        return self._client

    def _scrubbed(self, reading: Reading) -> Reading:
        if isinstance(reading, QueueSample):
            return reading
        reason = reading.reason
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reading if reason == reading.reason else replace(reading, reason=reason)

    async def aclose(self) -> None:
        """Close the HTTP client (if the source opened it) and the AMQP connection."""
        try:
            if self._owns_client and self._client is not None:
                client, self._client = self._client, None
                await client.aclose()
        finally:
            if self._amqp is not None:
                await self._amqp.aclose()


class _Body:
    __slots__ = ("body", "where")

    def __init__(self, where: str, body: object) -> None:
        self.where = where
        self.body = body


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _strip(url: str) -> str:
    """``url`` without userinfo (``user:pass@``), query or fragment."""
    parts = urlsplit(split_userinfo(url)[2])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _transport(exc: httpx.TransportError, url: str) -> str:
    text = _first_line(exc)
    if isinstance(exc, httpx.ConnectError):
        host = urlsplit(url).netloc
        return f"cannot connect to {host} ({text})" if text else f"cannot connect to {host}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
