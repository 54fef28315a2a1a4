"""Replay a recorded queue trace through a preset, on virtual time.

``replay(trace, preset="balanced")`` answers "what would this preset have done
on this traffic?": every transition with its reason, the time each queue (and
each workload class) spent in each level, the fail-safe spans and how often the
levels changed.  ``compare(trace)`` replays every preset and ranks them.

Virtual time (the rules, exactly):

- Ticks fall every ``poll_interval_seconds`` of the configuration (default 5 s)
  from the trace's first (earliest) ``t``, up to the first tick at or after its
  last ``t``.  The engine is stepped once per tick with ``now`` = the tick's ``t``.
- A row belongs to the first tick at or after its ``t`` (a reading taken
  between two polls is what the next poll sees).  When several rows of one
  queue fall to one tick, the latest wins.  The sample keeps the row's own
  ``t`` as ``sampled_at``, so staleness is measured from when it was taken.
- A tick with no row for a queue, or whose row has an empty cell for the
  queue's signal (``messages_ready`` for the default signal), is a failed read
  (``ReadFailure``, kind ``no_sample``): missing data is never an empty queue.
  A gap of ``stale_after_seconds``, or ``failure_threshold`` such ticks in a
  row, puts the queue in fail-safe.  The queues replayed are the configured
  ones (``[[queues]]``) and every queue of the trace; a queue has failed reads
  before its first row too.
- The level decided at a tick holds until the next tick, so each tick accounts
  for one poll interval: ``duration_seconds`` = ticks x interval, and each
  queue's ``seconds_in_level`` sums to it.  Times in results are seconds from
  the trace start (the first tick), ``at_seconds``; ``t`` is the trace's clock.
- ``flaps_per_hour`` counts queue transitions (entering and leaving fail-safe
  included; class transitions, which follow from them, are not) per hour of
  ``duration_seconds``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from admission._replay_result import (
    LEVELS,
    RANKING,
    Comparison,
    FailSafeSpan,
    PresetScore,
    QueueTimeline,
    ReplayResult,
    ReplayTransition,
    TimelinePoint,
)
from admission._trace import Trace, TraceError, TraceRow, TraceSource, load_trace
from admission.policy.engine import Observation, PolicyEngine
from admission.policy.levels import FAIL_SAFE, Level
from admission.policy.loader import PolicyConfig, parse_config
from admission.policy.samples import FailureKind, ReadFailure, signal_value

__all__ = [
    "LEVELS",
    "RANKING",
    "Comparison",
    "FailSafeSpan",
    "PresetScore",
    "QueueTimeline",
    "ReplayResult",
    "ReplayTransition",
    "TimelinePoint",
    "Trace",
    "TraceError",
    "compare",
    "load_trace",
    "replay",
]

# -- the replay -------------------------------------------------------------------


def replay(
    trace: Trace | TraceSource,
    *,
    preset: str | None = None,
    config: PolicyConfig | None = None,
) -> ReplayResult:
    """Replay ``trace`` (a CSV path, rows, or a loaded :class:`Trace`) through ``preset``.

    ``preset`` defaults to the configuration's requested preset (``balanced``
    unless ``config`` says otherwise); ``config`` defaults to the built-in
    presets with default settings (``parse_config()``; no environment is read).
    Raises :class:`TraceError` for an unreadable trace and ``ConfigError`` for an
    unknown preset.
    """
    config = config if config is not None else parse_config()
    loaded = load_trace(trace)
    return _replay(loaded, _bucket(loaded, config.poll_interval_seconds), config, preset)


def compare(
    trace: Trace | TraceSource,
    presets: Iterable[str] | None = None,
    config: PolicyConfig | None = None,
) -> Comparison:
    """Replay ``trace`` through each of ``presets`` (default: every preset) and rank them.

    The ranking is :data:`RANKING`.  The trace is read once.
    """
    config = config if config is not None else parse_config()
    loaded = load_trace(trace)
    ticks = _bucket(loaded, config.poll_interval_seconds)
    names = list(dict.fromkeys(presets if presets is not None else config.presets))
    scores = [_score(_replay(loaded, ticks, config, name)) for name in names]
    scores.sort(
        key=lambda s: (s.flaps_per_hour, s.fail_safe_seconds, s.throttled_seconds, s.preset)
    )
    return Comparison(tuple(replace(s, rank=i) for i, s in enumerate(scores, start=1)))


def _score(result: ReplayResult) -> PresetScore:
    seconds = result.seconds_in_level.values()
    escalations = [
        t.at_seconds
        for t in result.transitions
        if t.scope == "queue" and t.to_level in (Level.WARNING.value, Level.CRITICAL.value)
    ]
    return PresetScore(
        0,
        result.preset,
        result.flaps_per_hour,
        len(result.queue_transitions()),
        sum(s[FAIL_SAFE] for s in seconds),
        sum(s[Level.WARNING.value] + s[Level.CRITICAL.value] for s in seconds),
        min(escalations, default=None),
        result,
    )


#: A trace longer than this many ticks is refused (at 5 s: 289 days), not allocated.
MAX_TICKS = 5_000_000


def _bucket(trace: Trace, interval: float) -> list[dict[str, TraceRow]]:
    """Each tick's rows by queue (the tick at or after each row; the latest row wins)."""
    start = trace.start
    count = _tick_of(trace.end, start, interval) + 1
    if count > MAX_TICKS:
        raise TraceError(
            f"{trace.source}: t runs from {start:g} to {trace.end:g}, {count:,} ticks of "
            f"{interval:g}s (at most {MAX_TICKS:,}); is t in seconds from the start?"
        )
    ticks: list[dict[str, TraceRow]] = [{} for _ in range(count)]
    for row in trace.rows:
        ticks[_tick_of(row.t, start, interval)][row.queue] = row
    return ticks


