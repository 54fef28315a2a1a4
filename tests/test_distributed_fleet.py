"""Fleet status: replicas publish their registry status to Redis with a TTL; GET /fleet reads it.

The publishing cadence runs on the virtual clock (it is the library's logic);
the expiry of a replica that stopped is Redis's own TTL, so that test waits for
it in real time (a fraction of a second).
"""

from __future__ import annotations

import httpx
import pytest
from distributed_helpers import cleaned, redis_backend, until
from fastapi import FastAPI
from services import free_port
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, events
from admission.distributed import FleetPublisher, FleetReader, RedisBackend
from admission.registry import Registry
from admission.testing import VirtualClock
from integrations.web_api import throughput_router

pytestmark = [pytest.mark.anyio, pytest.mark.service]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def replica(
    backend: RedisBackend, name: str, clock: VirtualClock, ttl: float = 30
) -> FleetPublisher:
    registry = Registry(clock=clock)
    limiter = AdaptiveLimiter(f"{name}-converter", rate=5, burst=5)
    registry.add_limiter(limiter, follows="expensive")
    return FleetPublisher(
        backend, registry=registry, replica_id=name, host=f"{name}.example", interval=1, ttl=ttl
    )


async def test_the_fleet_lists_every_replica_with_its_levels_limits_and_totals(
    admission_clock: VirtualClock,
) -> None:
    async with cleaned(redis_backend()) as backend:
        one = replica(backend, "one", admission_clock)
        two = replica(backend, "two", admission_clock)
        two.registry.add_override("class", "expensive", level="critical", ttl_seconds=60)
        permit = await two.registry.limiters["two-converter"].acquire()
        assert await one.publish()
        assert await two.publish()
        fleet = await FleetReader(backend).read()
        permit.release()
    assert [r.replica_id for r in fleet.replicas] == ["one", "two"]
    assert [r.host for r in fleet.replicas] == ["one.example", "two.example"]
    assert fleet.replicas[0].last_seen == admission_clock.wall()
    expensive = {r.replica_id: r.classes[1] for r in fleet.replicas}
    assert expensive["one"].class_name == "expensive"
    assert (expensive["one"].level, expensive["two"].level) == ("normal", "critical")
    assert expensive["two"].rate < expensive["one"].rate
    totals = fleet.totals
    assert (totals.replicas, totals.in_flight, totals.admitted_total) == (2, 1, 1)
    [cls, _] = totals.classes
    assert (cls.class_name, cls.replicas, cls.levels) == (
        "expensive",
        2,
        {"normal": 1, "critical": 1},
    )
    assert cls.active_parallelism == sum(e.active_parallelism for e in expensive.values())


async def test_a_replica_that_stops_publishing_drops_out_after_its_ttl(
    admission_clock: VirtualClock,
) -> None:
    import time

    async with cleaned(redis_backend()) as backend:
        live = replica(backend, "live", admission_clock, ttl=30)
        gone = replica(backend, "gone", admission_clock, ttl=1.5)
        assert await live.publish()
        assert await gone.publish()
        reader = FleetReader(backend)
        assert [r.replica_id for r in (await reader.read()).replicas] == ["gone", "live"]
        started = time.monotonic()

        async def dropped() -> bool:
            return len((await reader.read()).replicas) == 1

        await until(dropped, timeout=5, step=0.05)  # Redis's TTL runs on real time
        assert time.monotonic() - started > 1.0
        fleet = await reader.read()
        assert [r.replica_id for r in fleet.replicas] == ["live"]
        assert await backend.redis().smembers(f"{backend.key_prefix}fleet") == {b"live"}


async def test_the_publisher_refreshes_on_its_clock_and_withdraws_on_exit(
    admission_clock: VirtualClock,
) -> None:
    async with cleaned(redis_backend()) as backend:
        publisher = replica(backend, "cadence", admission_clock)
        reader = FleetReader(backend)
        async with publisher:
            assert publisher.published == 1
            for expected in (2, 3, 4):
                await admission_clock.advance(1)

                async def published(expected: int = expected) -> bool:
                    return publisher.published == expected  # its write to Redis is real I/O

                await until(published, timeout=5)
            assert [r.replica_id for r in (await reader.read()).replicas] == ["cadence"]
        assert (await reader.read()).replicas == ()


async def test_publishing_pushes_a_pending_shared_retune(admission_clock: VirtualClock) -> None:
    async with cleaned(redis_backend()) as backend:
        registry = Registry(clock=admission_clock)
        limiter = AdaptiveLimiter("pushed", rate=10, burst=10, backend=backend)
        registry.add_limiter(limiter, follows="standard")
        limiter.retune(rate=3, burst=4)
        assert await FleetPublisher(backend, registry=registry, replica_id="r").publish()
        raw = await backend.redis().get(f"{backend.key_prefix}bucket:pushed")
        assert raw is not None
        assert raw.split()[2:] == [b"3.0", b"4.0"]


async def test_a_redis_that_is_away_is_logged_once_and_never_stops_the_publisher(
    admission_clock: VirtualClock,
) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    publisher = replica(backend, "lonely", admission_clock)
    with capture_logs() as logs:
        async with publisher:
            await admission_clock.advance(2)
    assert publisher.published == 0
    assert publisher.last_error is not None
    assert "Connection" in publisher.last_error
    assert [e["event"] for e in logs if e["event"] == events.FLEET_PUBLISH_ERROR] == [
        events.FLEET_PUBLISH_ERROR
    ]


async def test_get_fleet_serves_the_fleet_and_503_without_redis(
    admission_clock: VirtualClock,
) -> None:
    async with cleaned(redis_backend()) as backend:
        publisher = replica(backend, "web", admission_clock)
        assert await publisher.publish()
        app = FastAPI()
        app.include_router(throughput_router(publisher.registry, fleet=FleetReader(backend)))
        lost = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
        app.include_router(
            throughput_router(publisher.registry, fleet=FleetReader(lost)), prefix="/lost"
        )
        app.include_router(throughput_router(publisher.registry), prefix="/none")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            ok = await client.get("/fleet")
            down = await client.get("/lost/fleet")
            absent = await client.get("/none/fleet")
    assert ok.status_code == 200
    body = ok.json()
    assert [r["replica_id"] for r in body["replicas"]] == ["web"]
    assert body["replicas"][0]["classes"][1]["rate"] > 0
    assert body["totals"]["replicas"] == 1
    assert down.status_code == 503
    assert down.json()["detail"].startswith("fleet status unavailable: ConnectionError")
    assert absent.status_code == 404
