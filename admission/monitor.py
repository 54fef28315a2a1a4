"""The pressure monitor: poll the source, feed the engine, retune the limiters.

One tick: read every watched queue (the source answers a sample or a failure
per queue), step the registry's engine, which records the transitions and
retunes the limiters whose class limits changed.  Ticks repeat every
``interval`` seconds (with a little jitter, so replicas do not poll in step).

Faults stay inside a tick: a source that breaks its promise and raises, a
bad value, an engine or retune error are logged and counted, and the next tick
runs.  If ticks keep failing, or the monitor stops for any reason (shutdown,
cancellation, crash), the registry puts every governed class in fail-safe: a
limiter never keeps permissive limits because its governor died.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from admission import events
from admission._tasks import start_owned, stop_owned
from admission.clock import Clock
from admission.policy import Decision, FailureKind, Observation, QueueSample, ReadFailure
from admission.registry import Registry, default_registry
from admission.telemetry.base import PressureSource

__all__ = ["MonitorStatistics", "PressureMonitor"]


@dataclass(frozen=True, slots=True)
class MonitorStatistics:
    """Counters of a monitor since it was built."""

    running: bool
    ticks: int
    failed_ticks: int
    consecutive_failed_ticks: int
    telemetry_errors: int
    last_tick_at: float | None


class PressureMonitor:
    """Polls ``source`` for the registry's queues and governs its limiters.

    ``queues`` are added to the registry's watched queues (the configured ones
    are always watched).  ``interval`` defaults to the configuration's
    ``poll_interval_seconds``; each wait is ``interval * (1 ± jitter)``.
    After ``failed_ticks_to_fail_safe`` ticks in a row that raised, the
    registry goes to fail-safe as if the monitor had stopped.

    Use it as ``async with PressureMonitor(source) as monitor:`` or start it in
    your own task group with ``await task_group.start(monitor.run)``.
    """

    def __init__(
        self,
        source: PressureSource,
        *,
        registry: Registry | None = None,
        queues: Sequence[str] = (),
        interval: float | None = None,
        jitter: float = 0.1,
        failed_ticks_to_fail_safe: int = 3,
        close_source: bool = True,
        seed: int | None = None,
    ) -> None:
        self.registry = registry if registry is not None else default_registry()
        interval = self.registry.config.poll_interval_seconds if interval is None else interval
        if not (isinstance(interval, int | float) and 0 < interval < float("inf")):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if not (isinstance(jitter, int | float) and 0 <= jitter < 1):
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        if failed_ticks_to_fail_safe < 1:
            raise ValueError(
                f"failed_ticks_to_fail_safe must be >= 1, got {failed_ticks_to_fail_safe!r}"
            )
        self.source = source
        self.interval = float(interval)
        self.jitter = float(jitter)
        self.failed_ticks_to_fail_safe = failed_ticks_to_fail_safe
        self._close_source = close_source
        self._random = random.Random(seed)
        self._extra_queues = tuple(queues)
        self._running = False
        self._task_group: TaskGroup | None = None
        self._ticks = 0
        self._failed_ticks = 0
        self._consecutive_failed = 0
        self._telemetry_errors = 0
        self._last_tick_at: float | None = None
        self._errors: dict[str, str] = {}  # queue -> the reason of its failure streak

    @property
    def clock(self) -> Clock:
        return self.registry.clock

    @property
    def running(self) -> bool:
        return self._running

    def statistics(self) -> MonitorStatistics:
        return MonitorStatistics(
            self._running,
            self._ticks,
            self._failed_ticks,
            self._consecutive_failed,
            self._telemetry_errors,
            self._last_tick_at,
        )

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("this PressureMonitor is already entered")
        self._task_group = await start_owned(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        await stop_owned(task_group)
        return None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tick until cancelled; ``task_status.started()`` after the first tick."""
        if self._running:
            raise RuntimeError("this PressureMonitor is already running")
        self._running = True
        reason = "cancelled"
        self.registry.watch(self._extra_queues)
        self.registry.governor_started()
        events.logger().info(
            events.MONITOR_STARTED, queues=list(self.registry.queues), interval=self.interval
        )
        try:
            await self.tick()
            task_status.started()
            while True:
                # Ticks keep their cadence: a slow read does not push the next one back.
                started = self._last_tick_at if self._last_tick_at is not None else 0.0
                due = started + self._next_delay()
                await self.clock.sleep(max(0.0, due - self.clock.monotonic()))
                await self.tick()
        except BaseException as exc:
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                reason = f"crashed: {type(exc).__name__}: {exc}"
            raise
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                self.registry.governor_stopped(reason)
                events.logger().warning(events.MONITOR_STOPPED, reason=reason)
                if self._close_source:
                    await self._close()

    # -- one tick -------------------------------------------------------------

    async def tick(self) -> Decision | None:
        """Poll once, evaluate, retune.  Never raises (but for cancellation)."""
        now = self.clock.monotonic()
        queues = self.registry.queues
        self._ticks += 1
        self._last_tick_at = now
        try:
            answers: Mapping[str, object] = await self.source.read(queues, now=now)
        except Exception as exc:
            # The source broke its promise to return failures as values: every
            # queue failed this read, none is "empty".
            reason = f"source raised {type(exc).__name__}: {exc}"
            answers = {q: ReadFailure(q, now, FailureKind.SOURCE_ERROR, reason) for q in queues}
        observations = {q: self._checked(q, answers.get(q), now) for q in queues}
        self._log_telemetry(observations)
        try:
            decision = self.registry.observe(observations, now)
        except Exception as exc:
            self._failed_ticks += 1
            self._consecutive_failed += 1
            events.logger().error(
                events.TICK_ERROR,
                error=f"{type(exc).__name__}: {exc}",
                consecutive=self._consecutive_failed,
                exc_info=exc,
            )
            if self._consecutive_failed >= self.failed_ticks_to_fail_safe:
                self.registry.governor_stopped(
                    f"{self._consecutive_failed} ticks in a row failed: {type(exc).__name__}"
                )
            return None
        if self._consecutive_failed:
            self._consecutive_failed = 0
            self.registry.governor_started()
        return decision

    def _checked(self, queue: str, answer: object, now: float) -> Observation:
        """The answer for ``queue``, or a failure saying what was wrong with it."""
        if answer is None:
            return ReadFailure(queue, now, FailureKind.NO_SAMPLE, "the source gave no answer")
        if isinstance(answer, QueueSample | ReadFailure):
            if answer.queue != queue:
                return ReadFailure(
                    queue,
                    now,
                    FailureKind.SOURCE_ERROR,
                    f"the source answered for queue {answer.queue!r}",
                )
            return answer
        return ReadFailure(
            queue,
            now,
            FailureKind.SOURCE_ERROR,
            f"the source answered a {type(answer).__name__}, not a sample",
        )

    def _log_telemetry(self, observations: Mapping[str, Observation]) -> None:
        """One event when a queue's failure streak starts or changes reason, one when it ends."""
        log = events.logger()
        for queue, observation in observations.items():
            if isinstance(observation, ReadFailure):
                self._telemetry_errors += 1
                if self._errors.get(queue) != observation.reason:
                    self._errors[queue] = observation.reason
                    log.warning(
                        events.TELEMETRY_ERROR,
                        queue=queue,
                        kind=observation.kind.value,
                        reason=observation.reason,
                    )
            elif queue in self._errors:
                del self._errors[queue]
                log.info(events.TELEMETRY_RECOVERED, queue=queue, health=observation.health)

    def _next_delay(self) -> float:
        if not self.jitter:
            return self.interval
        return self.interval * (1 + self._random.uniform(-self.jitter, self.jitter))

    async def _close(self) -> None:
        try:
            await self.source.aclose()
        except Exception as exc:
            events.logger().warning(
                events.TELEMETRY_ERROR, queue=None, kind="close", reason=f"{type(exc).__name__}"
            )

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<PressureMonitor {state} interval={self.interval:g}s source={self.source!r}>"
