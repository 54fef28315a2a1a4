"""One queue, one tick: the per-queue state machine (the hot path of a replay).

``step_queue(queue, policy, observation, now)`` returns the queue's next state
and, when its level or fail-safe mode changed, the reason code and a human
detail.  Pure: no I/O, no clock.  The rules (DESIGN.md "Policy semantics"):

- sustain: a level is entered once the signal has stayed at or above its enter
  threshold for ``sustained_seconds``; a sample below restarts that window;
- cooldown: a level is left once the signal has stayed below its exit threshold
  (``exit_ratio * threshold``) for ``cooldown_seconds``, onto the highest level
  a sample in the last ``cooldown_seconds`` reached (a sliding window, as the
  Kubernetes HPA's stabilisation window: after critical -> warning, warning's
  own cooldown has been running since the signal fell below its exit, so the
  queue does not wait a second full window to reach normal);
- fail-safe: at once when the last good sample is ``stale_after_seconds`` old
  or at the ``failure_threshold``-th failed read in a row; left after
  ``recovery_seconds`` of good samples (counted from the first, a failure
  restarts it), into the highest level those samples support.
"""

from __future__ import annotations

from admission.policy.config import QueuePolicy
from admission.policy.levels import Level
from admission.policy.samples import FailureKind, QueueSample, ReadFailure, signal_value
from admission.policy.state import QueueState

__all__ = ["pending_cooldown_level", "step_queue"]

NORMAL = Level.NORMAL
WARNING = Level.WARNING
CRITICAL = Level.CRITICAL
_RANK = {NORMAL: 0, WARNING: 1, CRITICAL: 2}


def _recommend(value: float, policy: QueuePolicy) -> Level:
    if value >= policy.critical_threshold:
        return CRITICAL
    if value >= policy.warning_threshold:
        return WARNING
    return NORMAL


def pending_cooldown_level(queue: QueueState, start: float) -> Level:
    """The level a cooldown would land on, given the window began at ``start``."""
    if (
        queue.level is CRITICAL
        and queue.warning_reached_at is not None
        and queue.warning_reached_at >= start
    ):
        return WARNING
    return NORMAL


