"""The demo, watched: a live rich table on a terminal, plain lines otherwise (CI logs).

Both read the recorder's samples.  The live view shows, per queue, its depth,
level, the window running (pending level and time left) and its telemetry; per
workload class, its effective parallelism, rate, work in flight and waiting,
and the hand-backs; then the latest transitions with their reasons.  The plain
view prints one line every ``every`` scenario seconds and one per transition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from admission.clock import SystemClock
from admission.demo.timeline import Recorder, Sample
from admission.registry import Registry
from admission.status import TransitionRecord

__all__ = ["LEVEL_STYLES", "LiveView", "PlainView", "render"]

LEVEL_STYLES = {
    "normal": "green",
    "warning": "yellow",
    "critical": "bold red",
    "fail_safe": "bold magenta",
}
#: Stage -> what the live view calls its work.
STAGE_VERBS = {
    "file_enrichment": "enriched",
    "document_conversion": "converted",
    "titus_scanner": "scanned",
}
# Real seconds between two redraws of the live view (rich cannot show more anyway).
_REDRAW = 0.125


def _level(level: str) -> Text:
    return Text(level, style=LEVEL_STYLES.get(level, ""))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def scenario_time(record: TransitionRecord, origin: datetime) -> float:
    return (record.at - origin).total_seconds()


def render(
    sample: Sample,
    *,
    title: str,
    duration: float,
    transitions: Sequence[TransitionRecord],
    origin: datetime,
) -> RenderableType:
    """One frame of the live view."""
    status = sample.status
    phase = f"phase [bold]{escape(sample.phase)}[/bold]"
    if sample.outage:
        phase += " [bold magenta](telemetry outage)[/bold magenta]"
    head = Text.from_markup(
        f"{escape(title)}  t=[bold]{sample.t:.0f}s[/bold] of {duration:g}s  {phase}  level "
    )
    head.append_text(_level(sample.headline))

    queues = Table(title="Queues", title_justify="left", expand=False)
    for column in ("queue", "ready", "unacked", "level", "pending", "time left", "telemetry"):
        queues.add_column(column, justify="right" if column in ("ready", "unacked") else "left")
    for q in status.queue_states:
        window = q.window
        pending = f"{window.kind} -> {window.pending_level}" if window is not None else "-"
        left = _seconds(window.remaining_seconds) if window is not None else "-"
        health: str = q.telemetry.health
        if q.telemetry.consecutive_failures:
            health += f" ({q.telemetry.consecutive_failures} failed)"
        queues.add_row(
            escape(q.queue),
            "-" if q.queued_messages is None else str(q.queued_messages),
            "-" if q.processing_messages is None else str(q.processing_messages),
            _level(q.severity),
            pending,
            left,
            health,
        )

    classes = Table(title="Workload classes", title_justify="left", expand=False)
    for column in ("class", "level", "parallelism", "rate/s", "in flight", "waiting", "deferred"):
        classes.add_column(column, justify="left" if column in ("class", "level") else "right")
    classes.add_column("why", justify="left", max_width=60, overflow="ellipsis", no_wrap=True)
    for c in status.class_states:
        classes.add_row(
            escape(c.class_name),
            _level(c.level),
            str(c.active_parallelism),
            f"{c.rate:g}",
            str(c.in_flight),
            str(c.waiting),
            str(c.deferred_total),
            escape(c.reason),
        )

    figures = sample.figures
    work = [f"produced {figures.produced}"]
    work += [f"{STAGE_VERBS.get(k, k)} {v}" for k, v in figures.processed.items()]
    work.append(f"handed back {sum(figures.handed_back.values())}")
    work.append(f"redelivered {sum(figures.redelivered.values())}")
    counters = Text("  ".join(work))

    latest = Table(
        title="Latest transitions (queues; the classes follow)", title_justify="left", expand=False
    )
    for column in ("t", "scope", "name", "from", "to", "why"):
        latest.add_column(column, justify="right" if column == "t" else "left")
    latest.columns[-1].max_width = 70
    latest.columns[-1].overflow = "ellipsis"
    latest.columns[-1].no_wrap = True
    for record in transitions:
        latest.add_row(
            f"{scenario_time(record, origin):.0f}s",
            record.scope,
            escape(record.name),
            _level(record.from_level),
            _level(record.to_level),
            escape(f"{record.reason}: {record.detail}"),
        )
    if not transitions:
        latest.add_row("-", "-", "-", "-", "-", "none yet: every level holds")
    return Group(head, queues, classes, counters, latest)


class LiveView:
    """Redraws :func:`render` on a terminal as samples arrive (at most 8 times a real second)."""

    def __init__(
        self,
        console: Console,
        recorder: Recorder,
        registry: Registry,
        *,
        title: str,
        duration: float,
        origin: Callable[[], datetime],
    ) -> None:
        self.console = console
        self.recorder = recorder
        self.registry = registry
        self.title = title
        self.duration = duration
        self.origin = origin

    async def run(self) -> None:
        real = SystemClock()
        last_draw = -_REDRAW
        index = -1
        with Live(console=self.console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    sample = await self.recorder.next_after(index)
                    index = sample.index
                    if real.monotonic() - last_draw < _REDRAW:
                        continue
                    last_draw = real.monotonic()
                    live.update(self._frame(sample), refresh=True)
            except EOFError:
                pass
            finally:
                latest = self.recorder.latest
                if latest is not None:
                    live.update(self._frame(latest), refresh=True)

    def _frame(self, sample: Sample) -> RenderableType:
        return render(
            sample,
            title=self.title,
            duration=self.duration,
            transitions=[t for t in self.registry.transitions() if t.scope == "queue"][-6:],
            origin=self.origin(),
        )


class PlainView:
    """A line every ``every`` scenario seconds, and one per transition, as they happen."""

    def __init__(
        self,
        console: Console,
        recorder: Recorder,
        registry: Registry,
        *,
        origin: Callable[[], datetime],
        every: float = 10.0,
    ) -> None:
        self.console = console
        self.recorder = recorder
        self.registry = registry
        self.origin = origin
        self.every = every
        self._printed = 0

    async def run(self) -> None:
        index = -1
        next_line = 0.0
        try:
            while True:
                try:
                    sample = await self.recorder.next_after(index)
                except EOFError:
                    return
                index = sample.index
                self._new_transitions()
                if sample.t >= next_line:
                    self.console.print(line(sample), markup=False, highlight=False, soft_wrap=True)
                    next_line = sample.t - sample.t % self.every + self.every
        finally:
            # Whatever stopped it (the end, Ctrl-C), the last transitions are shown.
            self._new_transitions()

    def _new_transitions(self) -> None:
        total = sum(self.registry.transitions_total.values())
        fresh = total - self._printed
        if fresh <= 0:
            return
        self._printed = total
        origin = self.origin()
        for record in self.registry.transitions(limit=fresh):
            self.console.print(
                f"t={scenario_time(record, origin):6.1f}s  transition  {record.scope} "
                f"{record.name}: {record.from_level} -> {record.to_level} "
                f"({record.reason}: {record.detail})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def line(sample: Sample) -> str:
    """One plain status line."""
    status = sample.status
    queues = " | ".join(
        f"{q.queue} {'-' if q.queued_messages is None else q.queued_messages} {q.severity}"
        for q in status.queue_states
    )
    expensive = next((c for c in status.class_states if c.class_name == "expensive"), None)
    cls = ""
    if expensive is not None:
        cls = (
            f" | expensive x{expensive.active_parallelism} {expensive.rate:g}/s "
            f"deferred {expensive.deferred_total}"
        )
    done = " ".join(f"{STAGE_VERBS.get(k, k)} {v}" for k, v in sample.figures.processed.items())
    outage = " (telemetry outage)" if sample.outage else ""
    return (
        f"t={sample.t:6.1f}s  {sample.phase:<9} {sample.headline:<9}{outage} | {queues}{cls}"
        f" | produced {sample.figures.produced} {done}"
    )
