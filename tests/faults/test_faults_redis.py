"""Redis killed and restarted under the assembled system: the shared budget's fail-safe.

The gate's limiter shares its budget through a redis-server of the test's own
(a free port, no persistence); handlers consume a queue of files through the
gate, the monitor runs, the status is served over HTTP.  Redis is killed
mid-run: the limiter goes to its local fallback within one admission, the
status says the shared budget is unavailable and why, handlers keep running at
the fallback's rate and burst, and no message is lost; Redis comes back: the
limiter returns to the shared bucket and the status says so.  Real I/O, real
time: every wait is a bounded poll.  tests/test_distributed_faults.py covers
the limiter alone; this adds the pipeline, the HTTP status, the accounting and
the fallback's conformance.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest
from distributed_helpers import RedisServer
from fault_checks import report
from fault_pipeline import NEW_FILE, Run, System, conforms
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, WorkloadClass
from admission.clock import SystemClock
from admission.distributed import RedisBackend, SharedLimiter
from admission.policy import PolicyConfig, parse_config
from integrations.file_enrichment import EXPENSIVE, STANDARD

pytestmark = [pytest.mark.anyio, pytest.mark.service]

#: The shared budget, admissions per second and burst, for all replicas.
RATE, BURST = 60.0, 10.0
REPLICAS = 2
#: Seconds a file is held: far below 1/RATE per slot, so the budget is what binds.
HOLD = {STANDARD: 0.02, EXPENSIVE: 0.04}
#: Stamps are taken in the handler after the admission: allow this much scheduling jitter.
JITTER_TOKENS = 0.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis = RedisServer()
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


def wide_config() -> PolicyConfig:
    """Classes far above the shared budget and thresholds out of reach: only the budget binds."""
    wide = {"parallelism": 8, "rate": 500, "burst": 50, "minimum_floor": 1}
    return parse_config(
        {
            "preset": "wide",
            "poll_interval_seconds": 1,
            "queues": [{"name": NEW_FILE}],
            "presets": {
                "wide": {
                    "extends": "balanced",
                    "warning_threshold": 5000,
                    "critical_threshold": 10000,
                    "classes": {"standard": {"normal": wide}, "expensive": {"normal": wide}},
                }
            },
        }
    )


async def until(check: Callable[[], bool], timeout: float, step: float = 0.005) -> float:
    """Poll ``check`` (real time) until it holds; the seconds it took, or fail."""
    started = anyio.current_time()
    while not check():
        if anyio.current_time() - started > timeout:
            raise AssertionError(f"still not so after {timeout} s")
        await anyio.sleep(step)
    return anyio.current_time() - started


def rate_of(stamps: list[float]) -> float:
    """Admissions per second over the stamps' span."""
    return (len(stamps) - 1) / (max(stamps) - min(stamps))


def budget(status: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(c["shared_budget"], c["shared_budget_reason"]) for c in status["class_states"]]


