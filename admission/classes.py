"""Workload classes: the named partitions of one limiter."""

from __future__ import annotations

import math
from dataclasses import dataclass

from admission.bucket import check_burst, check_rate

__all__ = ["WorkloadClass", "check_concurrency"]


def check_concurrency(value: int | None, *, field: str = "max_concurrency") -> int | None:
    """Validate a concurrency cap: ``None`` (no cap) or an int >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be >= 1, got {value!r}")
    return value


def check_floor(value: int, *, field: str = "minimum_floor") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value!r}")
    return value


def check_share(value: float, *, field: str = "share") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{field} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{field} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """A partition of a limiter's capacity.

    - ``share``: the class's weight when classes compete for the limiter's
      tokens and slots (start-time fair queuing on cost).  An idle class's
      share is used by the busy ones; they give it back as their permits end.
    - ``minimum_floor``: concurrency slots reserved for this class inside the
      limiter's cap, so another class saturating the limiter cannot starve it.
    - ``max_concurrency``, ``rate``, ``burst``: the class's own hard limits, on
      top of the limiter's (``None``: only the limiter's apply).  ``burst``
      defaults to ``max(1, rate)`` when only ``rate`` is given.
    """

    name: str
    share: float = 1.0
    minimum_floor: int = 0
    max_concurrency: int | None = None
    rate: float | None = None
    burst: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"workload class name must be a non-empty string, got {self.name!r}")
        check_share(self.share, field=f"classes[{self.name!r}].share")
        check_floor(self.minimum_floor, field=f"classes[{self.name!r}].minimum_floor")
        check_concurrency(self.max_concurrency, field=f"classes[{self.name!r}].max_concurrency")
        if self.max_concurrency is not None and self.minimum_floor > self.max_concurrency:
            raise ValueError(
                f"classes[{self.name!r}].minimum_floor={self.minimum_floor} is above "
                f"its max_concurrency={self.max_concurrency}"
            )
        if self.rate is not None:
            check_rate(self.rate, field=f"classes[{self.name!r}].rate")
        if self.burst is not None:
            if self.rate is None:
                raise ValueError(f"classes[{self.name!r}].burst={self.burst!r} needs a rate")
            check_burst(self.burst, field=f"classes[{self.name!r}].burst")