def _tick_of(t: float, start: float, interval: float) -> int:
    # A row within a millionth of an interval after a tick belongs to that tick
    # (float noise in recorded times, e.g. 14.999999 or 15.000001).
    return max(0, math.ceil((t - start) / interval - 1e-6))


def _replay(
    trace: Trace,
    ticks: Sequence[Mapping[str, TraceRow]],
    config: PolicyConfig,
    preset: str | None,
) -> ReplayResult:
    engine = PolicyEngine(config, preset=preset)
    interval = config.poll_interval_seconds
    start = trace.start
    names = tuple(dict.fromkeys((*config.queues, *trace.queues)))
    policies = [engine.preset.queue_policy(name) for name in names]
    plan = [
        (name, policy.signal, policy.signal.value)
        for name, policy in zip(names, policies, strict=True)
    ]
    state = engine.start(start, names)
    class_names = tuple(state.classes)
    # Levels change only by transitions (the engine reports every change of a
    # queue's or a class's display), so the loop keeps the current levels and
    # snapshots them per tick; columns are transposed once at the end.
    where = {("queue", name): i for i, name in enumerate(names)}
    where.update({("class", name): len(names) + i for i, name in enumerate(class_names)})
    current = [state.queues[name].display for name in names]
    current += [state.classes[name].display for name in class_names]
    snapshot = tuple(current)
    tick_levels: list[tuple[str, ...]] = []
    tick_signals: list[list[float | None]] = []
    transitions: list[ReplayTransition] = []
    no_sample = FailureKind.NO_SAMPLE
    step = engine.step
    for k, rows in enumerate(ticks):
        now = start + k * interval
        observations: dict[str, Observation] = {}
        values: list[float | None] = []
        for name, signal, signal_name in plan:
            row = rows.get(name)
            value = None
            if row is None:
                observations[name] = ReadFailure(name, now, no_sample, "no row in the trace")
            elif row.sample is None or (value := signal_value(row.sample, signal)) is None:
                why = f"line {row.line}: the row has no {signal_name} (empty cell)"
                observations[name] = ReadFailure(name, now, no_sample, why)
            else:
                observations[name] = row.sample
            values.append(value)
        tick_signals.append(values)
        decision = step(state, observations, now)
        state = decision.state
        if decision.transitions:
            for tr in decision.transitions:
                current[where[tr.scope, tr.name]] = tr.to_level
                transitions.append(
                    ReplayTransition(
                        now - start,
                        now,
                        tr.scope,
                        tr.name,
                        tr.from_level,
                        tr.to_level,
                        tr.reason,
                        tr.detail,
                        tr.signal,
                    )
                )
            snapshot = tuple(current)
        tick_levels.append(snapshot)
    times = [start + k * interval for k in range(len(ticks))]
    level_columns = list(zip(*tick_levels, strict=True))
    signal_columns = list(zip(*tick_signals, strict=True)) or [() for _ in names]
    levels = level_columns[: len(names)]
    class_levels = level_columns[len(names) :]
    shared_t = tuple(times)
    timelines = tuple(
        QueueTimeline(
            name,
            policy.signal.value,
            policy.warning_threshold,
            policy.critical_threshold,
            policy.exit_ratio,
            shared_t,
            signal_columns[i],
            levels[i],
        )
        for i, (name, policy) in enumerate(zip(names, policies, strict=True))
    )
    duration = len(ticks) * interval
    # Only level changes count (the engine also records overrides that move nothing).
    queue_count = sum(1 for t in transitions if t.scope == "queue" and t.from_level != t.to_level)
    return ReplayResult(
        preset=engine.preset.name,
        source=trace.source,
        start_t=start,
        poll_interval_seconds=interval,
        ticks=len(ticks),
        duration_seconds=duration,
        timelines=timelines,
        class_levels={name: class_levels[i] for i, name in enumerate(class_names)},
        transitions=tuple(transitions),
        seconds_in_level={name: _seconds(levels[i], interval) for i, name in enumerate(names)},
        class_seconds_in_level={
            name: _seconds(class_levels[i], interval) for i, name in enumerate(class_names)
        },
        fail_safe_spans=_spans(transitions, duration),
        flaps_per_hour=queue_count * 3600.0 / duration,
        warnings=_warnings(trace, config, names, interval),
    )


