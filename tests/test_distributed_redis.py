"""The shared bucket in the machine's Redis: the script's arithmetic, its key, retunes, refunds.

Each test has a key prefix of its own and deletes its keys.  redis-py's client
is asyncio only.  The real-time tests run about a second: what they prove is
the script on Redis's own clock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest
from distributed_helpers import cleaned, conforms, redis_backend, until

from admission import AdaptiveLimiter
from admission.distributed import RedisBackend, SharedLimiter, TakeAnswer

pytestmark = [pytest.mark.anyio, pytest.mark.service]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def stored(backend: RedisBackend, limiter: SharedLimiter) -> list[float]:
    """The bucket as Redis holds it: tokens, time, rate, burst."""
    raw = await backend.redis().get(limiter.key)
    assert raw is not None, f"no key {limiter.key}"
    return [float(field) for field in raw.split()]


async def test_admissions_through_redis_conform_to_burst_plus_rate_times_t() -> None:
    async with cleaned(redis_backend()) as backend:
        replicas = [AdaptiveLimiter("conform", rate=40, burst=4, backend=backend) for _ in range(2)]
        stamps: list[float] = []

        async def worker(limiter: AdaptiveLimiter) -> None:
            while True:
                async with limiter:
                    stamps.append(time.monotonic())

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for limiter in replicas:
                for _ in range(8):
                    tg.start_soon(worker, limiter)
            await anyio.sleep(1.5)
            tg.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        # Stamps are taken on arrival of the answer: network jitter may bunch two.
        assert conforms(stamps, rate=40, burst=4, slack=2)
        assert len(stamps) <= 4 + 40 * elapsed + 1
        assert len(stamps) >= 0.85 * (4 + 40 * elapsed)  # less the first connections' time
        assert all(limiter.snapshot().shared_budget == "shared" for limiter in replicas)


async def test_one_key_per_name_with_a_ttl_and_the_shared_figures() -> None:
    async with cleaned(redis_backend(key_ttl=30)) as backend:
        limiter = AdaptiveLimiter("keyed", rate=5, burst=10, backend=backend)
        assert isinstance(limiter, SharedLimiter)
        assert limiter.key == f"{backend.key_prefix}bucket:keyed"
        async with limiter:
            pass
        tokens, at, rate, burst = await stored(backend, limiter)
        assert (rate, burst) == (5, 10)
        assert 8.9 < tokens <= 9.0 + 1e-9  # full, less one (plus a few ms of refill)
        seconds, micros = await backend.redis().time()
        assert abs(at - (seconds + micros / 1e6)) < 5  # the server's clock
        assert 0 < await backend.redis().pttl(limiter.key) <= 30_000
        assert limiter.snapshot().tokens == pytest.approx(tokens)


async def test_a_retune_from_one_replica_is_seen_by_the_other_on_its_next_admission() -> None:
    async with cleaned(redis_backend()) as mine:
        theirs = RedisBackend(mine.url, key_prefix=mine.key_prefix)  # a client of its own
        try:
            one = AdaptiveLimiter("retuned", rate=100, burst=50, backend=mine)
            two = AdaptiveLimiter("retuned", rate=100, burst=50, backend=theirs)
            async with one, two:
                pass
            one.retune(rate=3, burst=7)
            async with one:
                pass
            tokens, _, rate, burst = await stored(mine, one)  # type: ignore[arg-type]
            assert (rate, burst) == (3, 7)
            assert 5.9 < tokens <= 6.0 + 1e-6  # kept (clamped to the new burst), less one
            assert (two.rate, two.burst) == (100, 50)
            async with two:
                pass
            assert (two.rate, two.burst) == (3, 7)
            assert two.snapshot().fallback_rate == pytest.approx(1.5)
        finally:
            await theirs.aclose()


class Slow(RedisBackend):
    """A Redis whose answers come late, for as long as ``hold`` is not set."""

    hold: anyio.Event

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
        answer = await super().take(
            key, costs, rate=rate, burst=burst, initial=initial, configure=configure
        )
        await self.hold.wait()
        return answer


async def test_the_cancelled_waiters_tokens_are_refunded() -> None:
    plain = redis_backend()
    backend = Slow(plain.url, key_prefix=plain.key_prefix)
    backend.hold = anyio.Event()
    async with cleaned(backend):
        limiter = AdaptiveLimiter("refunded", rate=0.001, burst=3, backend=backend)
        assert isinstance(limiter, SharedLimiter)
        outcome: list[str] = []

        async def doomed(scope: anyio.CancelScope) -> None:
            with scope:
                async with limiter:
                    outcome.append("admitted")
            outcome.append("cancelled" if scope.cancelled_caught else "done")

        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(doomed, scope)

            async def script_ran() -> bool:  # its answer is held meanwhile
                return bool(await backend.redis().exists(limiter.key))

            await until(script_ran, timeout=5, step=0.005)
            scope.cancel()
            await anyio.sleep(0.01)
            assert outcome == []  # shielded: still waiting for the answer
            backend.hold.set()
        assert outcome == ["cancelled"]
        tokens, *_ = await stored(backend, limiter)
        assert tokens == pytest.approx(3, abs=1e-3)
        assert limiter.snapshot().cancelled_total == 1
        assert limiter.snapshot().admitted_total == 0


def test_bad_backend_settings_are_named() -> None:
    with pytest.raises(ValueError, match="url must be"):
        RedisBackend("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="expected_replicas must be an int >= 1, got 0"):
        RedisBackend(expected_replicas=0)
    with pytest.raises(ValueError, match="timeout must be a finite number > 0, got -1"):
        RedisBackend(timeout=-1)
    with pytest.raises(ValueError, match="fallback_rate"):
        RedisBackend(fallback_rate=float("nan"))
    backend = RedisBackend("redis://user:secret@127.0.0.1:6379/0", expected_replicas=4)
    assert "secret" not in repr(backend)
    assert backend.fallback_limits(200, 40) == (25, 5)
    assert RedisBackend(fallback_rate=500).fallback_limits(200, 40) == (200, 20)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_backend_is_unavailable_and_says_why() -> None:
    limiter = AdaptiveLimiter("trio", rate=10, burst=2, backend=RedisBackend())
    async with limiter:
        pass
    snapshot = limiter.snapshot()
    assert snapshot.shared_budget == "unavailable"
    assert snapshot.shared_budget_reason is not None
    assert "needs asyncio" in snapshot.shared_budget_reason
