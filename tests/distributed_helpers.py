"""Helpers shared by the shared-budget tests: an in-memory backend, Redis and redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from services import free_port, unavailable

from admission.clock import Clock
from admission.distributed import BackendUnavailable, RedisBackend, TakeAnswer

REDIS_URL = "redis://127.0.0.1:6379/0"
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


@dataclass
class MemoryBackend:
    """The Lua script's arithmetic in memory, on ``clock``: one shared bucket per key.

    ``down`` makes every call fail with that reason; ``hold`` (an event) keeps
    each take waiting after it decided, until set, as a slow round trip would.
    """

    clock: Clock
    retry_interval: float = 1.0
    max_retry_interval: float = 8.0
    jitter: float = 0.0
    expected_replicas: int = 2
    down: str | None = None
    hold: anyio.Event | None = None
    buckets: dict[str, list[float]] = field(default_factory=dict)  # tokens, at, rate, burst
    calls: int = 0
    taken: float = 0.0
    refunded: float = 0.0

    def bucket_key(self, name: str) -> str:
        return f"test:{name}"

    def fallback_limits(self, rate: float, burst: float) -> tuple[float, float]:
        share = 0.5 / self.expected_replicas
        return rate * share, max(1.0, burst * share)

    def tokens(self, key: str) -> float:
        tokens, at, rate, burst = self.buckets[key]
        return min(burst, tokens + (self.clock.monotonic() - at) * rate)

    async def take(
        self,
        key: str,
        costs: Sequence[float],
        *,
        rate: float,
        burst: float,
        initial: float,
        configure: bool,
    ) -> TakeAnswer:
        self.calls += 1
        if self.down is not None:
            raise BackendUnavailable(self.down)
        now = self.clock.monotonic()
        state = self.buckets.get(key)
        if state is None:
            tokens = min(initial, burst)
        else:
            tokens = min(state[3], state[0] + max(0.0, now - state[1]) * state[2])
            if configure:
                tokens = min(tokens, burst)
            else:
                rate, burst = state[2], state[3]
        granted, wait = 0, 0.0
        for cost in costs:
            if tokens < cost - 1e-9 * cost:
                wait = (cost - tokens) / rate
                break
            tokens -= cost
            self.taken += cost
            granted += 1
        self.buckets[key] = [tokens, now, rate, burst]
        if self.hold is not None:
            await self.hold.wait()
        return TakeAnswer(granted, wait, tokens, rate, burst)

    async def refund(self, key: str, amount: float) -> None:
        if self.down is not None:
            raise BackendUnavailable(self.down)
        self.refunded += amount
        state = self.buckets[key]
        state[0] = min(state[3], state[0] + amount)


def redis_backend(**options: object) -> RedisBackend:
    """A backend on the machine's Redis with a key prefix of its own (skip, or fail in CI)."""
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=3.0):
            pass
    except OSError as exc:
        unavailable(f"Redis not reachable at 127.0.0.1:6379: {exc!r}")
    prefix = f"admission-test:{uuid.uuid4().hex[:10]}:"
    return RedisBackend(REDIS_URL, key_prefix=prefix, **options)  # type: ignore[arg-type]


async def forget(backend: RedisBackend) -> None:
    """Delete every key under the backend's prefix, then close its client."""
    client = backend.redis()
    keys = [key async for key in client.scan_iter(match=f"{backend.key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await backend.aclose()


@asynccontextmanager
async def cleaned(backend: RedisBackend) -> AsyncIterator[RedisBackend]:
    try:
        yield backend
    finally:
        with anyio.CancelScope(shield=True):
            await forget(backend)


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence, to kill and restart."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed: the fault tests start their own")
        self.binary = binary or "redis-server"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


async def until(check: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.01) -> None:
    """Poll ``check`` in real time (a real service's state) until it holds, or fail."""
    for _ in range(max(1, round(timeout / step))):
        if await check():
            return
        await anyio.sleep(step)
    raise AssertionError(f"still not so after {timeout} s")


def conforms(stamps: Sequence[float], rate: float, burst: float, slack: float = 1e-6) -> bool:
    """Does every window between two admissions hold at most ``burst + rate * T`` of them?"""
    ordered = sorted(stamps)
    return all(
        last - first + 1 <= burst + rate * (ordered[last] - ordered[first]) + slack
        for first in range(len(ordered))
        for last in range(first, len(ordered))
    )
