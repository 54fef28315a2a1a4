"""Benchmark: admissions through the shared Redis bucket, against PING and against ``limits``.

All on the machine's Redis (127.0.0.1:6379), one process, the asyncio loop,
contenders interleaved (rotated each repeat), keys under a prefix of the run's
own and deleted afterwards.  Each contender runs ``n`` operations, either in one
task (one after the other) or spread over ``workers`` tasks:

- PING: ``await client.ping()`` on our backend's own redis-py client: the round
  trip floor of the connection an admission uses;
- admission: ``async with limiter:`` on ``AdaptiveLimiter(backend=RedisBackend)``
  with a budget that never runs out (so every admission is one EVALSHA; with
  many workers, one round trip admits the waiters queued behind the head);
- limits: ``MovingWindowRateLimiter.hit()`` of the ``limits`` library's async
  Redis storage (its redis-py and its coredis implementation), a limit it never
  reaches, so each hit is its moving-window script.

Targets: one task's admissions/s at least 0.8x its PINGs/s, and more
admissions/s than ``limits`` hits/s, in one task and with many workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

from admission import AdaptiveLimiter
from admission.distributed import BackendUnavailable, RedisBackend
from bench._common import Check, Row, Section, collect, median, progress, rotated

__all__ = ["run"]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


URL = "redis://127.0.0.1:6379/0"
PING = "PING"
OURS = "admission"
LIMITS_REDISPY = "limits (redis-py)"
LIMITS_COREDIS = "limits (coredis)"

Op = Callable[[], Awaitable[object]]


async def _rate(op: Op, n: int, workers: int) -> float:
    """Operations per second: ``n`` calls of ``op`` spread over ``workers`` tasks."""
    share = n // workers

    async def worker() -> None:
        for _ in range(share):
            await op()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return share * workers / (time.perf_counter() - started)


async def _contenders(backend: RedisBackend) -> tuple[dict[str, Op], Callable[[], Awaitable[None]]]:
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    client = backend.redis()
    limiter = AdaptiveLimiter("bench", rate=1e9, burst=1e9, backend=backend)

    async def admit() -> None:
        async with limiter:
            pass

    item = RateLimitItemPerSecond(10**9)
    prefix = f"{backend.key_prefix}limits"
    redispy = RedisStorage(f"async+{URL}", implementation="redispy", key_prefix=prefix)
    coredis = RedisStorage(f"async+{URL}", key_prefix=prefix)
    by_redispy = MovingWindowRateLimiter(redispy)
    by_coredis = MovingWindowRateLimiter(coredis)
    ops: dict[str, Op] = {
        PING: client.ping,
        OURS: admit,
        LIMITS_REDISPY: lambda: by_redispy.hit(item, "redispy"),
        LIMITS_COREDIS: lambda: by_coredis.hit(item, "coredis"),
    }

    async def clear() -> None:
        # The moving window keeps every hit of the last second: start each run empty.
        await redispy.reset()
        await coredis.reset()

    return ops, clear


async def _measure(
    n: int, workers: tuple[int, ...], repeats: int
) -> tuple[dict[tuple[str, int], float], str]:
    backend = RedisBackend(URL, key_prefix=f"admission-bench:{uuid.uuid4().hex[:8]}:")
    try:
        server = await backend.run(backend.redis().info("server"))
    except BackendUnavailable:
        await backend.aclose()
        raise
    ops, clear = await _contenders(backend)
    names = list(ops)
    rates: dict[tuple[str, int], list[float]] = {}
    try:
        for name in names:  # warm up: connections, scripts loaded, first-use costs
            await _rate(ops[name], 200, 1)
        for count in workers:
            for r in range(repeats):
                for name in rotated(names, r):
                    await clear()
                    collect()
                    rates.setdefault((name, count), []).append(await _rate(ops[name], n, count))
            progress(f"redis: {count} worker(s) done")
    finally:
        await clear()
        client = backend.redis()
        keys = [key async for key in client.scan_iter(match=f"{backend.key_prefix}*")]
        if keys:
            await client.delete(*keys)
        await backend.aclose()
    return {key: median(values) for key, values in rates.items()}, str(server["redis_version"])


def run(n: int = 5_000, workers: tuple[int, ...] = (1, 32), repeats: int = 5) -> Section:
    method = (
        f"{n:,} operations per run, in 1 task or spread over several; median of {repeats} "
        "interleaved runs. PING and the admissions share one redis-py client; limits' "
        "moving window runs through its own storage (redis-py and coredis)."
    )
    params: dict[str, float | int | str | None] = {
        "n": n,
        "workers": ", ".join(map(str, workers)),
        "repeats": repeats,
    }
    columns = ("workers", "contender", "ops/s", "us/op", "ops / PING")
    try:
        rates, server = asyncio.run(_measure(n, workers, repeats))
    except BackendUnavailable as exc:
        return Section(
            "redis",
            "Shared budget through Redis",
            method,
            params,
            columns,
            [],
            [],
            notes=[f"Redis at {URL} did not answer ({exc.reason}): not measured"],
        )
    params["redis-server"] = server
    for package in ("redis", "limits", "coredis"):
        params[package] = _version(package)
    rows: list[Row] = []
    for count in workers:
        ping = rates[(PING, count)]
        for name in (PING, OURS, LIMITS_REDISPY, LIMITS_COREDIS):
            rate = rates[(name, count)]
            rows.append(
                {
                    "workers": count,
                    "contender": name,
                    "ops/s": rate,
                    "us/op": 1e6 / rate,
                    "ops / PING": rate / ping,
                }
            )
    one, many = workers[0], workers[-1]
    checks = [
        Check(
            f"admissions/s / PINGs/s ({one} task)",
            rates[(OURS, one)] / rates[(PING, one)],
            low=0.8,
        ),
        Check(
            f"admissions/s / PINGs/s ({many} tasks; info)",
            rates[(OURS, many)] / rates[(PING, many)],
        ),
    ]
    for count in dict.fromkeys((one, many)):
        peer = max(rates[(LIMITS_REDISPY, count)], rates[(LIMITS_COREDIS, count)])
        checks.append(
            Check(
                f"admissions/s / limits moving-window hits/s ({count} task(s), faster of two)",
                rates[(OURS, count)] / peer,
                low=1.0,
            )
        )
    return Section(
        "redis",
        "Shared budget through Redis: admissions vs PING and vs limits' moving window",
        method,
        params,
        columns,
        rows,
        checks,
        notes=[
            "One task: every admission is one EVALSHA round trip (the script reads the "
            "server's TIME, refills, takes, writes the bucket with its TTL); PING is the "
            "same client's bare round trip.",
            "Many tasks: the head of the queue asks for itself and the waiters behind it in "
            "one round trip, so admissions/s can pass the single-connection PINGs/s.",
        ],
        formats={"ops/s": ",.0f", "us/op": ".1f", "ops / PING": ".2f"},
    )