def step_queue(
    queue: QueueState,
    policy: QueuePolicy,
    observation: QueueSample | ReadFailure | None,
    now: float,
) -> tuple[QueueState, str, str]:
    """The queue's next state, and ``(reason code, detail)`` of a change (else empty)."""
    (
        name, level, level_since, started_at, signal, last_sample, last_good_at, failures,
        last_error, fail_safe, fail_safe_reason, fail_safe_since, warning_since, critical_since,
        warning_exit, critical_exit, warning_reached, critical_reached, recovery_since,
        recovery_peak,
    ) = queue  # fmt: skip
    value: float | None = None
    failed: ReadFailure | None = None
    if observation is not None:
        if isinstance(observation, QueueSample):
            value = signal_value(observation, policy.signal)
            if value is None:
                failed = ReadFailure(
                    name, now, FailureKind.UNKNOWN_SIGNAL,
                    f"the sample does not tell {policy.signal.value}",
                )  # fmt: skip
            else:
                signal, last_sample, last_good_at = value, observation, observation.sampled_at
                failures, last_error = 0, None
        else:
            failed = observation
        if failed is not None:
            failures += 1
            last_error = f"{failed.kind}: {failed.reason}"
    age = now - (last_good_at if last_good_at is not None else started_at)
    stale = age >= policy.stale_after_seconds
    failing = failures >= policy.failure_threshold
    code = detail = ""

    if fail_safe:
        if failed is not None or stale:
            recovery_since, recovery_peak = None, NORMAL
        elif value is not None:
            recommended = _recommend(value, policy)
            if recovery_since is None:
                recovery_since, recovery_peak = now, recommended
            elif _RANK[recommended] > _RANK[recovery_peak]:
                recovery_peak = recommended
        if (
            recovery_since is not None
            and not stale
            and not failing
            and now - recovery_since >= policy.recovery_seconds
        ):
            code = "telemetry_recovered"
            detail = (
                f"good samples for {now - recovery_since:g}s (recovery "
                f"{policy.recovery_seconds:g}s); they support {recovery_peak}"
            )
            level, level_since = recovery_peak, now
            fail_safe, fail_safe_reason, fail_safe_since = False, None, None
            recovery_since, recovery_peak = None, NORMAL
            # The windows start afresh from the latest good sample.
            current = signal if signal is not None else 0.0
            warning_since = now if current >= policy.warning_threshold else None
            critical_since = now if current >= policy.critical_threshold else None
            warning_exit = now if current < policy.exit_ratio * policy.warning_threshold else None
            critical_exit = now if current < policy.exit_ratio * policy.critical_threshold else None
            warning_reached = now if warning_since is not None else None
            critical_reached = now if critical_since is not None else None
        elif failing and not stale:
            fail_safe_reason = f"{failures} consecutive failed reads ({last_error})"
        elif stale:
            fail_safe_reason = (
                f"no good sample for {age:g}s (stale after {policy.stale_after_seconds:g}s)"
            )
            if failures and last_error is not None:
                # The cause must outlive the tick that entered fail-safe: an operator
                # who looks later should still read why the samples stopped.
                fail_safe_reason += f"; {failures} failed reads, the last: {last_error}"
    elif stale or failing:
        if failing:
            code = "telemetry_failing"
            detail = f"{failures} consecutive failed reads ({last_error})"
        else:
            code = "telemetry_stale"
            seen = "no good sample for" if last_good_at is not None else "no sample yet after"
            detail = f"{seen} {age:g}s (stale after {policy.stale_after_seconds:g}s)"
        fail_safe, fail_safe_reason, fail_safe_since = True, detail, now
        warning_since = critical_since = warning_exit = critical_exit = None
        recovery_since, recovery_peak = None, NORMAL
    else:
        if value is not None:
            warning = policy.warning_threshold
            critical = policy.critical_threshold
            ratio = policy.exit_ratio
            if value >= warning:
                warning_reached = now
                if warning_since is None:
                    warning_since = now
            else:
                warning_since = None
            if value >= critical:
                critical_reached = now
                if critical_since is None:
                    critical_since = now
            else:
                critical_since = None
            if value < ratio * warning:
                if warning_exit is None:
                    warning_exit = now
            else:
                warning_exit = None
            if value < ratio * critical:
                if critical_exit is None:
                    critical_exit = now
            else:
                critical_exit = None
        sustained = policy.sustained_seconds
        if (
            level is not CRITICAL
            and critical_since is not None
            and now - critical_since >= sustained
        ):
            code, detail = "sustained_pressure", _sustained(policy, CRITICAL, critical_since, now)
            level, level_since = CRITICAL, now
        elif level is NORMAL and warning_since is not None and now - warning_since >= sustained:
            code, detail = "sustained_pressure", _sustained(policy, WARNING, warning_since, now)
            level, level_since = WARNING, now
        elif level is not NORMAL:
            below = critical_exit if level is CRITICAL else warning_exit
            cooldown = policy.cooldown_seconds
            if below is not None and now - below >= cooldown:
                start = now - cooldown
                reached = warning_reached is not None and warning_reached >= start
                target = WARNING if level is CRITICAL and reached else NORMAL
                code = "cooldown_elapsed"
                detail = (
                    f"{policy.signal.value} below {policy.exit(level):g} for {now - below:g}s "
                    f"(cooldown {cooldown:g}s); highest level in the window: {target}"
                )
                level, level_since = target, now

    return (
        QueueState(
            name,
            level,
            level_since,
            started_at,
            signal,
            last_sample,
            last_good_at,
            failures,
            last_error,
            fail_safe,
            fail_safe_reason,
            fail_safe_since,
            warning_since,
            critical_since,
            warning_exit,
            critical_exit,
            warning_reached,
            critical_reached,
            recovery_since,
            recovery_peak,
        ),
        code,
        detail,
    )


def _sustained(policy: QueuePolicy, level: Level, since: float, now: float) -> str:
    return (
        f"{policy.signal.value} at or above {policy.enter(level):g} for {now - since:g}s "
        f"(sustained {policy.sustained_seconds:g}s)"
    )