async def test_redis_killed_mid_run_falls_back_within_one_admission_and_nothing_is_lost(
    server: RedisServer,
) -> None:
    backend = RedisBackend(
        server.url,
        key_prefix=f"faults-{uuid.uuid4().hex[:8]}:",
        timeout=0.2,
        retry_interval=0.2,
        max_retry_interval=0.4,
        expected_replicas=REPLICAS,
    )
    clock = SystemClock()
    limiter = AdaptiveLimiter(
        "file_enrichment",
        rate=RATE,
        burst=BURST,
        classes=[WorkloadClass(STANDARD), WorkloadClass(EXPENSIVE)],
        backend=backend,
        clock=clock,
    )
    assert isinstance(limiter, SharedLimiter)
    fallback_rate, fallback_burst = backend.fallback_limits(RATE, BURST)
    assert (fallback_rate, fallback_burst) == (RATE / REPLICAS * 0.5, BURST / REPLICAS * 0.5)
    system = System(
        clock, config=wide_config(), limiter=limiter, hold=HOLD, interval=1.0, redelivery_delay=0.2
    )
    system.work.tag = lambda: limiter.shared  # which bucket admitted each run
    runs = system.work.runs

    def shared_runs(since: float) -> list[Run]:
        return [r for r in runs if r.tag is True and r.start >= since]

    def local_runs() -> list[Run]:
        return [r for r in runs if r.tag is False]

    with capture_logs() as logs:
        async with system.running():
            system.publish_burst(120, STANDARD)
            system.publish_burst(60, EXPENSIVE)
            started = clock.monotonic()
            await until(lambda: len(shared_runs(started)) >= 30, timeout=5)
            status = await system.status()
            assert budget(status) == [("shared", None)] * 2
            assert status["warnings"] == []

            killed_at = clock.monotonic()
            server.kill()
            await until(lambda: bool(local_runs()), timeout=3)
            to_fallback = min(r.start for r in local_runs()) - killed_at
            # Within one admission: the round trip the kill broke, or one timeout.
            assert to_fallback <= backend.timeout + 1 / RATE + 0.3
            await until(lambda: len(local_runs()) >= 25, timeout=6)
            status = await system.status()
            assert status["monitor"] == "running"
            assert status["fail_safe"] is False  # the policy's telemetry is fine
            for shared_budget, reason in budget(status):
                assert shared_budget == "unavailable"
                assert reason is not None
                assert reason.startswith("file_enrichment: ")
            (warning,) = status["warnings"]
            assert warning.startswith("file_enrichment: shared budget unavailable (")
            assert warning.endswith(f"local fallback at {fallback_rate:g}/s")
            snapshot = limiter.snapshot()
            assert (snapshot.shared_budget, snapshot.fallback_rate) == (
                "unavailable",
                fallback_rate,
            )

            await anyio.to_thread.run_sync(server.start)
            restarted_at = clock.monotonic()
            to_shared = await until(lambda: limiter.shared, timeout=3)
            back_at = clock.monotonic()
            # The next probe after its backoff (jitter included) finds it.
            assert to_shared <= backend.max_retry_interval * (1 + backend.jitter) + 0.5
            await until(lambda: len(shared_runs(back_at)) >= 20, timeout=5)
            status = await system.status()
            assert budget(status) == [("shared", None)] * 2
            assert status["warnings"] == []
            outage = local_runs()
            assert max(r.start for r in outage) <= back_at

            system.stop_producer()
            await system.drain(limit=15, step=0.05)
            account = system.queue.account()
    # Conformance: the fallback's rate and burst during the outage, the shared ones around it.
    stamps = [r.start for r in outage]
    assert conforms(stamps, fallback_rate, fallback_burst, slack=JITTER_TOKENS)
    before = [r.start for r in shared_runs(started) if r.start < killed_at]
    after = [r.start for r in shared_runs(back_at)]
    assert conforms(before, RATE, BURST, slack=JITTER_TOKENS)
    assert conforms(after, RATE, BURST, slack=JITTER_TOKENS)
    # Handlers kept running through it, nothing handed back, nothing lost.
    assert system.consumer.failed_total == 0
    assert account.lost == 0
    assert account.rejected == 0
    assert account.acked == account.published
    assert sorted(system.work.processed) == list(range(1, account.published + 1))
    assert set(system.work.processed.values()) == {1}
    events = [e["event"] for e in logs if e["event"].startswith("admission.shared_budget")]
    assert events == ["admission.shared_budget.unavailable", "admission.shared_budget.restored"]
    await backend.aclose()
    report(
        "redis killed",
        fallback_rate=fallback_rate,
        fallback_burst=fallback_burst,
        fallback_after_kill_s=round(to_fallback, 4),
        fallback_bound_s=backend.timeout + 1 / RATE,
        shared_after_restart_s=round(to_shared, 4),
        outage_s=round(back_at - killed_at, 3),
        redis_down_s=round(restarted_at - killed_at, 3),
        admitted_in_outage=len(outage),
        outage_rate=round(rate_of(stamps), 2),
        shared_rate_before=round(rate_of(before), 2),
        shared_rate_after=round(rate_of(after), 2),
        published=account.published,
        processed=len(system.work.processed),
        lost=account.lost,
    )
