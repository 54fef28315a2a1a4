"""``Demo``: the status server, the pipeline, the view, then the summary and its files.

``await Demo(DemoOptions(...)).run()`` plays the scenario and returns its
:class:`DemoSummary`; cancelled (Ctrl-C), it still writes and prints the
summary of what ran, then lets the cancellation through.  Tests drive it in
their own task group: ``await demo.started()`` answers the status URL once the
server answers, and ``await demo.wait_until(predicate)`` the first recorder
sample that satisfies ``predicate``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import IO, Literal

import anyio
import structlog
from rich.console import Console

from admission import events
from admission.clock import ScaledClock, SystemClock
from admission.demo.broker import Broker, MemoryBroker
from admission.demo.pipeline import Pipeline
from admission.demo.report import print_summary
from admission.demo.scenario import DEFAULT_DURATION, QUEUES, Scenario
from admission.demo.server import StatusServer
from admission.demo.summary import DemoSummary, summarize, write_outputs
from admission.demo.timeline import Recorder, Sample
from admission.demo.view import LiveView, PlainView
from admission.policy import parse_config
from admission.registry import Registry
from admission.telemetry._amqp import mask_amqp_url

__all__ = ["DEFAULT_SPEED", "RABBITMQ_SPEED", "Demo", "DemoOptions"]

#: Scenario seconds per real second by default: the 10-minute scenario in 40 s.
DEFAULT_SPEED = 15.0
#: The default on a real broker, whose management API refreshes every 5 real seconds.
RABBITMQ_SPEED = 2.0
#: Scenario seconds between two recorder samples.
SAMPLE_EVERY = 2.0

View = Literal["auto", "live", "plain", "none"]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How to run the demo (the ``admission demo`` options)."""

    #: Scenario seconds per real second (default 15; 2 on a real broker).
    speed: float | None = None
    duration: float = DEFAULT_DURATION
    port: int = 0
    output_dir: Path = field(default_factory=lambda: Path("demo-output"))
    #: Draw the timeline PNG; ``None``: when matplotlib is installed.
    plot: bool | None = None
    rabbitmq_url: str | None = None
    #: The management API of ``rabbitmq_url``'s broker (default: its host, port 15672).
    management_url: str | None = None
    #: ``auto``: live on a terminal, plain lines otherwise; ``none``: only the banner and summary.
    view: View = "auto"
    #: Write the library's structlog events to ``output_dir/events.jsonl`` during the run.
    events_log: bool = True

    def __post_init__(self) -> None:
        for name in ("speed", "duration"):
            value = getattr(self, name)
            if name == "speed" and value is None:
                continue
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"--{name} must be a finite number > 0, got {value!r}")
        if self.view not in ("auto", "live", "plain", "none"):
            raise ValueError(f"view must be auto, live, plain or none, got {self.view!r}")
        if self.plot and importlib.util.find_spec("matplotlib") is None:
            raise ValueError("--plot needs matplotlib: pip install 'admission[plot]'")
        if self.rabbitmq_url is not None:
            from admission.demo.rabbitmq import check_urls

            check_urls(self.rabbitmq_url, self.management_url)
        elif self.management_url is not None:
            raise ValueError("--management-url goes with --rabbitmq-url")

    def __repr__(self) -> str:
        # The broker URLs carry the password: a repr may end up in a log.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_url") and isinstance(value, str):
                value = mask_amqp_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"DemoOptions({', '.join(shown)})"

    @property
    def resolved_speed(self) -> float:
        if self.speed is not None:
            return self.speed
        return DEFAULT_SPEED if self.rabbitmq_url is None else RABBITMQ_SPEED

    @property
    def draws_plot(self) -> bool:
        if self.plot is None:
            return importlib.util.find_spec("matplotlib") is not None
        return self.plot