def _seconds(levels: Iterable[str], interval: float) -> dict[str, float]:
    counts = Counter(levels)
    return {level: counts[level] * interval for level in LEVELS}


def _spans(transitions: list[ReplayTransition], duration: float) -> tuple[FailSafeSpan, ...]:
    spans: list[FailSafeSpan] = []
    open_: dict[str, ReplayTransition] = {}
    for tr in transitions:
        if tr.scope != "queue":
            continue
        if tr.to_level == FAIL_SAFE:
            open_[tr.name] = tr
        elif tr.from_level == FAIL_SAFE and tr.name in open_:
            began = open_.pop(tr.name)
            spans.append(
                FailSafeSpan(tr.name, began.at_seconds, tr.at_seconds, began.detail, False)
            )
    for name, began in open_.items():
        spans.append(FailSafeSpan(name, began.at_seconds, duration, began.detail, True))
    spans.sort(key=lambda s: (s.start, s.queue))
    return tuple(spans)


def _warnings(
    trace: Trace, config: PolicyConfig, names: tuple[str, ...], interval: float
) -> tuple[str, ...]:
    out: list[str] = []
    times: dict[str, list[float]] = {name: [] for name in trace.queues}
    for row in trace.rows:
        times[row.queue].append(row.t)
    for name in names:
        seen = times.get(name)
        if not seen:
            out.append(
                f"queue {name} is configured but has no row in the trace: "
                "every tick is a failed read, so it is in fail-safe"
            )
            continue
        if seen[0] - trace.start >= interval:
            out.append(
                f"queue {name}: first row at t={seen[0]:g}, {seen[0] - trace.start:g}s after "
                "the trace start; the ticks before it are failed reads"
            )
        gaps = [b - a for a, b in itertools.pairwise(seen) if b > a]
        if gaps and not math.isclose(statistics.median(gaps), interval, rel_tol=0.01):
            out.append(
                f"queue {name}: rows come every {statistics.median(gaps):g}s (median) but the "
                f"poll interval is {interval:g}s (poll_interval_seconds): ticks without a row "
                "are failed reads"
            )
    return tuple(out)
