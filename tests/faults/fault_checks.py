"""What every in-process fault test checks of the assembled system (fault_pipeline.System)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fault_pipeline import NEW_FILE, System, conforms

from admission.policy import LevelLimits, QueuePolicy
from integrations.file_enrichment import EXPENSIVE, STANDARD


def as_limits(limits: LevelLimits) -> tuple[float, float, int]:
    """The figures a limiter class takes from a level's limits."""
    return limits.rate, limits.burst, limits.parallelism


def report(fault: str, **figures: object) -> None:
    """One line of figures per fault (``pytest -s`` shows them)."""
    shown = " ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\nFAULT {fault}: {shown}")


def policy(system: System) -> QueuePolicy:
    return system.registry.engine.queue_policy(system.registry.state, NEW_FILE)


def fail_safe_bound(system: System) -> float:
    """Seconds from the last good sample to fail-safe, at most (DESIGN.md "Fail-safe")."""
    p = policy(system)
    return min(p.stale_after_seconds, p.failure_threshold * system.monitor.interval)


def class_entry(status: Mapping[str, Any], name: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(c for c in status["class_states"] if c["class_name"] == name)
    return entry


def assert_limits(system: System, level: str) -> None:
    """The gate's limiter enforces ``level``'s limits on both classes, as the status shows them."""
    for cls in (STANDARD, EXPENSIVE):
        wanted = system.fail_safe_limits(cls) if level == "fail_safe" else system.normal_limits(cls)
        assert system.limits(cls) == as_limits(wanted), cls
        shown = system.registry.class_status(cls)
        assert (shown.rate, shown.burst, shown.active_parallelism) == as_limits(wanted)


def assert_conservative_while(system: System, since: float, until: float) -> dict[str, int]:
    """Handlers ran in [since, until) and never beyond the fail-safe limits; runs per class."""
    ran = {}
    for cls in (STANDARD, EXPENSIVE):
        limits = system.fail_safe_limits(cls)
        starts = system.work.starts(cls, since, until)
        assert starts, f"no {cls} work ran in fail-safe"
        assert conforms(starts, limits.rate, limits.burst), cls
        assert system.work.peak(cls, since, until) <= limits.parallelism, cls
        ran[cls] = len(starts)
    return ran


async def assert_nothing_lost(system: System) -> dict[str, int]:
    """Stop producing, drain, and account for every message; the figures."""
    system.stop_producer()
    drained = await system.drain()
    account = system.queue.account()
    assert account.lost == 0
    assert account.rejected == 0
    assert account.acked == account.published
    assert sorted(system.work.processed) == list(range(1, account.published + 1))
    assert set(system.work.processed.values()) == {1}  # each exactly once
    return {
        "published": account.published,
        "processed": len(system.work.processed),
        "lost": account.lost,
        "requeued": system.queue.requeued,
        "drained_in_s": round(drained),
    }


async def assert_normal(system: System) -> None:
    status = await system.status()
    assert status["fail_safe"] is False
    assert status["fail_safe_reason"] is None
    assert status["active_preset"] == "balanced"
    assert status["queue_pressure_level"] == "normal"
    assert [c["level"] for c in status["class_states"]] == ["normal", "normal"]
    assert_limits(system, "normal")


async def assert_normal_parallelism_returns(system: System, at: float) -> None:
    """A burst of standard files after recovery runs at the normal cap again, not the safe one."""
    await system.until(at)
    system.publish_burst(12, STANDARD)
    await system.until(at + 10)
    assert system.work.peak(STANDARD, at, at + 10) == system.normal_limits(STANDARD).parallelism