class Demo:
    """One run of the demo (see the module docstring)."""

    def __init__(
        self, options: DemoOptions | None = None, *, stream: IO[str] | None = None
    ) -> None:
        self.options = options if options is not None else DemoOptions()
        self.console = Console(
            file=stream if stream is not None else sys.stdout,
            highlight=False,
            width=None if stream is None and sys.stdout.isatty() else 160,
        )
        self.clock = ScaledClock(self.options.resolved_speed)
        self.scenario = Scenario.build(self.options.duration)
        # No [[queues]]: the monitor watches them when it starts, so their staleness
        # counts from then, not from whatever set-up (a broker's) came first.
        self.registry = Registry(parse_config({"preset": "balanced"}), clock=self.clock)
        self.server = StatusServer(self.registry, port=self.options.port)
        self.status_url: str | None = None
        self.summary: DemoSummary | None = None
        self.pipeline: Pipeline | None = None
        self.recorder: Recorder | None = None
        self._started: anyio.Event | None = None
        self._broker: Broker | None = None
        self._ran = False

    @property
    def mode(self) -> str:
        return "in-memory queues" if self._broker is None else self._broker.name

    # -- hooks for whoever watches (tests) ------------------------------------------

    def _started_event(self) -> anyio.Event:
        if self._started is None:
            self._started = anyio.Event()
        return self._started

    async def started(self) -> str:
        """The status URL, once the server answers and the pipeline runs."""
        await self._started_event().wait()
        assert self.status_url is not None
        return self.status_url

    async def wait_until(self, predicate: Callable[[Sample], bool]) -> Sample:
        """The first sample from now on satisfying ``predicate`` (``EOFError``: the run ended)."""
        await self.started()
        assert self.recorder is not None
        return await self.recorder.wait_until(predicate)

    # -- the run ----------------------------------------------------------------------

    def _make_broker(self) -> Broker:
        url = self.options.rabbitmq_url
        if url is None:
            return MemoryBroker(QUEUES)
        from admission.demo.rabbitmq import RabbitBroker

        return RabbitBroker(url, management_url=self.options.management_url, clock=self.clock)

    async def run(self) -> DemoSummary:
        """Play the scenario; the summary (also printed, and written to ``output_dir``)."""
        if self.pipeline is not None:
            raise RuntimeError("a Demo runs once: build another one")
        real = SystemClock()
        began = real.monotonic()
        self.server.bind()
        try:
            broker = self._broker = self._make_broker()
            pipeline = self.pipeline = Pipeline(self.scenario, broker, self.registry)
            recorder = self.recorder = Recorder(pipeline, every=SAMPLE_EVERY)
        except BaseException:
            self.server.close()
            raise
        restore = self._log_events()
        completed = False
        try:
            with _one_error():
                await self._play(broker, pipeline, recorder)
            completed = True
        finally:
            self.server.close()
            recorder.close()
            restore()
            if self._ran:
                # Synchronous: a cancellation (Ctrl-C) cannot cut the summary short.
                self.summary = self._finish(real.monotonic() - began, not completed)
        assert self.summary is not None
        return self.summary

    async def _play(self, broker: Broker, pipeline: Pipeline, recorder: Recorder) -> None:
        async with anyio.create_task_group() as tg:
            self.status_url = await tg.start(self.server.run)
            async with broker, pipeline:
                self._ran = True
                self._banner()
                async with anyio.create_task_group() as watchers:
                    await watchers.start(recorder.run)
                    self._started_event().set()
                    watchers.start_soon(self._view(recorder).run)
                    await pipeline.play()
                    recorder.take()  # the status at the very end, before anything stops
                    recorder.close()
            tg.cancel_scope.cancel()

    def _view(self, recorder: Recorder) -> LiveView | PlainView | _NoView:
        view = self.options.view
        if view == "auto":
            view = "live" if self.console.is_terminal else "plain"

        def origin() -> datetime:
            assert self.pipeline is not None
            return self.registry.to_wall(self.pipeline.t0)

        if view == "live":
            return LiveView(
                self.console,
                recorder,
                self.registry,
                title=f"admission demo ({self.mode}, preset balanced)",
                duration=self.scenario.duration,
                origin=origin,
            )
        if view == "plain":
            return PlainView(self.console, recorder, self.registry, origin=origin)
        return _NoView()

    def _banner(self) -> None:
        url = self.status_url
        scenario = self.scenario
        real = scenario.duration / self.clock.speed
        self.console.print(
            f"admission demo: a Nemesis-like pipeline on {self.mode}, preset balanced\n"
            f"  scenario: {scenario.duration:g}s played at {self.clock.speed:g}x "
            f"(about {real:.0f}s); {scenario.total_files} files\n"
            f"  status:   {url}\n"
            f"  try:      curl -s {url} | python3 -m json.tool\n"
            f"       or:  admission status --url {url}\n"
            f"  output:   {self.options.output_dir}/\n"
            "  Ctrl-C stops it early (the summary is still printed)",
            markup=False,
        )

    def _log_events(self) -> Callable[[], None]:
        """Send the library's events to a file for the run; the callable restores logging."""
        if not self.options.events_log:
            return lambda: None
        previous = structlog.get_config()
        self.options.output_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.options.output_dir / "events.jsonl").open("w", encoding="utf-8")
        events.configure_logging("json", stream=handle)

        def restore() -> None:
            structlog.configure(**previous)
            handle.close()

        return restore

    def _finish(self, real_seconds: float, interrupted: bool) -> DemoSummary:
        pipeline, recorder = self.pipeline, self.recorder
        assert pipeline is not None
        assert recorder is not None
        latest = recorder.latest
        final_status = latest.status if latest is not None else self.registry.status()
        summary = summarize(
            mode=self.mode,
            speed=self.clock.speed,
            duration=self.scenario.duration,
            played=latest.t if latest is not None else 0.0,
            real_seconds=real_seconds,
            interrupted=interrupted,
            origin=self.registry.to_wall(pipeline.t0),
            records=self.registry.transitions(),
            final_status=final_status,
            stages=[s.to_dict() for s in pipeline.stats.values()],
            admitted=pipeline.admitted(),
            accounts=pipeline.accounts,
        )
        summary = write_outputs(
            summary,
            self.options.output_dir,
            samples=recorder.samples,
            every=SAMPLE_EVERY,
            plot=self.options.draws_plot,
        )
        print_summary(self.console, summary)
        return summary


@contextmanager
def _one_error() -> Iterator[None]:
    """A failure in one task comes out as itself, not inside (nested) exception groups."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) != 1:
            raise
        raise leaves[0] from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


class _NoView:
    async def run(self) -> None:
        return None
