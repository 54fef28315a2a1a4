"""Turning the engine's state into the status contract.

Pure functions of (engine, state, now, figures from the limiters): no clock
reads here, the registry passes ``now`` and a way to show a monotonic instant
as a wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from admission.policy import (
    FAIL_SAFE,
    Level,
    LevelLimits,
    PolicyEngine,
    PolicyState,
    QueueState,
    Transition,
    Window,
)
from admission.status import (
    ActiveWork,
    ClassStatus,
    LimiterStatus,
    OverrideStatus,
    QueueStatus,
    SharedBudget,
    Status,
    TelemetryStatus,
    TransitionRecord,
    WindowStatus,
)

__all__ = ["ClassView", "GovernorView", "build_status", "transition_record"]

#: Shows a monotonic instant as the wall-clock time it was (or will be).
ToWall = Callable[[float], datetime]

_RANK = {"normal": 0, "warning": 1, "critical": 2, FAIL_SAFE: 3}


@dataclass(frozen=True, slots=True)
class GovernorView:
    """Whether a monitor governs the registry, and when it stopped, why."""

    monitor: str  # running | stopped | absent
    stopped_reason: str | None = None
    stopped_at: float | None = None


@dataclass(frozen=True, slots=True)
class ClassView:
    """What the registry adds to a class beyond the engine: its limiters' figures."""

    limiters: tuple[LimiterStatus, ...]
    deferred_total: int
    active: tuple[ActiveWork, ...] = ()


def transition_record(transition: Transition, to_wall: ToWall) -> TransitionRecord:
    return TransitionRecord(
        scope=transition.scope,
        name=transition.name,
        from_level=transition.from_level,
        to_level=transition.to_level,
        at=to_wall(transition.at),
        reason=transition.reason,
        detail=transition.detail,
        signal=transition.signal,
        warning_threshold=transition.warning_threshold,
        critical_threshold=transition.critical_threshold,
        exit_ratio=transition.exit_ratio,
    )


def build_status(
    engine: PolicyEngine,
    state: PolicyState,
    now: float,
    to_wall: ToWall,
    *,
    requested_preset: str,
    governor: GovernorView,
    classes: Mapping[str, ClassView],
    fail_safe_limits: Callable[[str], LevelLimits],
    warnings: Sequence[str] = (),
) -> Status:
    queues = tuple(queue_entry(engine, state, name, now, to_wall) for name in state.queues)
    stopped = governor.monitor == "stopped"
    class_states = tuple(
        class_entry(state, name, to_wall, classes.get(name), governor, fail_safe_limits)
        for name in state.classes
    )
    leading = max(queues, key=_pressing, default=None)
    notes = list(warnings)
    reasons = [f"{q.queue}: {q.fail_safe_reason}" for q in queues if q.fail_safe]
    if stopped:
        reasons.insert(0, f"pressure monitor stopped ({governor.stopped_reason})")
    for reason in reasons:
        notes.append(f"fail-safe: {reason}")
    for q in queues:
        if q.telemetry.health == "degraded":
            notes.append(f"{q.queue}: telemetry degraded ({q.telemetry.last_error or 'partial'})")
    fail_safe = bool(reasons) or any(c.fail_safe for c in class_states)
    figures: tuple[float, float, float, float | None]
    if leading is None:
        policy = engine.preset.default_queue
        figures = (0.0, policy.sustained_seconds, policy.cooldown_seconds, None)
        level = "normal"
    else:
        figures = (
            leading.sustained_seconds,
            leading.sustained_seconds_required,
            leading.cooldown_seconds,
            leading.cooldown_remaining_seconds,
        )
        level = leading.severity
    if stopped or level == FAIL_SAFE:
        # Existing clients know three levels; fail-safe runs the conservative
        # critical limits, so it reads as critical, with fail_safe beside it.
        level = "critical"
    return Status(
        requested_preset=requested_preset,
        active_preset="conservative" if fail_safe else state.preset,
        queue_pressure_level=level,  # type: ignore[arg-type]
        policy_active=any(c.level != "normal" for c in class_states),
        telemetry_stale=any(q.telemetry.health in ("stale", "failing") for q in queues),
        fail_safe=fail_safe,
        fail_safe_reason="; ".join(reasons) if reasons else None,
        sustained_seconds=figures[0],
        sustained_seconds_required=figures[1],
        cooldown_seconds=figures[2],
        cooldown_remaining_seconds=figures[3],
        timestamp=to_wall(now),
        monitor=governor.monitor,  # type: ignore[arg-type]
        queue_states=queues,
        class_states=class_states,
        overrides=tuple(
            OverrideStatus(
                id=o.id,
                scope=o.scope,
                name=o.name,
                level=None if o.level is None else o.level.value,
                preset=o.preset,
                reason=o.reason,
                created_at=to_wall(o.created_at),
                expires_at=to_wall(o.expires_at),
                remaining_seconds=max(0.0, o.expires_at - now),
            )
            for o in state.overrides
        ),
        warnings=tuple(notes),
    )


def _pressing(queue: QueueStatus) -> tuple[int, int]:
    return (_RANK[queue.severity], queue.window is not None)


