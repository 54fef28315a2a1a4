"""RabbitMQ management API faults against the assembled system (issue 8).

Each test runs real queues on the broker, an aio-pika consumer whose handlers
go through the file_enrichment gate (``amqp_consumer``), a PressureMonitor
over ``RabbitMQManagementSource`` and the web_api status (see
rabbitmq_fault_system.py), then breaks the management API:

- the plugin disabled (``rabbitmq-plugins disable rabbitmq_management``) and
  enabled again (management_plugin.py), seen by a system without the AMQP
  fallback (fail-safe) and, in the same outage, by one with it (degraded
  samples from a passive declare, on which the engine keeps deciding);
- a loopback proxy (fault_proxy.py) in front of 15672 that delays answers past
  the source's timeout, closes mid-body, or cuts the body short.

For each: fail-safe within the bound (stale_after / failure threshold), the
status as served says why, the limiter runs the fail-safe limits and the
handlers keep running under them, every message is handled once (none lost),
and after the repair and the recovery window the levels are normal again.

Time is virtual (``admission_clock``) with the built-in balanced windows (poll
5 s, stale after 15 s, 3 failures, recovery 120 s): ``Driver.tick`` moves the
clock one poll at a time while HTTP and AMQP stay real.  Real waits are bounded
polls for I/O only: a tick's HTTP read, the plugin command, the broker's
statistics round (a queue has no figures for up to 5 s after it is declared,
and none after the plugin restarts).  The module's queues are declared together
so that round is waited for once; each test uses its own, all are deleted.

Every test prints its figures (run with ``-s``): virtual and real seconds from
the fault to fail-safe and from the repair to normal, handler runs, messages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import anyio
import pytest
from aio_pika.abc import AbstractConnection
from fault_proxy import FaultProxy, Mode
from management_plugin import disable, plugins_command, restore
from rabbitmq_fault_system import (
    INTERVAL,
    Driver,
    System,
    assembled,
    declare,
    expected_limits,
    limiter_limits,
    stats_shown,
    unique,
)
from services import RABBITMQ_AMQP_URL, rabbitmq_amqp, rabbitmq_management

from admission.testing import VirtualClock
from integrations.file_enrichment import EXPENSIVE, STANDARD

pytestmark = [pytest.mark.anyio, pytest.mark.service]

MANAGEMENT_PORT = 15672
SOURCE_TIMEOUT = 0.5  # real seconds: the proxy's delay (2 s) is well past it
#: The virtual clock keeps deadlines in whole ns, rounded up: a tick may fall a ns late.
ROUNDING = 1e-6
PROXY_FAULTS: dict[Mode, tuple[str, str]] = {
    # fault -> (failure kind, what the reason says)
    "delay": ("timeout", f"no answer within {SOURCE_TIMEOUT:g}s (ReadTimeout)"),
    "close_mid_body": (
        "connection",
        "RemoteProtocolError: peer closed connection without sending complete message body",
    ),
    "cut_body": ("malformed_body", "invalid JSON ("),
}
#: Published each tick while recovering: the expensive file at 0.2/s, under fail-safe's 0.25/s.
LIGHT = ("late.txt", "late.dll")
#: The degraded system's queue escalates on 10 ready messages held 10 s, so the
#: outage is long enough to watch the engine decide from degraded samples.
DEGRADED_POLICY = {
    "warning_threshold": 10,
    "critical_threshold": 1000,
    "sustained_seconds": 10,
    "cooldown_seconds": 30,
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # aio-pika


@pytest.fixture(scope="module")
async def queues() -> AsyncIterator[dict[str, str]]:
    """A queue of its own for each test, with figures in the management API; deleted after."""
    url = rabbitmq_management()
    connection = await aio_pika.connect(rabbitmq_amqp(), timeout=5)
    names = {key: unique(f"files-new_file-{key}") for key in [*PROXY_FAULTS, "plain", "degraded"]}
    try:
        await declare(await connection.channel(), names.values())
        await stats_shown(url, list(names.values()))
        yield names
    finally:
        with anyio.CancelScope(shield=True):
            channel = await connection.channel()
            for name in names.values():
                await channel.queue_delete(name)
            await connection.close()


@pytest.fixture
async def connection() -> AsyncIterator[AbstractConnection]:
    connection = await aio_pika.connect(rabbitmq_amqp(), timeout=5)
    try:
        yield connection
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await connection.close()


def loader(system: System, *paths: str) -> Callable[[], Any]:
    async def load() -> None:
        await system.publish(*paths)

    return load


async def left_in_queue(connection: AbstractConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


def assert_normal(system: System) -> None:
    mark = system.marks[-1]
    assert (mark.fail_safe, mark.health, mark.severity) == (False, "ok", "normal"), mark
    assert limiter_limits(system) == expected_limits(system, "normal")


async def assert_fail_safe_status(system: System, kind: str, says: str) -> dict[str, Any]:
    """The status, as served, says fail-safe and why; the limiter runs the fail-safe limits."""
    status = await system.status()
    assert status["fail_safe"] is True
    assert status["active_preset"] == "conservative"
    assert status["queue_pressure_level"] == "critical"
    entry = status["queue_states"][0]
    assert entry["severity"] == "fail_safe"
    assert entry["telemetry"]["health"] in ("failing", "stale")
    assert entry["telemetry"]["last_error"].startswith(f"{kind}: GET /api/queues/%2F/")
    assert says in entry["telemetry"]["last_error"]
    for cls in status["class_states"]:
        assert (cls["level"], cls["fail_safe"]) == ("fail_safe", True), cls
    safe = expected_limits(system, "fail_safe")
    shown = {
        c["class_name"]: (c["rate"], c["burst"], c["active_parallelism"], c["minimum_floor"])
        for c in status["class_states"]
    }
    assert shown == safe
    assert limiter_limits(system) == safe
    return status


def assert_fail_safe_bounds_held(system: System, entered: float, left: float) -> None:
    """While fail-safe: each class under its fail-safe cap; expensive within burst + rate * T."""
    for cls in (STANDARD, EXPENSIVE):
        assert system.ledger.peak_in_fail_safe[cls] <= system.fail_safe_limits(cls).parallelism
    limits = system.fail_safe_limits(EXPENSIVE)
    starts = [
        at
        for _, cls, at, _, safe in system.ledger.starts
        if safe and cls == EXPENSIVE and entered <= at <= left
    ]
    assert len(starts) <= limits.burst + limits.rate * (left - entered), starts


async def account(system: System, connection: AbstractConnection) -> dict[str, int]:
    """Every published message handled exactly once, or still in the queue: nothing lost."""
    ledger = system.ledger
    queued = await left_in_queue(connection, system.queue)
    handled = sum(1 for i in ledger.published if ledger.handled[i] == 1)
    assert [i for i in ledger.published if ledger.handled[i] > 1] == []
    assert set(ledger.handled) <= set(ledger.published)
    figures = {
        "published": len(ledger.published),
        "processed": handled,
        "queued": queued,
        "lost": len(ledger.published) - handled - queued,
        "requeued": system.consumer.requeued_total,
        "redelivered": system.consumer.redelivered_total,
        "failed": system.consumer.failed_total,
    }
    assert figures["lost"] == 0, figures
    assert figures["failed"] == 0
    assert sum(ledger.deliveries.values()) == handled + system.consumer.requeued_total
    return figures


@pytest.mark.parametrize("fault", list(PROXY_FAULTS))
async def test_a_slow_or_broken_management_api_is_fail_safe_in_bound_and_recovers(
    fault: Mode,
    queues: dict[str, str],
    connection: AbstractConnection,
    admission_clock: VirtualClock,
) -> None:
    kind, says = PROXY_FAULTS[fault]
    async with (
        FaultProxy(MANAGEMENT_PORT) as proxy,
        assembled(
            admission_clock,
            connection,
            fault,
            queues[fault],
            management_url=proxy.url,
            timeout=SOURCE_TIMEOUT,
        ) as system,
    ):
        driver = Driver(admission_clock, [system])
        policy = system.registry.engine.preset.queue_policy(system.queue)
        busy = loader(system, "report.pdf", "a.zip", "notes.txt", "b.7z")
        await driver.ticks(2, busy)
        assert_normal(system)
        last_good = system.marks[-1].at

        proxy.mode = fault
        system.ledger.phase = "fault"
        fault_real = time.perf_counter()
        await driver.until(lambda: system.marks[-1].fail_safe, "fail-safe", 4, busy)
        entered = system.marks[-1]
        failed = [m for m in system.marks if m.at > last_good]
        assert [m.failures for m in failed] == list(range(1, policy.failure_threshold + 1))
        assert entered.at - last_good <= policy.stale_after_seconds + ROUNDING
        status = await assert_fail_safe_status(system, kind, says)
        # Entered at the failure threshold: the reason is the failure itself.
        reason = status["fail_safe_reason"]
        assert f"{policy.failure_threshold} consecutive failed reads ({kind}: " in reason
        assert says in reason
        await driver.ticks(2, busy)  # held there while the fault lasts
        status = await assert_fail_safe_status(system, kind, says)
        # From then on the top-level reason is the staleness; the cause stays in last_error.
        assert "no good sample for 25s (stale after 15s)" in status["fail_safe_reason"]
        assert proxy.responses[fault] >= policy.failure_threshold + 2

        proxy.mode = "pass"
        system.ledger.phase = "recovering"
        repaired_real = time.perf_counter()
        light = loader(system, *LIGHT)
        most = int(policy.recovery_seconds / INTERVAL) + 2
        await driver.until(lambda: not system.marks[-1].fail_safe, "recovery", most, light)
        left = system.marks[-1]
        first_good = next(m for m in system.marks if m.at > entered.at and m.failures == 0)
        assert left.at - first_good.at == pytest.approx(policy.recovery_seconds, abs=ROUNDING)
        assert_normal(system)
        status = await system.status()
        assert (status["fail_safe"], status["fail_safe_reason"]) == (False, None)
        assert status["queue_states"][0]["telemetry"]["last_error"] is None

        system.ledger.phase = "after"
        await driver.until(lambda: not system.unsettled(), "every message handled", 12)
        assert_fail_safe_bounds_held(system, entered.at, left.at)
    figures = await account(system, connection)
    runs = system.ledger.runs(fail_safe=True)
    assert runs[STANDARD] > 0
    assert runs[EXPENSIVE] > 0
    print(
        f"\n[{fault}] fail-safe {entered.at - last_good:g} virtual s after the last good sample "
        f"(bound {policy.stale_after_seconds:g}), {entered.at - failed[0].at:g} after the first "
        f"failed read, {entered.real - fault_real:.2f} real s after the fault; normal "
        f"{left.at - first_good.at:g} virtual s after the first good sample "
        f"({left.real - repaired_real:.2f} real s after the repair); handler runs in fail-safe "
        f"{dict(runs)} (most at once {dict(system.ledger.peak_in_fail_safe)}), during the fault "
        f"{dict(system.ledger.runs(phase='fault'))}; {figures}"
    )


async def test_management_plugin_disabled_then_enabled(
    queues: dict[str, str], connection: AbstractConnection, admission_clock: VirtualClock
) -> None:
    url = rabbitmq_management()
    command = plugins_command()
    await stats_shown(url, [queues["plain"], queues["degraded"]])
    clock = admission_clock
    async with (
        assembled(clock, connection, "plain", queues["plain"], management_url=url, timeout=2.0)
        as plain,
        assembled(
            clock,
            connection,
            "degraded",
            queues["degraded"],
            management_url=url,
            timeout=2.0,
            amqp_url=RABBITMQ_AMQP_URL,
            queue_policy=DEGRADED_POLICY,
        ) as degraded,
    ):  # fmt: skip
        driver = Driver(clock, [plain, degraded])
        policy = plain.registry.engine.preset.queue_policy(plain.queue)

        async def busy() -> None:
            await plain.publish("report.pdf", "a.zip", "notes.txt", "b.7z")
            await degraded.publish("page.html")

        await driver.ticks(2, busy)
        assert_normal(plain)
        assert_normal(degraded)
        last_good = plain.marks[-1].at
        figures: dict[str, float] = {}
        try:
            figures["disable_real"] = await disable(command, url)
            fault_real = time.perf_counter()
            plain.ledger.phase = degraded.ledger.phase = "fault"
            await degraded.publish(*[f"backlog-{n}.zip" for n in range(60)])
            await driver.until(lambda: plain.marks[-1].fail_safe, "plain fail-safe", 4, busy)
            entered = plain.marks[-1]
            assert entered.failures == policy.failure_threshold
            assert entered.at - last_good <= policy.stale_after_seconds + ROUNDING
            status = await assert_fail_safe_status(plain, "connection", "127.0.0.1:15672")
            reason = status["fail_safe_reason"]
            assert f"{entered.failures} consecutive failed reads (connection: GET /api/" in reason
            # The same outage, read by a passive declare: degraded, not fail-safe.
            seen = await degraded.status()
            entry = seen["queue_states"][0]
            assert (seen["fail_safe"], entry["fail_safe"]) == (False, False)
            assert entry["telemetry"]["health"] == "degraded"
            assert entry["telemetry"]["consecutive_failures"] == 0
            assert (entry["consumers"], entry["processing_messages"]) == (1, None)
            assert entry["queued_messages"] >= DEGRADED_POLICY["warning_threshold"]
            assert any("telemetry degraded" in w for w in seen["warnings"])
            # ... and the engine decides from it: 10 s over the threshold is warning.
            await driver.until(
                lambda: degraded.marks[-1].severity == "warning", "degraded warning", 3, busy
            )
            assert degraded.marks[-1].health == "degraded"
            assert limiter_limits(degraded) == expected_limits(degraded, "warning")
            degraded_seen = await degraded.status()
            # Held until the degraded queue's backlog is worked off, still on
            # degraded samples; the no-fallback system runs fail-safe all along.
            light = loader(plain, *LIGHT)
            await driver.until(lambda: not degraded.unsettled(), "degraded backlog", 20, light)
            figures["outage_ticks"] = len([m for m in plain.marks if m.at > last_good])
            assert {m.health for m in degraded.marks if m.at > last_good} == {"degraded"}
        finally:
            with anyio.CancelScope(shield=True):
                figures.update(await restore(command, url))
        figures["stats_back_real"] = await stats_shown(url, [plain.queue, degraded.queue])
        repaired_real = time.perf_counter()
        plain.ledger.phase = degraded.ledger.phase = "recovering"
        most = int(policy.recovery_seconds / INTERVAL) + 2
        await driver.until(lambda: not plain.marks[-1].fail_safe, "recovery", most, light)
        left = plain.marks[-1]
        first_good = next(m for m in plain.marks if m.at > entered.at and m.failures == 0)
        assert left.at - first_good.at == pytest.approx(policy.recovery_seconds, abs=ROUNDING)
        plain.ledger.phase = degraded.ledger.phase = "after"
        await driver.until(
            lambda: not plain.unsettled() and degraded.marks[-1].severity == "normal",
            "every message handled, both normal",
            12,
        )
        assert_normal(plain)
        assert_normal(degraded)
        for system in (plain, degraded):
            status = await system.status()
            assert (status["fail_safe"], status["queue_pressure_level"]) == (False, "normal")
        assert_fail_safe_bounds_held(plain, entered.at, left.at)
    plain_figures = await account(plain, connection)
    degraded_figures = await account(degraded, connection)
    runs = plain.ledger.runs(fail_safe=True)
    assert runs[STANDARD] > 0
    assert runs[EXPENSIVE] > 0
    moves = [(t.name, t.to_level, t.reason) for t in degraded.registry.transitions()]
    assert (degraded.queue, "warning", "sustained_pressure") in moves
    print(
        f"\n[plugin] {figures}; plain: fail-safe {entered.at - last_good:g} virtual s after the "
        f"last good sample (bound {policy.stale_after_seconds:g}), "
        f"{entered.real - fault_real:.2f} real s after the API went away; normal "
        f"{left.at - first_good.at:g} virtual s after the first good sample "
        f"({left.real - repaired_real:.2f} real s after the figures were back); handler runs in "
        f"fail-safe {dict(runs)} (most at once {dict(plain.ledger.peak_in_fail_safe)}), during "
        f"the outage {dict(plain.ledger.runs(phase='fault'))}; "
        f"{plain_figures}\n[plugin] degraded: status in the outage fail_safe="
        f"{degraded_seen['fail_safe']} health="
        f"{degraded_seen['queue_states'][0]['telemetry']['health']} "
        f"severity={degraded_seen['queue_states'][0]['severity']} "
        f"queued={degraded_seen['queue_states'][0]['queued_messages']} warnings="
        f"{degraded_seen['warnings']}; handler runs in the outage "
        f"{dict(degraded.ledger.runs(phase='fault'))}; {degraded_figures}"
    )
