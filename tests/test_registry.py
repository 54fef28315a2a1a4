"""The registry: limiters it governs, overrides, the status contract, what-if."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from monitor_helpers import NEW_FILE, RATE, TITUS, pipeline
from structlog.testing import capture_logs

from admission import AdaptiveLimiter, WorkloadClass
from admission.policy import ConfigError, QueueSample
from admission.registry import Registry, default_registry, set_default_registry
from admission.status import Status
from admission.testing import EPOCH, VirtualClock

pytestmark = pytest.mark.anyio

# DESIGN.md "Status contract": the names existing clients read.
TOP = {
    "requested_preset",
    "active_preset",
    "queue_pressure_level",
    "policy_active",
    "telemetry_stale",
    "fail_safe",
    "fail_safe_reason",
    "sustained_seconds",
    "sustained_seconds_required",
    "cooldown_seconds",
    "cooldown_remaining_seconds",
    "timestamp",
    "queue_states",
    "class_states",
    "overrides",
    "warnings",
}
QUEUE = {
    "queue",
    "queued_messages",
    "processing_messages",
    "consumers",
    "warning_threshold",
    "critical_threshold",
    "severity",
    "level_since",
    "pending_level",
    "sustained_seconds",
    "cooldown_remaining_seconds",
    "telemetry",
}
TELEMETRY = {"health", "last_sample_age_seconds", "consecutive_failures", "last_error"}
CLASS = {
    "class_name",
    "level",
    "active_parallelism",
    "minimum_floor",
    "rate",
    "burst",
    "deferred_admission",
    "in_flight",
    "waiting",
    "reason",
}


async def test_the_status_carries_every_field_of_the_contract(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    async with p.monitor:
        p.source.set(NEW_FILE, 70, unacked=4, consumers=2)
        await p.until(30)
        status = p.registry.status()
    body = status.model_dump(mode="json")
    assert body.keys() >= TOP
    assert body["queue_states"][0].keys() >= QUEUE
    assert body["queue_states"][0]["telemetry"].keys() >= TELEMETRY
    assert body["class_states"][0].keys() >= CLASS
    assert Status.model_validate_json(status.model_dump_json()) == status

    entry = status.queue(NEW_FILE)
    assert (entry.queued_messages, entry.processing_messages, entry.consumers) == (70, 4, 2)
    assert (entry.warning_threshold, entry.critical_threshold) == (50, 120)
    assert entry.pending_level == "warning"
    assert entry.sustained_seconds == 25  # above 50 since the tick at t=5
    assert entry.window is not None
    assert entry.window.until == EPOCH + timedelta(seconds=65)
    assert status.sustained_seconds == 25
    assert status.sustained_seconds_required == 60
    assert status.timestamp == EPOCH + timedelta(seconds=30)
    assert status.timestamp.tzinfo is not None


async def test_a_class_shows_its_limits_and_its_limiters_figures(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    held = await p.limiter.acquire(workload_class="expensive")
    p.registry.record_deferred("expensive", 3)
    cls = p.registry.class_status("expensive")
    assert (cls.active_parallelism, cls.rate, cls.burst, cls.minimum_floor) == (1, 2.0, 2.0, 1)
    assert (cls.in_flight, cls.waiting, cls.deferred_total) == (1, 0, 3)
    assert cls.limiters[0].limiter == "file_enrichment"
    assert cls.limiters[0].admitted_total == 1
    held.release()
    with pytest.raises(KeyError):
        p.registry.class_status("nope")
    with pytest.raises(KeyError):
        p.registry.queue_status("nope")


async def test_one_entry_read_alone_is_the_entry_of_the_whole_status(
    admission_clock: VirtualClock,
) -> None:
    # The status routes for one queue or one class build only that entry: it must
    # be the very entry the whole status shows at the same instant.
    p = pipeline(admission_clock, NEW_FILE, TITUS)
    held = await p.limiter.acquire(workload_class="expensive")
    p.registry.record_deferred("expensive", 2)
    p.registry.add_override("queue", TITUS, level="warning", ttl_seconds=30, reason="drill")
    p.registry.observe(
        {
            NEW_FILE: QueueSample(NEW_FILE, admission_clock.monotonic(), 900),
            TITUS: QueueSample(TITUS, admission_clock.monotonic(), 5),
        }
    )
    await admission_clock.advance(20)
    for at in (0.0, 15.0, 60.0):  # the override running, expired, then the queues stale
        await admission_clock.advance(at)
        p.registry.observe({})  # a tick without samples
        whole = p.registry.status()
        for queue in (NEW_FILE, TITUS):
            assert p.registry.queue_status(queue) == whole.queue(queue)
        for name in ("standard", "expensive"):
            assert p.registry.class_status(name) == whole.workload_class(name)
    assert whole.fail_safe
    assert p.registry.class_status("expensive").in_flight == 1
    held.release()


async def test_a_level_override_retunes_at_once_and_expires_on_a_status_read(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)  # no monitor: nothing ticks
    pin = p.registry.add_override(
        "class", "expensive", level="critical", ttl_seconds=600, reason="downstream incident"
    )
    assert p.expensive_rate() == RATE["critical"]
    assert pin.expires_at == EPOCH + timedelta(seconds=600)
    assert pin.remaining_seconds == 600
    assert p.registry.status().overrides[0].reason == "downstream incident"

    await admission_clock.advance(599.999)
    pinned = p.registry.class_status("expensive")
    assert pinned.level == "critical"
    # "Until when" in wall time, for people: never the engine's monotonic instant.
    assert pinned.until == pin.expires_at
    until = (EPOCH + timedelta(seconds=600)).isoformat()
    assert pinned.reason == f"pinned to critical by override {pin.id} until {until}"
    await admission_clock.advance(0.001)
    with capture_logs() as logs:
        status = p.registry.status()
    assert status.overrides == ()
    assert status.workload_class("expensive").level == "normal"
    assert status.workload_class("expensive").until is None
    assert p.expensive_rate() == RATE["normal"]
    assert [e["event"] for e in logs if e["event"].startswith("admission.override")] == [
        "admission.override.expired"
    ]
    reasons = [t.reason for t in p.registry.transitions() if t.name == "expensive"]
    assert reasons == ["override_set", "override_expired"]


async def test_an_override_can_be_lifted_early(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    pin = p.registry.add_override("queue", NEW_FILE, level="warning", ttl_seconds=60)
    assert p.registry.queue_status(NEW_FILE).pinned_by == pin.id
    assert p.expensive_rate() == RATE["warning"]
    p.registry.remove_override(pin.id)
    assert p.expensive_rate() == RATE["normal"]
    with pytest.raises(KeyError):
        p.registry.remove_override(pin.id)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("cluster", NEW_FILE), {"level": "warning"}, ValueError, "scope must be"),
        (("queue", NEW_FILE), {"level": "panic"}, ValueError, "level='panic'"),
        (("queue", NEW_FILE), {"level": "warning", "ttl_seconds": 0}, ValueError, "ttl_seconds"),
        (("queue", "nope"), {"level": "warning"}, ConfigError, "queue='nope' is unknown"),
        (("class", "nope"), {"level": "warning"}, ConfigError, "class='nope' is unknown"),
        (("queue", NEW_FILE), {"preset": "turbo"}, ConfigError, "turbo"),
        (("queue", NEW_FILE), {}, ConfigError, "exactly one of level or preset"),
    ],
)
async def test_bad_overrides_are_refused_with_the_value(
    admission_clock: VirtualClock,
    args: tuple[str, str],
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    p = pipeline(admission_clock)
    options: dict[str, object] = {"ttl_seconds": 60, **kwargs}
    with pytest.raises(error, match=message):
        p.registry.add_override(*args, **options)  # type: ignore[arg-type]
    assert p.registry.status().overrides == ()


async def test_what_if_changes_nothing_live(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    before = p.registry.state
    now = admission_clock.monotonic()
    hypothetical = p.registry.evaluate({NEW_FILE: QueueSample(NEW_FILE, now, 500)})
    entry = hypothetical.queue(NEW_FILE)
    assert entry.queued_messages == 500
    assert entry.pending_level == "critical"
    assert p.registry.state is before
    assert p.registry.transitions() == ()
    assert p.registry.queue_status(NEW_FILE).queued_messages is None
    other = p.registry.evaluate({NEW_FILE: QueueSample(NEW_FILE, now, 25)}, preset="conservative")
    assert other.active_preset == "conservative"
    assert other.queue(NEW_FILE).pending_level == "warning"  # conservative warns at 20
    assert p.registry.status().active_preset == "balanced"


async def test_a_limiter_can_follow_one_class_as_a_whole(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    converter = AdaptiveLimiter("document_conversion", rate=50, burst=50, clock=admission_clock)
    p.registry.add_limiter(converter, follows="expensive")
    assert (converter.rate, converter.burst, converter.max_concurrency) == (2.0, 2.0, 1)
    p.registry.add_override("class", "expensive", level="critical", ttl_seconds=60)
    assert converter.rate == RATE["critical"]
    assert p.registry.remove_limiter("document_conversion") is converter
    assert "document_conversion" not in p.registry.limiters


async def test_limiters_are_checked_when_registered(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    with pytest.raises(ValueError, match="'file_enrichment' is already registered"):
        p.registry.add_limiter(p.limiter)
    lone = AdaptiveLimiter("lone", rate=5, burst=5, clock=admission_clock)
    with pytest.raises(ValueError, match="follows='cheap': no such policy class"):
        p.registry.add_limiter(lone, follows="cheap")
    with pytest.raises(ValueError, match="has no workload class named after a policy class"):
        p.registry.add_limiter(lone)


async def test_one_limiter_failing_to_retune_spares_the_others(
    admission_clock: VirtualClock,
) -> None:
    p = pipeline(admission_clock)
    # Cap 1 cannot hold both classes' floor of 1: its expensive retune fails.
    cramped = AdaptiveLimiter(
        "cramped",
        rate=10,
        burst=10,
        max_concurrency=1,
        classes=[WorkloadClass("standard"), WorkloadClass("expensive")],
        clock=admission_clock,
    )
    with capture_logs() as logs:
        p.registry.add_limiter(cramped)
        p.registry.add_override("class", "expensive", level="critical", ttl_seconds=60)
    assert p.registry.retune_errors >= 1
    errors = [e for e in logs if e["event"] == "admission.retune.error"]
    assert errors
    assert errors[0]["limiter"] == "cramped"
    assert "minimum_floor" in errors[0]["error"]
    assert p.expensive_rate() == RATE["critical"]


async def test_transitions_are_bounded_and_limited(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    small = Registry(p.registry.config, clock=admission_clock, history=3)
    for _ in range(4):
        pin = small.add_override("queue", NEW_FILE, level="critical", ttl_seconds=10)
        small.remove_override(pin.id)
    assert len(small.transitions()) == 3
    # The newest: lifting the pin moved the queue, then the classes watching it.
    assert [(t.name, t.reason) for t in small.transitions()] == [
        (NEW_FILE, "override_removed"),
        ("standard", "watched_queue"),
        ("expensive", "watched_queue"),
    ]
    assert small.transitions(limit=1) == small.transitions()[-1:]
    assert small.transitions(limit=0) == ()
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        small.transitions(limit=-1)
    with pytest.raises(ValueError, match="history must be >= 1, got 0"):
        Registry(history=0)


async def test_queues_can_be_added_to_the_watch(admission_clock: VirtualClock) -> None:
    p = pipeline(admission_clock)
    await admission_clock.advance(7)
    p.registry.watch([TITUS, NEW_FILE])
    assert p.registry.queues == (NEW_FILE, TITUS)
    entry = p.registry.queue_status(TITUS)
    assert entry.severity == "normal"
    assert entry.level_since == EPOCH + timedelta(seconds=7)


def test_walls_are_shown_from_the_monotonic_clock(admission_clock: VirtualClock) -> None:
    registry = Registry(clock=admission_clock)
    assert registry.to_wall(admission_clock.monotonic() + 90) == datetime(
        2026, 1, 1, 0, 1, 30, tzinfo=UTC
    )


def test_the_default_registry_is_process_wide() -> None:
    previous = set_default_registry(None)
    try:
        first = default_registry()
        assert default_registry() is first
        mine = Registry()
        set_default_registry(mine)
        assert default_registry() is mine
    finally:
        set_default_registry(previous)
