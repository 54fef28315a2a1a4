"""The three scenarios existing Nemesis clients rely on, read over HTTP.

The monitor polls a memory source every 5 s on the virtual clock; the figures
are the documented presets' (balanced: sustained 60 s, cooldown 120 s;
new_file 50/120, document_conversion_input 30/80; stale after 15 s).
"""

from __future__ import annotations

import pytest
from monitor_helpers import NEW_FILE
from web_api_helpers import CONVERSION, served

from admission.telemetry import FailureKind
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


async def test_stale_telemetry_under_aggressive_is_conservative_fail_safe(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock, preset="aggressive") as api, api.pipeline.monitor:
        api.pipeline.source.fail_all(FailureKind.TIMEOUT, "management API timed out")
        await api.pipeline.until(10)
        before = await api.status()
        await api.pipeline.until(15)  # the last good sample (t=0) is now 15 s old
        body = await api.status()
    assert (before["fail_safe"], before["policy_active"]) == (False, False)
    assert before["queue_states"][0]["telemetry"]["consecutive_failures"] == 2
    assert body["requested_preset"] == "aggressive"
    assert body["active_preset"] == "conservative"
    assert body["fail_safe"] is True
    assert body["policy_active"] is True
    assert body["queue_pressure_level"] == "critical"
    assert body["telemetry_stale"] is True
    assert "fail-safe" in body["fail_safe_reason"] or any(
        "fail-safe" in w for w in body["warnings"]
    )
    assert NEW_FILE in body["fail_safe_reason"]
    expensive = next(c for c in body["class_states"] if c["class_name"] == "expensive")
    assert (expensive["level"], expensive["preset"]) == ("fail_safe", "conservative")
    assert (expensive["active_parallelism"], expensive["rate"]) == (1, 0.25)
    assert "fail-safe" in expensive["reason"]


async def test_sustained_pressure_activates_at_the_sustain_boundary(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock, NEW_FILE, CONVERSION) as api:
        api.pipeline.source.set(NEW_FILE, 250)
        api.pipeline.source.set(CONVERSION, 120)
        async with api.pipeline.monitor:
            await api.pipeline.until(30)
            early = await api.status()
            await api.pipeline.until(61)
            late = await api.status()
    assert early["policy_active"] is False
    assert early["queue_pressure_level"] == "normal"
    assert (early["sustained_seconds"], early["sustained_seconds_required"]) == (30, 60)
    assert {q["pending_level"] for q in early["queue_states"]} == {"critical"}
    assert late["policy_active"] is True
    assert late["queue_pressure_level"] == "critical"
    assert late["sustained_seconds"] >= late["sustained_seconds_required"] == 60
    assert late["sustained_seconds"] == 61
    assert {q["severity"] for q in late["queue_states"]} == {"critical"}
    assert late["fail_safe"] is False


async def test_after_pressure_drops_the_policy_holds_until_the_cooldown_ends(
    admission_clock: VirtualClock,
) -> None:
    async with served(admission_clock) as api:
        api.pipeline.source.set(NEW_FILE, 250)
        async with api.pipeline.monitor:
            await api.pipeline.until(60)
            assert (await api.status())["queue_pressure_level"] == "critical"
            api.pipeline.source.set(NEW_FILE, 0)
            await api.pipeline.until(65)  # the poll at 65 s sees the drop
            remaining = []
            for at in (65, 125, 184):
                await api.pipeline.until(at)
                body = await api.status()
                assert (body["policy_active"], body["queue_pressure_level"]) == (True, "critical")
                remaining.append(body["cooldown_remaining_seconds"])
            await api.pipeline.until(185)
            after = await api.status()
    assert remaining == [120, 60, 1]
    assert after["policy_active"] is False
    assert after["queue_pressure_level"] == "normal"
    assert after["cooldown_remaining_seconds"] is None