def queue_entry(
    engine: PolicyEngine, state: PolicyState, name: str, now: float, to_wall: ToWall
) -> QueueStatus:
    queue = state.queues[name]
    policy = engine.queue_policy(state, name)
    shown = engine.shown_level(state, name)
    window = engine.window(queue, now, policy)
    pin = next(
        (
            o.id
            for o in reversed(state.overrides)
            if o.scope == "queue" and o.name == name and o.level is not None
        ),
        None,
    )
    sample = queue.last_sample
    window_status = None
    if window is not None:
        window_status = WindowStatus(
            kind=window.kind,
            pending_level=window.pending_level.value,
            since=to_wall(window.since),
            until=to_wall(now + window.remaining_seconds),
            required_seconds=window.required_seconds,
            elapsed_seconds=window.elapsed_seconds,
            remaining_seconds=window.remaining_seconds,
        )
    sustained = _sustained(queue, window, now)
    cooldown = window.remaining_seconds if window and window.kind == "cooldown" else None
    return QueueStatus(
        queue=name,
        queued_messages=None if sample is None else sample.messages_ready,
        processing_messages=None if sample is None else sample.messages_unacknowledged,
        consumers=None if sample is None else sample.consumers,
        signal=policy.signal.value,
        signal_value=queue.signal,
        warning_threshold=policy.warning_threshold,
        critical_threshold=policy.critical_threshold,
        exit_ratio=policy.exit_ratio,
        severity=shown,  # type: ignore[arg-type]
        level_since=to_wall(
            queue.fail_safe_since
            if queue.fail_safe and queue.fail_safe_since is not None
            else queue.level_since
        ),
        pending_level=None if window is None else window.pending_level.value,
        sustained_seconds=sustained,
        sustained_seconds_required=policy.sustained_seconds,
        cooldown_seconds=policy.cooldown_seconds,
        cooldown_remaining_seconds=cooldown,
        window=window_status,
        fail_safe=queue.fail_safe and pin is None,
        fail_safe_reason=queue.fail_safe_reason if queue.fail_safe and pin is None else None,
        pinned_by=pin,
        telemetry=TelemetryStatus(
            health=engine.health(queue, now, policy),  # type: ignore[arg-type]
            last_sample_age_seconds=queue.sample_age(now),
            consecutive_failures=queue.consecutive_failures,
            last_error=queue.last_error,
        ),
    )


def _sustained(queue: QueueState, window: Window | None, now: float) -> float:
    """How long the signal has held the level it heads to, or (escalated) the one it holds.

    Clients compare it with ``sustained_seconds_required``: once a queue has
    escalated, the pressure that made it do so is still being sustained.
    """
    if window is not None:
        return window.elapsed_seconds if window.kind == "sustained" else 0.0
    if queue.fail_safe:
        return 0.0
    since = {Level.CRITICAL: queue.critical_since, Level.WARNING: queue.warning_since}.get(
        queue.level
    )
    return 0.0 if since is None else max(0.0, now - since)


def class_entry(
    state: PolicyState,
    name: str,
    to_wall: ToWall,
    view: ClassView | None,
    governor: GovernorView,
    fail_safe_limits: Callable[[str], LevelLimits],
) -> ClassStatus:
    cls = state.classes[name]
    limits, shown, fail_safe, reason, since, until = (
        cls.limits,
        cls.display,
        cls.fail_safe,
        cls.reason,
        cls.since,
        None if cls.until is None else to_wall(cls.until),
    )
    if governor.monitor == "stopped":
        limits, shown, fail_safe = fail_safe_limits(name), FAIL_SAFE, True
        reason = (
            f"fail-safe: pressure monitor stopped ({governor.stopped_reason}); "
            "conservative critical limits"
        )
        since = governor.stopped_at if governor.stopped_at is not None else since
        until = None
    elif until is not None:
        reason = f"{reason} until {until.isoformat(timespec='seconds')}"
    limiters = view.limiters if view is not None else ()
    shared = _shared_budget(limiters)
    return ClassStatus(
        class_name=name,
        level=shown,  # type: ignore[arg-type]
        since=to_wall(since),
        preset="conservative" if fail_safe else cls.preset,
        watches=cls.watches,
        active_parallelism=limits.parallelism,
        minimum_floor=limits.minimum_floor,
        rate=limits.rate,
        burst=limits.burst,
        deferred_admission=limits.deferred_admission,
        fail_safe=fail_safe,
        in_flight=sum(entry.in_flight for entry in limiters),
        waiting=sum(entry.waiting for entry in limiters),
        deferred_total=view.deferred_total if view is not None else 0,
        reason=reason,
        until=until,
        limiters=limiters,
        active=view.active if view is not None else (),
        shared_budget=shared[0],
        shared_budget_reason=shared[1],
    )


def _shared_budget(limiters: Sequence[LimiterStatus]) -> tuple[SharedBudget | None, str | None]:
    """A class's shared budget: unavailable if any of its limiters' is."""
    down = [entry for entry in limiters if entry.shared_budget == "unavailable"]
    if down:
        return "unavailable", "; ".join(f"{e.limiter}: {e.shared_budget_reason}" for e in down)
    if any(entry.shared_budget == "shared" for entry in limiters):
        return "shared", None
    return None, None
