"""The policy engine: a pure state machine ``(state, observations, now) -> decision``.

No I/O, no clock reads, no sleeps: the caller says what time it is.  The
semantics are DESIGN.md "Policy semantics (exact)":

- escalation to a level after the signal has stayed at or above its enter
  threshold for ``sustained_seconds``; a sample below resets that window;
- de-escalation after the signal has stayed below the current level's exit
  threshold (``exit_ratio * threshold``) for ``cooldown_seconds``, onto the
  highest level a sample in that window reached; a sample at or above the exit
  threshold resets it (hysteresis: between exit and enter nothing moves);
- fail-safe at once when the last good sample is ``stale_after_seconds`` old
  or at the ``failure_threshold``-th consecutive failed read; it ends after
  ``recovery_seconds`` of good samples (counted from the first), into the level
  they support.  Classes watching a queue in fail-safe get the conservative
  preset's critical limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from admission.policy.config import ClassPolicy, LevelLimits, Preset, QueuePolicy
from admission.policy.levels import FAIL_SAFE, Level
from admission.policy.loader import ConfigError, PolicyConfig
from admission.policy.machine import pending_cooldown_level, step_queue
from admission.policy.samples import QueueSample, ReadFailure, signal_value
from admission.policy.state import (
    ClassState,
    Decision,
    Override,
    PolicyState,
    QueueState,
    Transition,
    Window,
)

__all__ = ["Observation", "PolicyEngine"]

Observation = QueueSample | ReadFailure


class PolicyEngine:
    """Evaluates queue observations against one preset.

    ``engine.start(now)`` gives the first state; ``engine.step(state,
    observations, now)`` the next.  States are immutable, so a what-if is just a
    step whose result is thrown away (:meth:`what_if`).
    """

    def __init__(self, config: PolicyConfig, *, preset: str | None = None) -> None:
        self.config = config
        self.preset = config.get_preset(preset if preset is not None else config.requested_preset)
        self.fail_safe_preset = config.get_preset("conservative")

    # -- the state machine ----------------------------------------------------

    def start(self, now: float, queues: Iterable[str] = ()) -> PolicyState:
        """The state before any sample: every queue normal, its staleness clock running."""
        names = dict.fromkeys((*self.config.queues, *queues))
        queue_states = {name: QueueState(name, Level.NORMAL, now, now) for name in names}
        state = PolicyState(at=now, preset=self.preset.name, queues=queue_states, classes={})
        classes = {
            name: self._class_state(name, policy, state, now, None)
            for name, policy in self.preset.classes.items()
        }
        return replace(state, classes=classes)

    def step(
        self, state: PolicyState, observations: Mapping[str, Observation], now: float
    ) -> Decision:
        """Advance to ``now`` with this tick's observations.

        A queue with no observation this tick keeps its last signal; its
        windows still run and its staleness is still checked.
        """
        transitions: list[Transition] = []
        queues = dict(state.queues)
        for name in observations:
            if name not in queues:
                queues[name] = QueueState(name, Level.NORMAL, now, now)
        overrides, expired = _split_expired(state.overrides, now)
        for name, queue in queues.items():
            policy = self._queue_policy(name, overrides)
            observation = observations.get(name)
            shown = state.overrides
            if _ends_a_gap(observation, queue, policy, state.at, now):
                # Nothing stepped for a whole stale_after (the monitor's ticks raised,
                # or it was not running), so no step saw this queue's samples go
                # stale: judge the gap first, so this sample starts a recovery
                # instead of taking up the levels of before the gap.
                gap, code, detail = step_queue(queue, policy, None, now)
                before, after = _queue_display(queue, shown), _queue_display(gap, overrides)
                if before != after:
                    transitions.append(
                        _queue_transition(name, before, after, now, (code, detail), policy, gap)
                    )
                queue, shown = gap, overrides
            stepped, code, detail = step_queue(queue, policy, observation, now)
            queues[name] = stepped
            before = _queue_display(queue, shown)
            after = _queue_display(stepped, overrides)
            if before != after:
                why = _expired_reason(expired, "queue", name) or (code, detail)
                transitions.append(
                    _queue_transition(name, before, after, now, why, policy, stepped)
                )
        return self._finish(state, queues, overrides, expired, now, transitions)

    def expire(self, state: PolicyState, now: float) -> Decision:
        """Drop overrides whose TTL has passed (a status read calls this too)."""
        overrides, expired = _split_expired(state.overrides, now)
        if not expired:
            return Decision(state)
        transitions: list[Transition] = []
        for name, queue in state.queues.items():
            before = _queue_display(queue, state.overrides)
            after = _queue_display(queue, overrides)
            if before != after:
                policy = self._queue_policy(name, overrides)
                transitions.append(
                    _queue_transition(
                        name,
                        before,
                        after,
                        now,
                        _expired_reason(expired, "queue", name)
                        or ("override_expired", "override expired"),
                        policy,
                        queue,
                    )
                )
        return self._finish(state, dict(state.queues), overrides, expired, now, transitions)

    def add_override(self, state: PolicyState, override: Override, now: float) -> Decision:
        """Pin a level or a preset on a queue or a class until ``override.expires_at``."""
        self._check_override(state, override, now)
        kept = tuple(o for o in state.overrides if o.id != override.id)
        return self._reoverride(state, (*kept, override), now, "override_set", override)

    def remove_override(self, state: PolicyState, override_id: str, now: float) -> Decision:
        """Lift an override before its TTL; ``KeyError`` if there is none with that id."""
        found = [o for o in state.overrides if o.id == override_id]
        if not found:
            raise KeyError(override_id)
        kept = tuple(o for o in state.overrides if o.id != override_id)
        return self._reoverride(state, kept, now, "override_removed", found[0])

    def what_if(
        self,
        state: PolicyState,
        observations: Mapping[str, Observation],
        now: float,
        *,
        preset: str | None = None,
    ) -> Decision:
        """The decision these observations would bring, under ``preset`` if given.

        The live state is immutable, so nothing live changes.
        """
        engine = self if preset is None else PolicyEngine(self.config, preset=preset)
        return engine.step(replace(state, preset=engine.preset.name), observations, now)

    # -- views ------------------------------------------------------------------

    def queue_policy(self, state: PolicyState, queue: str) -> QueuePolicy:
        """The policy in force on ``queue`` (a preset pin on it included)."""
        return self._queue_policy(queue, state.overrides)

    @staticmethod
    def shown_level(state: PolicyState, queue: str) -> str:
        """``queue``'s level as shown: a level pin wins, then fail-safe, then its level."""
        return _queue_display(state.queues[queue], state.overrides)

    def window(self, queue: QueueState, now: float, policy: QueuePolicy) -> Window | None:
        """The anti-flap window running on ``queue``, if any."""
        if queue.fail_safe:
            if queue.recovery_since is None:
                return None
            return _window(
                "recovery",
                queue.recovery_peak,
                queue.recovery_since,
                policy.recovery_seconds,
                now,
            )
        if queue.critical_since is not None and queue.level < Level.CRITICAL:
            return _window(
                "sustained", Level.CRITICAL, queue.critical_since, policy.sustained_seconds, now
            )
        if queue.warning_since is not None and queue.level < Level.WARNING:
            return _window(
                "sustained", Level.WARNING, queue.warning_since, policy.sustained_seconds, now
            )
        below = None
        if queue.level is Level.CRITICAL:
            below = queue.critical_exit_since
        elif queue.level is Level.WARNING:
            below = queue.warning_exit_since
        if below is not None:
            start = max(below, now - policy.cooldown_seconds)
            return _window(
                "cooldown",
                pending_cooldown_level(queue, start),
                below,
                policy.cooldown_seconds,
                now,
            )
        return None

    @staticmethod
    def health(queue: QueueState, now: float, policy: QueuePolicy) -> str:
        """``ok``, ``degraded``, ``stale`` or ``failing``."""
        if queue.consecutive_failures >= policy.failure_threshold:
            return "failing"
        reference = queue.last_good_at if queue.last_good_at is not None else queue.started_at
        if now - reference >= policy.stale_after_seconds:
            return "stale"
        if queue.consecutive_failures:
            return "failing"
        if queue.last_sample is not None and queue.last_sample.health != "ok":
            return queue.last_sample.health
        return "ok"

    # -- internals ------------------------------------------------------------

    def _queue_policy(self, queue: str, overrides: tuple[Override, ...]) -> QueuePolicy:
        for override in reversed(overrides):  # the newest pin wins
            if override.scope == "queue" and override.name == queue and override.preset:
                return self.config.get_preset(override.preset).queue_policy(queue)
        return self.preset.queue_policy(queue)

    def _check_override(self, state: PolicyState, override: Override, now: float) -> None:
        if override.expires_at <= now:
            raise ConfigError(
                f"override {override.id!r}: expires_at={override.expires_at!r} is not after now"
            )
        if (override.level is None) == (override.preset is None):
            raise ConfigError(f"override {override.id!r}: give exactly one of level or preset")
        if override.preset is not None:
            self.config.get_preset(override.preset)
        known = state.queues if override.scope == "queue" else self.preset.classes
        if override.name not in known:
            names = ", ".join(sorted(known))
            raise ConfigError(
                f"override {override.id!r}: {override.scope}={override.name!r} is unknown "
                f"(known: {names})"
            )

    def _reoverride(
        self,
        state: PolicyState,
        overrides: tuple[Override, ...],
        now: float,
        reason: str,
        cause: Override,
    ) -> Decision:
        transitions: list[Transition] = []
        what = f"level {cause.level}" if cause.level is not None else f"preset {cause.preset}"
        detail = f"{reason.replace('_', ' ')}: {what} on {cause.scope} {cause.name} ({cause.id})"
        for name, queue in state.queues.items():
            before = _queue_display(queue, state.overrides)
            after = _queue_display(queue, overrides)
            if before != after:
                policy = self._queue_policy(name, overrides)
                transitions.append(
                    _queue_transition(name, before, after, now, (reason, detail), policy, queue)
                )
        pinned = replace(state, overrides=overrides)
        return self._finish(
            pinned,
            dict(state.queues),
            overrides,
            (),
            now,
            transitions,
            cause=(cause, reason, detail),
        )

    def _finish(
        self,
        state: PolicyState,
        queues: dict[str, QueueState],
        overrides: tuple[Override, ...],
        expired: tuple[Override, ...],
        now: float,
        transitions: list[Transition],
        *,
        cause: tuple[Override, str, str] | None = None,
    ) -> Decision:
        causes = [(o, "override_expired", f"override {o.id} expired") for o in expired]
        if cause is not None:
            causes.append(cause)
        class_reasons = {o.name: (code, detail) for o, code, detail in causes if o.scope == "class"}
        new_state = PolicyState(now, self.preset.name, queues, {}, overrides)
        classes: dict[str, ClassState] = {}
        for name, policy in self.preset.classes.items():
            old = state.classes.get(name)
            new = self._class_state(name, policy, new_state, now, old)
            if old is not None and old.display != new.display:
                if name in class_reasons:
                    code, detail = class_reasons[name]
                elif new.fail_safe:
                    code, detail = "fail_safe", new.reason
                elif old.fail_safe:
                    code, detail = "telemetry_recovered", new.reason
                else:
                    code, detail = "watched_queue", new.reason
                transitions.append(
                    self._class_transition(
                        new, old.display, now, code, detail, new_state, transitions
                    )
                )
            classes[name] = new
        # Every override set, removed or expired is on record, even one that moves no level
        # (a preset pin, or a level pin equal to the baseline).
        for override, code, detail in causes:
            if any(t.scope == override.scope and t.name == override.name for t in transitions):
                continue
            if override.scope == "queue" and override.name in queues:
                queue = queues[override.name]
                shown = _queue_display(queue, overrides)
                queue_policy = self._queue_policy(override.name, overrides)
                transitions.append(
                    _queue_transition(
                        override.name, shown, shown, now, (code, detail), queue_policy, queue
                    )
                )
            elif override.scope == "class" and override.name in classes:
                new = classes[override.name]
                transitions.append(
                    self._class_transition(
                        new, new.display, now, code, detail, new_state, transitions
                    )
                )
        return Decision(replace(new_state, classes=classes), tuple(transitions))

    def _class_transition(
        self,
        new: ClassState,
        from_level: str,
        now: float,
        code: str,
        detail: str,
        state: PolicyState,
        transitions: list[Transition],
    ) -> Transition:
        """A class's record, with the signal and thresholds of the queue that decided it."""
        numbers: tuple[float | None, ...] = (None, None, None, None)
        cause = next(
            (
                t
                for t in reversed(transitions)
                if t.scope == "queue" and t.name in new.watches and t.to_level == new.display
            ),
            None,
        )
        if cause is not None:
            numbers = (
                cause.signal,
                cause.warning_threshold,
                cause.critical_threshold,
                cause.exit_ratio,
            )
        else:
            # No queue moved this tick (an override): the loudest watched queue.
            loudest: tuple[int, QueueState] | None = None
            for queue_name in new.watches:
                queue = state.queues.get(queue_name)
                if queue is None:
                    continue
                shown = _queue_display(queue, state.overrides)
                rank = 3 if shown == FAIL_SAFE else Level(shown).rank
                if loudest is None or rank > loudest[0]:
                    loudest = (rank, queue)
            if loudest is not None:
                queue = loudest[1]
                policy = self._queue_policy(queue.name, state.overrides)
                numbers = (
                    queue.signal,
                    policy.warning_threshold,
                    policy.critical_threshold,
                    policy.exit_ratio,
                )
        return Transition("class", new.name, from_level, new.display, now, code, detail, *numbers)

    def _class_state(
        self,
        name: str,
        policy: ClassPolicy,
        state: PolicyState,
        now: float,
        old: ClassState | None,
    ) -> ClassState:
        watches = policy.watches or tuple(state.queues)
        level = Level.NORMAL
        fail_safe_queues: list[str] = []
        loudest = ""
        for queue_name in watches:
            queue = state.queues.get(queue_name)
            if queue is None:
                continue
            display = _queue_display(queue, state.overrides)
            if display == FAIL_SAFE:
                fail_safe_queues.append(queue_name)
                continue
            queue_level = Level(display)
            if queue_level > level:
                level, loudest = queue_level, queue_name
        preset = self.preset
        pin: Override | None = None  # the newest level pin
        for override in state.overrides:
            if override.scope == "class" and override.name == name:
                if override.preset is not None:  # the newest preset pin
                    preset = self.config.get_preset(override.preset)
                if override.level is not None:
                    pin = override
        fail_safe = bool(fail_safe_queues)
        if pin is not None and pin.level is not None:
            level, fail_safe = pin.level, False
            reason = f"pinned to {pin.level} by override {pin.id}"
        elif fail_safe:
            reason = (
                f"fail-safe: telemetry of {', '.join(fail_safe_queues)} is stale or failing; "
                f"conservative critical limits"
            )
        elif level is Level.NORMAL:
            reason = "all watched queues are normal"
        else:
            reason = f"queue {loudest} is {level}"
        limits = self._limits(name, preset, level, fail_safe)
        since = now
        if old is not None and old.display == (FAIL_SAFE if fail_safe else level.value):
            since = old.since
        return ClassState(
            name,
            level,
            fail_safe,
            limits,
            reason,
            since,
            tuple(watches),
            preset.name,
            None if pin is None else pin.expires_at,
        )

    def _limits(self, name: str, preset: Preset, level: Level, fail_safe: bool) -> LevelLimits:
        if fail_safe:
            safe = self.fail_safe_preset.classes.get(name) or preset.classes.get(name)
            assert safe is not None
            return safe.critical
        policy = preset.classes.get(name) or self.preset.classes[name]
        return policy.limits(level)


