"""Immutable pictures of a limiter, for status pages and tests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ClassSnapshot", "LimiterSnapshot", "percentile", "percentile_of_sorted"]


class ClassSnapshot(BaseModel):
    """One workload class of a limiter at one instant."""

    model_config = ConfigDict(frozen=True)

    name: str
    share: float
    minimum_floor: int
    max_concurrency: int | None
    rate: float | None
    burst: float | None
    tokens: float | None
    in_flight: int
    waiting: int
    admitted_total: int
    rejected_total: int
    timed_out_total: int
    cancelled_total: int
    wait_p50_seconds: float
    wait_p99_seconds: float


class LimiterSnapshot(BaseModel):
    """A limiter at one instant; the wait percentiles cover each class's recent admissions."""

    model_config = ConfigDict(frozen=True)

    name: str
    rate: float
    burst: float
    tokens: float
    max_concurrency: int | None
    in_flight: int
    waiting: int
    admitted_total: int
    rejected_total: int
    timed_out_total: int
    cancelled_total: int
    wait_p50_seconds: float
    wait_p99_seconds: float
    classes: tuple[ClassSnapshot, ...]
    shared_budget: Literal["shared", "unavailable"] | None = Field(
        default=None,
        description="A budget shared through a backend: 'shared' while it answers, "
        "'unavailable' while the limiter runs on its local fallback; null for a local limiter.",
    )
    shared_budget_reason: str | None = Field(
        default=None, description="Why the shared budget is unavailable."
    )
    fallback_rate: float | None = Field(
        default=None, description="The local fallback's rate while the shared budget is away."
    )

    def workload_class(self, name: str) -> ClassSnapshot:
        """The snapshot of the class called ``name`` (``KeyError`` if unknown)."""
        for snapshot in self.classes:
            if snapshot.name == name:
                return snapshot
        raise KeyError(name)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0.0 for none)."""
    return percentile_of_sorted(sorted(values), fraction)


def percentile_of_sorted(ordered: list[float], fraction: float) -> float:
    """:func:`percentile` of a list already in ascending order (no copy, no sort)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))
    return ordered[rank]
