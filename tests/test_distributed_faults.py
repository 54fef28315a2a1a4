"""Redis goes away and comes back: a redis-server of the test's own, killed, stopped, restarted.

Every replica falls back to its local conservative bucket within the admission
that found Redis gone, says so in its snapshot and its registry's status, and
raises nothing to handlers; once Redis answers again they share its bucket again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import anyio
import pytest
from distributed_helpers import RedisServer, until

from admission import AdaptiveLimiter
from admission.distributed import RedisBackend, SharedLimiter
from admission.registry import Registry
from admission.testing import VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.service]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis = RedisServer()
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


def replica(server: RedisServer, clock: VirtualClock | None = None) -> SharedLimiter:
    backend = RedisBackend(
        server.url, key_prefix="faults:", timeout=0.2, retry_interval=0.2, expected_replicas=2
    )
    limiter = AdaptiveLimiter("budget", rate=200, burst=20, backend=backend, clock=clock)
    assert isinstance(limiter, SharedLimiter)
    return limiter


async def test_killed_mid_run_every_replica_falls_back_at_once_and_returns(
    server: RedisServer,
) -> None:
    replicas = [replica(server) for _ in range(2)]
    registries = [Registry() for _ in replicas]
    for registry, limiter in zip(registries, replicas, strict=True):
        registry.add_limiter(limiter, follows="expensive")
        limiter.retune(rate=200, burst=20)  # the test's budget, not the preset's
    counts = {"shared": 0, "unavailable": 0}

    async def handler(limiter: SharedLimiter) -> None:
        while True:
            async with limiter:
                counts["shared" if limiter.shared else "unavailable"] += 1

    async with anyio.create_task_group() as tg:  # a handler that raised would fail the group
        for limiter in replicas:
            for _ in range(4):
                tg.start_soon(handler, limiter)
        await anyio.sleep(0.3)
        assert all(limiter.shared for limiter in replicas)
        server.kill()
        before = {id(limiter): limiter.snapshot().admitted_total for limiter in replicas}

        async def admitted_since() -> bool:
            return all(r.snapshot().admitted_total > before[id(r)] for r in replicas)

        await until(admitted_since, timeout=2, step=0.005)
        # the first admission after the kill found Redis gone and was admitted locally
        for limiter, registry in zip(replicas, registries, strict=True):
            snapshot = limiter.snapshot()
            assert snapshot.shared_budget == "unavailable"
            assert snapshot.fallback_rate == pytest.approx(200 / 2 * 0.5)
            assert "Connection" in (snapshot.shared_budget_reason or "")
            status = registry.status()
            assert status.workload_class("expensive").shared_budget == "unavailable"
            assert any("shared budget unavailable" in warning for warning in status.warnings)
        await anyio.sleep(0.3)
        during = counts["unavailable"]
        server.start()

        async def shared_again() -> bool:
            return all(limiter.shared for limiter in replicas)

        await until(shared_again, timeout=3)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    assert during > 0
    assert counts["shared"] > during
    for limiter in replicas:
        assert limiter.snapshot().shared_budget == "shared"
        assert limiter.snapshot().shared_budget_reason is None
        await limiter.backend.aclose()  # type: ignore[attr-defined]


async def test_a_redis_that_does_not_answer_times_out_into_the_fallback(
    server: RedisServer, admission_clock: VirtualClock
) -> None:
    limiter = replica(server, admission_clock)
    async with limiter:
        pass
    assert server.process is not None
    pid = server.process.pid
    os.kill(pid, signal.SIGSTOP)  # connected, but no reply ever comes
    try:
        started = time.monotonic()
        async with limiter:
            pass
        waited = time.monotonic() - started
        snapshot = limiter.snapshot()
        assert snapshot.shared_budget == "unavailable"
        assert "Timeout" in (snapshot.shared_budget_reason or "")
        assert waited < 1.0  # one timeout (0.2 s), not a hang
    finally:
        os.kill(pid, signal.SIGCONT)
    await admission_clock.advance(0.25)  # past the backoff (0.2 s with jitter)
    async with limiter:
        pass
    assert limiter.shared
    await limiter.backend.aclose()  # type: ignore[attr-defined]


async def test_a_restarted_redis_gets_the_script_and_the_bucket_anew(
    server: RedisServer, admission_clock: VirtualClock
) -> None:
    limiter = replica(server, admission_clock)
    limiter.retune(rate=50, burst=5)
    for _ in range(3):
        async with limiter:
            pass
    server.kill()
    async with limiter:
        pass
    assert not limiter.shared
    server.start()  # no persistence: no script, no bucket
    await admission_clock.advance(0.25)
    async with limiter:
        pass
    assert limiter.shared
    backend = limiter.backend
    assert isinstance(backend, RedisBackend)
    tokens, _, rate, burst = (float(f) for f in (await backend.redis().get(limiter.key)).split())
    assert (rate, burst) == (50, 5)  # created again from this replica's figures
    assert tokens == pytest.approx(4, abs=0.1)
    await backend.redis().script_flush()
    async with limiter:  # NOSCRIPT: loaded again, no fallback
        pass
    assert limiter.shared
    assert limiter.snapshot().admitted_total == 6
    await backend.aclose()
