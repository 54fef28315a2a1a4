"""Replay a recorded trace as a live source, on the caller's clock.

The first ``read()`` (or an explicit ``start``) fixes the origin: a read at
``now`` answers, for each queue, the trace's latest row with
``t <= trace.start + (now - start)``, re-stamped ``sampled_at=now`` (the
protocol: ``now`` stamps the readings).  A row with an empty ``messages_ready``
cell, and any time before a queue's first row, is a ``no_sample`` failure; a
queue the trace never mentions is ``missing_queue``.  After the trace's end the
last rows hold, unless ``loop=True`` starts the trace over.

This is the live counterpart of :func:`admission.simulate.replay` (which steps the
engine tick by tick on the trace's own clock, and counts a tick without a row
as a failed read); here a gap between rows holds the previous row.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import pairwise

import anyio.lowlevel

from admission._trace import Trace, TraceRow, TraceSource, load_trace
from admission.telemetry.base import FailureKind, ReadFailure, Reading

__all__ = ["ReplaySource"]


class ReplaySource:
    """A :class:`~admission.telemetry.PressureSource` answering from a recorded trace.

    ``trace`` is a :class:`~admission._trace.Trace`, a CSV path or rows (see
    :func:`~admission.simulate.load_trace`).  With ``loop=True`` the trace
    repeats with a period of its span plus one sampling interval (the smallest
    step between its distinct times), so the last row keeps its slot.
    """

    def __init__(
        self, trace: Trace | TraceSource, *, start: float | None = None, loop: bool = False
    ) -> None:
        self.trace = load_trace(trace)
        if start is not None and not math.isfinite(start):
            raise ValueError(f"start must be a finite number, got {start!r}")
        self._start = start
        self.loop = loop
        by_queue: dict[str, list[TraceRow]] = {}
        for row in self.trace.rows:  # already ordered by t
            by_queue.setdefault(row.queue, []).append(row)
        self._rows = by_queue
        self._times = {queue: [row.t for row in rows] for queue, rows in by_queue.items()}
        times = sorted({row.t for row in self.trace.rows})
        step = min((b - a for a, b in pairwise(times)), default=0.0)
        #: The loop's period: the trace's span plus one sampling interval.
        self.period = self.trace.end - self.trace.start + step

    @property
    def start(self) -> float | None:
        """The caller's time that maps to the trace's start (set by the first read)."""
        return self._start

    def position(self, now: float) -> float:
        """The trace time (its own ``t``) that a read at ``now`` answers for."""
        origin = now if self._start is None else self._start
        offset = now - origin
        if self.loop and offset >= 0 and self.period > 0:
            offset %= self.period
        return self.trace.start + offset

    def finished(self, now: float) -> bool:
        """Whether ``now`` is past the trace's last row (never, when looping)."""
        return not self.loop and self.position(now) > self.trace.end

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        """Each queue's latest row at ``now``; never raises (bar cancellation)."""
        await anyio.lowlevel.checkpoint()
        if self._start is None:
            self._start = now
        out: dict[str, Reading] = {}
        try:
            position = self.position(now)
            wrapped = self.loop and now - self._start >= self.period > 0
            for queue in queues:
                out[queue] = self._answer(queue, position, wrapped, now)
        except Exception as exc:  # the contract: a source never raises
            reason = f"{type(exc).__name__}: {exc}"
            return {q: ReadFailure(q, now, FailureKind.SOURCE_ERROR, reason) for q in queues}
        return out

    def _answer(self, queue: str, position: float, wrapped: bool, now: float) -> Reading:
        rows = self._rows.get(queue)
        if rows is None:
            reason = f"{self.trace.source}: queue {queue!r} is not in the trace"
            return ReadFailure(queue, now, FailureKind.MISSING_QUEUE, reason)
        index = bisect_right(self._times[queue], position)
        if index == 0:
            if not wrapped:
                reason = (
                    f"{self.trace.source}: no row for {queue!r} yet at t={position:g} "
                    f"(its first is at t={rows[0].t:g})"
                )
                return ReadFailure(queue, now, FailureKind.NO_SAMPLE, reason)
            index = len(rows)  # a later pass: the previous pass's last row still holds
        row = rows[index - 1]
        if row.sample is None:
            reason = (
                f"{self.trace.source}:{row.line}: no messages_ready for {queue!r} at "
                f"t={row.t:g} (empty cell)"
            )
            return ReadFailure(queue, now, FailureKind.NO_SAMPLE, reason)
        return replace(row.sample, sampled_at=now)

    async def aclose(self) -> None:
        """Nothing to release; present for the protocol."""

    def __repr__(self) -> str:
        return (
            f"ReplaySource(trace={self.trace.source!r}, queues={len(self._rows)}, "
            f"start={self._start!r}, loop={self.loop!r})"
        )