# -- helpers ------------------------------------------------------------------


def _split_expired(
    overrides: tuple[Override, ...], now: float
) -> tuple[tuple[Override, ...], tuple[Override, ...]]:
    if not overrides:
        return overrides, ()
    kept = tuple(o for o in overrides if o.expires_at > now)
    expired = tuple(o for o in overrides if o.expires_at <= now)
    return kept, expired


def _expired_reason(expired: tuple[Override, ...], scope: str, name: str) -> tuple[str, str] | None:
    for override in expired:
        if override.scope == scope and override.name == name:
            return ("override_expired", f"override {override.id} expired")
    return None


def _queue_display(queue: QueueState, overrides: tuple[Override, ...]) -> str:
    for override in reversed(overrides):  # the newest pin wins
        if override.scope == "queue" and override.name == queue.name and override.level:
            return override.level.value
    return queue.display


def _queue_transition(
    name: str,
    before: str,
    after: str,
    now: float,
    reason: tuple[str, str],
    policy: QueuePolicy,
    queue: QueueState,
) -> Transition:
    code, detail = reason
    if not code:
        code, detail = "override_set", "the queue's override changed"
    return Transition(
        "queue",
        name,
        before,
        after,
        now,
        code,
        detail,
        queue.signal,
        policy.warning_threshold,
        policy.critical_threshold,
        policy.exit_ratio,
    )


def _window(kind: str, level: Level, since: float, required: float, now: float) -> Window:
    elapsed = max(0.0, now - since)
    return Window(kind, level, since, required, elapsed, max(0.0, required - elapsed))  # type: ignore[arg-type]


def _ends_a_gap(
    observation: Observation | None,
    queue: QueueState,
    policy: QueuePolicy,
    last_step: float,
    now: float,
) -> bool:
    """A good sample after a stale_after with no step, for a queue not in fail-safe.

    Steps at the poll cadence judge staleness themselves (after taking their own
    sample), so only a stretch with no step at all can hide a stale gap.
    """
    last = queue.last_good_at
    return (
        isinstance(observation, QueueSample)
        and not queue.fail_safe
        and last is not None
        and now - last_step >= policy.stale_after_seconds
        and now - last >= policy.stale_after_seconds
        and signal_value(observation, policy.signal) is not None
    )
