"""Draw a replay: each queue's signal, its thresholds, and its levels shaded.

Needs the ``plot`` extra (matplotlib), imported only when a plot is drawn; the
figure is rendered by the Agg canvas directly (no pyplot, no GUI backend, no
global state).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from admission.simulate import QueueTimeline, ReplayResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LEVEL_COLOURS", "plot_replay"]

#: Shading per level (``normal`` is not shaded).
LEVEL_COLOURS = {
    "warning": "#f5c542",
    "critical": "#e0493b",
    "fail_safe": "#8c8c8c",
}


def plot_replay(result: ReplayResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as an image at ``path`` (format from the suffix; PNG if none).

    Raises ``ImportError`` without matplotlib, ``OSError`` when the file cannot
    be written, ``ValueError`` for a format matplotlib does not know.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    rows = max(1, len(result.timelines))
    figure = Figure(figsize=(11, 2.6 * rows + 0.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax, timeline in zip(axes, result.timelines, strict=False):
        _draw(ax, timeline, result.poll_interval_seconds)
    axes[-1].set_xlabel("t (s, trace clock)")
    handles = [
        Patch(facecolor=colour, alpha=0.35, label=level) for level, colour in LEVEL_COLOURS.items()
    ]
    figure.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8)
    figure.suptitle(
        f"{Path(result.source).name}: preset {result.preset}, "
        f"{result.flaps_per_hour:.1f} flaps/h, {len(result.fail_safe_spans)} fail-safe span(s)",
        fontsize=10,
    )
    figure.savefig(out, format=fmt, dpi=100)
    return out


def _draw(ax: Axes, timeline: QueueTimeline, interval: float) -> None:
    ys = [math.nan if v is None else v for v in timeline.signal]
    ax.plot(timeline.t, ys, color="#1f4e8c", linewidth=1.4, marker=".", markersize=3)
    ax.axhline(
        timeline.warning_threshold, color="#c98f00", linestyle="--", linewidth=1, label="warning"
    )
    ax.axhline(
        timeline.critical_threshold, color="#b3261e", linestyle="--", linewidth=1, label="critical"
    )
    for start, end, level in _runs(timeline, interval):
        colour = LEVEL_COLOURS.get(level)
        if colour is not None:
            ax.axvspan(start, end, color=colour, alpha=0.35, linewidth=0)
    ax.set_title(timeline.queue, fontsize=9, loc="left")
    ax.set_ylabel(timeline.signal_name, fontsize=8)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)


def _runs(timeline: QueueTimeline, interval: float) -> list[tuple[float, float, str]]:
    """Maximal runs of one level: (start t, end t, level); each tick lasts one interval."""
    runs: list[tuple[float, float, str]] = []
    for t, level in zip(timeline.t, timeline.level, strict=True):
        if runs and runs[-1][2] == level:
            runs[-1] = (runs[-1][0], t + interval, level)
        else:
            runs.append((t, t + interval, level))
    return runs
