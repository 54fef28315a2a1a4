"""The shared in-process registry: limiters, policy state, transitions, overrides.

One registry per process is the norm (:func:`default_registry`); tests build
their own.  Writers are the pressure monitor (:meth:`Registry.observe`) and
operators (overrides); readers are the status API, metrics and tests
(:meth:`Registry.status`).  Every change of the effective limits is applied to
the registered limiters at once, so an override retunes without waiting for the
next poll.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from admission import events
from admission._bindings import ActivityReporter, Binding, WorkInFlight, class_views
from admission._status_view import (
    ClassView,
    GovernorView,
    build_status,
    class_entry,
    queue_entry,
    transition_record,
)
from admission.clock import Clock, get_default_clock
from admission.limiter import AdaptiveLimiter
from admission.policy import (
    FAIL_SAFE,
    Decision,
    Level,
    LevelLimits,
    Observation,
    Override,
    PolicyConfig,
    PolicyEngine,
    PolicyState,
    QueueSample,
    Transition,
    parse_config,
)
from admission.status import (
    ClassStatus,
    OverrideStatus,
    QueueStatus,
    Status,
    TransitionRecord,
)

__all__ = ["Registry", "WorkInFlight", "default_registry", "set_default_registry"]


class Registry:
    """Holds the policy state and the limiters it governs.

    ``config`` defaults to the built-in presets (``balanced``); ``preset``
    replaces the configured one.  ``history`` bounds the transition log.
    """

    def __init__(
        self,
        config: PolicyConfig | None = None,
        *,
        preset: str | None = None,
        clock: Clock | None = None,
        history: int = 1000,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history!r}")
        self.config = config if config is not None else parse_config()
        self.engine = PolicyEngine(self.config, preset=preset)
        self.requested_preset = self.engine.preset.name
        self._clock = clock
        self._state: PolicyState = self.engine.start(self.clock.monotonic())
        self._bindings: list[Binding] = []
        self._limiters: dict[str, AdaptiveLimiter] = {}
        self._history: deque[TransitionRecord] = deque(maxlen=history)
        self._deferred: Counter[str] = Counter()
        self.transitions_total: Counter[tuple[str, str]] = Counter()
        self.retune_errors = 0
        self._governor = GovernorView("absent")
        self._activity: dict[str, ActivityReporter] = {}

    @property
    def clock(self) -> Clock:
        return self._clock if self._clock is not None else get_default_clock()

    @property
    def state(self) -> PolicyState:
        """The engine's latest state (immutable)."""
        return self._state

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(self._state.queues)

    @property
    def limiters(self) -> Mapping[str, AdaptiveLimiter]:
        return dict(self._limiters)

    # -- limiters -------------------------------------------------------------

    def add_limiter(self, limiter: AdaptiveLimiter, *, follows: str | None = None) -> None:
        """Govern ``limiter``: its limits follow the policy from now on.

        ``follows="expensive"`` makes the whole limiter follow that policy
        class (rate, burst, cap = parallelism).  Without it, each workload
        class of the limiter named after a policy class follows that class
        (``retune_class`` with rate, burst, cap and floor).
        """
        if limiter.name in self._limiters:
            raise ValueError(f"limiter {limiter.name!r} is already registered")
        known = tuple(self._state.classes)
        if follows is not None:
            if follows not in self._state.classes:
                raise ValueError(f"follows={follows!r}: no such policy class (known: {known})")
            bindings = [Binding(limiter, follows, None)]
        else:
            bindings = [
                Binding(limiter, name, name)
                for name in limiter.workload_classes
                if name in self._state.classes
            ]
            if not bindings:
                raise ValueError(
                    f"limiter {limiter.name!r} has no workload class named after a policy "
                    f"class (its classes: {limiter.workload_classes}; policy classes: {known}); "
                    "pass follows= to make the whole limiter follow one"
                )
        self._limiters[limiter.name] = limiter
        self._bindings.extend(bindings)
        self._apply_limits()

    def remove_limiter(self, name: str) -> AdaptiveLimiter:
        """Stop governing the limiter ``name`` (it keeps its current limits)."""
        limiter = self._limiters.pop(name)
        self._bindings = [b for b in self._bindings if b.limiter is not limiter]
        return limiter

    def add_activity(self, name: str, reporter: ActivityReporter) -> None:
        """Show what ``reporter`` answers in its classes' ``active`` status entries.

        Integrations that hold long-running work (workflows) register here so
        an operator sees which work runs, in which class, since when.
        """
        if name in self._activity:
            raise ValueError(f"activity reporter {name!r} is already registered")
        self._activity[name] = reporter

    def remove_activity(self, name: str) -> None:
        """Stop showing the work of reporter ``name`` (no error if it is gone)."""
        self._activity.pop(name, None)

    # -- the monitor's side ---------------------------------------------------

    def watch(self, queues: Iterable[str]) -> None:
        """Add queues to the state (normal, staleness clock running from now)."""
        new = [q for q in queues if q not in self._state.queues]
        if new:
            self._state = self.engine.step(self._state, {}, self.clock.monotonic()).state
            fresh = self.engine.start(self._state.at, new).queues
            queues_now = {**self._state.queues, **{q: fresh[q] for q in new}}
            self._state = PolicyState(
                self._state.at,
                self._state.preset,
                queues_now,
                self._state.classes,
                self._state.overrides,
            )
            self._commit(self.engine.step(self._state, {}, self._state.at))

    def observe(
        self, observations: Mapping[str, Observation], now: float | None = None
    ) -> Decision:
        """Step the engine with one tick's observations and apply the result.

        A limiter whose last retune failed is retried here, at every tick, so it
        does not keep limits the policy no longer allows until the next transition.
        """
        at = self.clock.monotonic() if now is None else now
        decision = self._commit(self.engine.step(self._state, observations, at))
        if any(b.retune_error is not None for b in self._bindings):
            self._apply_limits()
        return decision

    def record_deferred(self, class_name: str, count: int = 1) -> None:
        """Count admissions of ``class_name`` handed back for redelivery (gates call this)."""
        self._deferred[class_name] += count

    def governor_started(self) -> None:
        """A monitor now governs: fail-safe for a stopped monitor ends."""
        was_stopped = self._governor.monitor == "stopped"
        if was_stopped:
            # Nothing watched the queues while no monitor ran: a last good sample
            # that has gone stale meanwhile puts its queue in fail-safe now, left
            # after recovery_seconds of good samples as after any telemetry gap
            # (not straight back to the levels of before the stop).
            self._commit(self.engine.step(self._state, {}, self.clock.monotonic()))
        self._governor = GovernorView("running")
        if was_stopped:
            now = self.clock.monotonic()
            self._record_classes(
                now, FAIL_SAFE, "monitor_started", "pressure monitor running again", None
            )
            self._reapply()

    def governor_stopped(self, reason: str) -> None:
        """The monitor stopped: every governed class goes to fail-safe limits."""
        if self._governor.monitor == "stopped":
            return
        now = self.clock.monotonic()
        self._record_classes(
            now, None, "monitor_stopped", f"pressure monitor stopped ({reason})", FAIL_SAFE
        )
        self._governor = GovernorView("stopped", reason, now)
        self._reapply()

    # -- operators ------------------------------------------------------------

    def add_override(
        self,
        scope: str,
        name: str,
        *,
        ttl_seconds: float,
        level: Level | str | None = None,
        preset: str | None = None,
        reason: str = "",
    ) -> OverrideStatus:
        """Pin ``level`` or ``preset`` on a queue or a class for ``ttl_seconds``."""
        if scope not in ("queue", "class"):
            raise ValueError(f"scope must be 'queue' or 'class', got {scope!r}")
        if not (isinstance(ttl_seconds, int | float) and 0 < ttl_seconds < float("inf")):
            raise ValueError(f"ttl_seconds must be a positive number, got {ttl_seconds!r}")
        pinned = None
        if level is not None:
            try:
                pinned = Level(level)
            except ValueError:
                raise ValueError(
                    f"level={level!r}: not a level (normal, warning, critical)"
                ) from None
        now = self.clock.monotonic()
        override = Override(
            uuid.uuid4().hex[:12],
            scope,  # type: ignore[arg-type]
            name,
            now + ttl_seconds,
            now,
            pinned,
            preset,
            reason,
        )
        self._commit(self.engine.add_override(self._state, override, now))
        return next(o for o in self.status().overrides if o.id == override.id)

    def remove_override(self, override_id: str) -> None:
        """Lift an override now; ``KeyError`` if there is none with that id."""
        now = self.clock.monotonic()
        self._commit(self.engine.remove_override(self._state, override_id, now))

    # -- readers --------------------------------------------------------------

    def status(self) -> Status:
        """The whole status now (expired overrides are dropped first)."""
        now = self.clock.monotonic()
        self._commit(self.engine.expire(self._state, now))
        return self._build(self._state, now)

    def queue_status(self, name: str) -> QueueStatus:
        """One queue's entry (as in :meth:`status`); ``KeyError`` if it is not watched."""
        now = self.clock.monotonic()
        self._commit(self.engine.expire(self._state, now))
        if name not in self._state.queues:
            raise KeyError(name)
        return queue_entry(self.engine, self._state, name, now, self._walls())

    def class_status(self, name: str) -> ClassStatus:
        """One class's entry (as in :meth:`status`); ``KeyError`` if there is none."""
        now = self.clock.monotonic()
        self._commit(self.engine.expire(self._state, now))
        if name not in self._state.classes:
            raise KeyError(name)
        to_wall = self._walls()
        views, _ = self._class_views(self._state, now, to_wall, only=name)
        return class_entry(
            self._state, name, to_wall, views[name], self._governor, self._fail_safe_limits
        )

    def evaluate(
        self,
        observations: Mapping[str, Observation],
        *,
        preset: str | None = None,
        hold_seconds: float = 0.0,
    ) -> Status:
        """What-if: the status these observations (and ``preset``) would bring.

        ``hold_seconds`` answers "and if they held that long": the same
        readings are stepped every poll interval until then, so sustained and
        cooldown windows run their course.  Evaluated on a copy: nothing live
        changes, no limiter is retuned.  An unknown preset is a ``ConfigError``,
        a queue that is not watched a ``KeyError``.
        """
        if not (isinstance(hold_seconds, int | float) and 0 <= hold_seconds < float("inf")):
            raise ValueError(f"hold_seconds must be a number >= 0, got {hold_seconds!r}")
        unknown = [name for name in observations if name not in self._state.queues]
        if unknown:
            raise KeyError(unknown[0])
        engine = self.engine if preset is None else PolicyEngine(self.config, preset=preset)
        now = self.clock.monotonic()
        state = engine.what_if(self._state, observations, now).state
        interval = self.config.poll_interval_seconds
        elapsed = 0.0
        while elapsed < hold_seconds:
            elapsed = min(hold_seconds, elapsed + interval)
            at = now + elapsed
            state = engine.step(
                state, {q: _moved(o, at) for q, o in observations.items()}, at
            ).state
        return self._build(state, now + elapsed, engine)

    def transitions(self, limit: int | None = None) -> tuple[TransitionRecord, ...]:
        """The most recent transitions, oldest first (``limit`` of them)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        records = tuple(self._history)
        return records if limit is None else records[len(records) - limit :]

    def to_wall(self, instant: float) -> datetime:
        """The wall-clock time of a monotonic ``instant`` of this registry's clock."""
        clock = self.clock
        return clock.wall() - timedelta(seconds=clock.monotonic() - instant)

    # -- internals ------------------------------------------------------------

    def _build(self, state: PolicyState, now: float, engine: PolicyEngine | None = None) -> Status:
        to_wall = self._walls()
        classes, warnings = self._class_views(state, now, to_wall)
        return build_status(
            self.engine if engine is None else engine,
            state,
            now,
            to_wall,
            requested_preset=self.requested_preset,
            governor=self._governor,
            classes=classes,
            fail_safe_limits=self._fail_safe_limits,
            warnings=warnings,
        )

    def _walls(self) -> Callable[[float], datetime]:
        """:meth:`to_wall` with the clock read once, for the many instants of one status."""
        clock = self.clock
        wall, monotonic = clock.wall(), clock.monotonic()
        return lambda instant: wall - timedelta(seconds=monotonic - instant)

    def _class_views(
        self,
        state: PolicyState,
        now: float,
        to_wall: Callable[[float], datetime],
        *,
        only: str | None = None,
    ) -> tuple[dict[str, ClassView], tuple[str, ...]]:
        return class_views(
            state.classes,
            self._bindings,
            self._activity.values(),
            self._deferred,
            now,
            to_wall,
            only=only,
        )

    def _commit(self, decision: Decision) -> Decision:
        self._state = decision.state
        if decision.transitions:
            for transition in decision.transitions:
                self._record(transition)
            self._apply_limits()
        return decision

    def _record(self, transition: Transition) -> None:
        self._history.append(transition_record(transition, self.to_wall))
        self.transitions_total[(transition.scope, transition.reason)] += 1
        log = events.logger()
        fields = {
            "scope": transition.scope,
            "name": transition.name,
            "from_level": transition.from_level,
            "to_level": transition.to_level,
            "reason": transition.reason,
            "detail": transition.detail,
            "signal": transition.signal,
            "warning_threshold": transition.warning_threshold,
            "critical_threshold": transition.critical_threshold,
        }
        log.info(events.TRANSITION, **fields)
        if transition.to_level == FAIL_SAFE and transition.from_level != FAIL_SAFE:
            log.warning(events.FAIL_SAFE_ENTER, **fields)
        elif transition.from_level == FAIL_SAFE and transition.to_level != FAIL_SAFE:
            log.info(events.FAIL_SAFE_EXIT, **fields)
        if transition.reason == "override_expired":
            log.info(events.OVERRIDE_EXPIRED, **fields)

    def _record_classes(
        self, now: float, from_level: str | None, code: str, detail: str, to_level: str | None
    ) -> None:
        """One record per class for a change of governor (the engine does not see it)."""
        for name, cls in self._state.classes.items():
            before = from_level if from_level is not None else cls.display
            after = to_level if to_level is not None else cls.display
            if before != after:
                self._record(Transition("class", name, before, after, now, code, detail))

    def _fail_safe_limits(self, name: str) -> LevelLimits:
        safe = self.engine.fail_safe_preset.classes.get(name)
        return (safe if safe is not None else self.engine.preset.classes[name]).critical

    def _effective(self, name: str) -> LevelLimits:
        if self._governor.monitor == "stopped":
            return self._fail_safe_limits(name)
        return self._state.classes[name].limits

    def _reapply(self) -> None:
        for binding in self._bindings:
            binding.applied = None
        self._apply_limits()

    def _apply_limits(self) -> None:
        """Retune every limiter whose class limits changed; one failure spares the rest."""
        for binding in self._bindings:
            if binding.policy_class not in self._state.classes:
                continue
            limits = self._effective(binding.policy_class)
            if limits == binding.applied:
                continue
            try:
                if binding.workload_class is None:
                    binding.limiter.retune(
                        rate=limits.rate, burst=limits.burst, max_concurrency=limits.parallelism
                    )
                else:
                    binding.limiter.retune_class(
                        binding.workload_class,
                        rate=limits.rate,
                        burst=limits.burst,
                        max_concurrency=limits.parallelism,
                        minimum_floor=limits.minimum_floor,
                    )
            except Exception as exc:
                self.retune_errors += 1
                error = f"{type(exc).__name__}: {exc}"
                if error != binding.retune_error:  # one event per streak, not one per tick
                    events.logger().error(
                        events.RETUNE_ERROR,
                        limiter=binding.limiter.name,
                        workload_class=binding.workload_class,
                        policy_class=binding.policy_class,
                        error=error,
                    )
                binding.retune_error = error
                continue
            binding.applied = limits
            binding.retune_error = None


def _moved(observation: Observation, at: float) -> Observation:
    """The same reading, taken at ``at`` (a what-if holds readings steady)."""
    if isinstance(observation, QueueSample):
        return replace(observation, sampled_at=at)
    return replace(observation, at=at)


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry (built on first use from the built-in presets)."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def set_default_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (``None`` resets it); returns the previous one."""
    global _default
    previous, _default = _default, registry
    return previous
