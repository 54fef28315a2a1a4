"""What every benchmark shares: the floor context manager, statistics and result types."""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, TypeVar

__all__ = [
    "AsyncCM",
    "Cell",
    "Check",
    "NoopCM",
    "Row",
    "Section",
    "best",
    "cancel_all",
    "collect",
    "median",
    "progress",
    "rotated",
]

Cell = float | int | str | None
Row = dict[str, Cell]
T = TypeVar("T")


class AsyncCM(Protocol):
    """Anything usable as ``async with x:``."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...


class NoopCM:
    """The floor: an async context manager class that does nothing."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


@dataclass(frozen=True)
class Check:
    """A ratio (or a rate) set against a target; no bounds means it is only reported."""

    name: str
    value: float
    low: float | None = None
    high: float | None = None

    @property
    def target(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:.7g} .. {self.high:.7g}"
        if self.high is not None:
            return f"<= {self.high:.7g}"
        if self.low is not None:
            return f">= {self.low:.7g}"
        return "-"

    @property
    def met(self) -> bool | None:
        if self.low is None and self.high is None:
            return None
        return (self.low is None or self.value >= self.low) and (
            self.high is None or self.value <= self.high
        )

    @property
    def verdict(self) -> str:
        met = self.met
        return "(info)" if met is None else "met" if met else "NOT MET"


@dataclass
class Section:
    """One benchmark's outcome: raw figures (rows) and the ratios that matter (checks)."""

    key: str
    title: str
    method: str
    params: dict[str, Cell]
    columns: tuple[str, ...]
    rows: list[Row]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    #: format spec per column for the printed table (JSON keeps the raw value)
    formats: dict[str, str] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def best(values: Sequence[float]) -> float:
    return min(values)


def rotated(items: Sequence[T], by: int) -> list[T]:
    """``items`` started at ``by`` (mod len): each repeat runs the contenders in a new order."""
    k = by % len(items)
    return [*items[k:], *items[:k]]


def collect() -> None:
    """A clean heap before a measured run, so no run pays for its predecessor's garbage."""
    gc.collect()


async def cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel every task and wait until each has finished."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)
