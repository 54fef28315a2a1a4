"""What the registry governs: limiters bound to policy classes, and work reported in flight.

:func:`class_views` turns them into each class's figures for a status: the
limiters' counters, the deferrals and the active work, plus the warnings a
status carries about them (a shared budget down, a retune that failed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from admission._status_view import ClassView
from admission.limiter import AdaptiveLimiter
from admission.policy import LevelLimits
from admission.snapshot import LimiterSnapshot
from admission.status import ActiveWork, LimiterStatus

__all__ = ["ActivityReporter", "Binding", "WorkInFlight", "class_views"]


@dataclass(frozen=True, slots=True)
class WorkInFlight:
    """A unit of work an integration reports while it runs (see ``add_activity``).

    ``started_at`` is on the registry's clock (``Clock.monotonic()``).
    """

    id: str
    policy_class: str
    started_at: float
    kind: str = "work"


#: Called on every status read: the work in flight right now.
ActivityReporter = Callable[[], Iterable[WorkInFlight]]


@dataclass(slots=True)
class Binding:
    """A limiter (or one workload class of it) that follows a policy class."""

    limiter: AdaptiveLimiter
    policy_class: str
    workload_class: str | None  # None: the whole limiter follows
    applied: LevelLimits | None = None
    retune_error: str | None = None  # why the last retune failed (the limiter kept its limits)


def class_views(
    classes: Iterable[str],
    bindings: Sequence[Binding],
    activity: Iterable[ActivityReporter],
    deferred: Mapping[str, int],
    now: float,
    to_wall: Callable[[float], datetime],
    *,
    only: str | None = None,
) -> tuple[dict[str, ClassView], tuple[str, ...]]:
    """Each class's limiters, deferrals and active work (``only``: that class's), and warnings."""
    views: dict[str, list[LimiterStatus]] = {}
    shared_down: dict[str, str] = {}
    unretuned: list[str] = []
    # One snapshot per limiter, not per binding: a limiter bound class by class
    # would otherwise pay for its wait percentiles once per class on every read.
    snaps: dict[int, LimiterSnapshot] = {}
    for binding in bindings:
        if only is not None and binding.policy_class != only:
            continue
        snap = snaps.get(id(binding.limiter))
        if snap is None:
            snap = snaps[id(binding.limiter)] = binding.limiter.snapshot()
        if snap.shared_budget == "unavailable":
            shared_down[snap.name] = _shared_budget_warning(snap)
        if binding.retune_error is not None:
            unretuned.append(_retune_warning(binding))
        figures = (
            snap if binding.workload_class is None else snap.workload_class(binding.workload_class)
        )
        views.setdefault(binding.policy_class, []).append(
            LimiterStatus(
                limiter=binding.limiter.name,
                workload_class=binding.workload_class,
                in_flight=figures.in_flight,
                waiting=figures.waiting,
                admitted_total=figures.admitted_total,
                rejected_total=figures.rejected_total,
                timed_out_total=figures.timed_out_total,
                shared_budget=snap.shared_budget,
                shared_budget_reason=snap.shared_budget_reason,
                retune_error=binding.retune_error,
            )
        )
    active: dict[str, list[ActiveWork]] = {}
    for work in sorted(
        (w for reporter in activity for w in reporter()), key=lambda w: w.started_at
    ):
        if only is not None and work.policy_class != only:
            continue
        active.setdefault(work.policy_class, []).append(
            ActiveWork(
                id=work.id,
                kind=work.kind,
                workload_class=work.policy_class,
                started_at=to_wall(work.started_at),
                age_seconds=max(0.0, now - work.started_at),
            )
        )
    out = {
        name: ClassView(tuple(views.get(name, ())), deferred[name], tuple(active.get(name, ())))
        for name in classes
        if only is None or name == only
    }
    return out, (*shared_down.values(), *unretuned)


def _shared_budget_warning(snap: LimiterSnapshot) -> str:
    return (
        f"{snap.name}: shared budget unavailable ({snap.shared_budget_reason}); "
        f"local fallback at {snap.fallback_rate:g}/s"
    )


def _retune_warning(binding: Binding) -> str:
    where = binding.limiter.name
    if binding.workload_class is not None:
        where = f"{where}/{binding.workload_class}"
    return (
        f"{where}: retune to the {binding.policy_class} limits failed ({binding.retune_error}); "
        "it keeps its previous limits, retried at every poll"
    )
