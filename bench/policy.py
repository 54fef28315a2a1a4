"""Benchmark 5: policy evaluation cost and trace replay speed.

- evaluation: ``PolicyEngine.step`` (preset balanced) with one observation for each
  of Q queues per tick; time per queue per tick.  Two workloads: *busy*, every
  queue's ready count on a sine crossing the warning and critical thresholds
  (phases spread over the queues, so windows start, reset and fire every tick),
  and *quiet*, every queue at a constant low count (nothing changes).
- replay: a synthetic trace of N queues sampled every 5 s for H hours (24 h x 10
  queues = 172,800 evaluations): bursts on a slow sine, about 0.2 % of rows
  missing and 0.2 % with an empty ``messages_ready``.  Timed: reading the CSV
  (``load_trace``), ``replay`` of the loaded trace, ``replay`` from the CSV path
  (end to end) and, for scale, ``engine.step`` alone on the same observations
  (the replay's floor: what is left is the replay's own overhead).

The targets are absolute (the brief's): <= 10 us per queue per tick, < 2 s for
the 24-hour replay.  GC stays on (a monitor runs with it), collected before each
timed run; figures are the best of the repeats, medians beside them.
"""

from __future__ import annotations

import csv
import math
import pstats
import random
import tempfile
import time
from collections.abc import Callable
from cProfile import Profile
from io import StringIO
from pathlib import Path

from admission._trace import COLUMNS
from admission.policy import (
    FailureKind,
    Observation,
    PolicyEngine,
    QueueSample,
    ReadFailure,
    parse_config,
)
from admission.simulate import load_trace, replay
from bench._common import Check, Row, Section, best, collect, median, progress

__all__ = ["run", "synthetic_trace"]

HEADER = list(COLUMNS[:8])  # the recorded traces' columns
INTERVAL = 5.0


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    spans = []
    for _ in range(repeats):
        collect()
        start = time.perf_counter()
        fn()
        spans.append(time.perf_counter() - start)
    return spans


# -- (a) evaluation cost ----------------------------------------------------------


def _ticks(queues: int, ticks: int, busy: bool) -> list[dict[str, Observation]]:
    names = [f"queue-{i:04d}" for i in range(queues)]
    out: list[dict[str, Observation]] = []
    for k in range(ticks):
        now = k * INTERVAL
        tick: dict[str, Observation] = {}
        for i, name in enumerate(names):
            # balanced: warning 50, critical 120; a 4-minute sine from 0 to 160.
            ready = int(80 + 80 * math.sin(2 * math.pi * (k / 48 + i / queues))) if busy else 3
            tick[name] = QueueSample(name, now, ready, 2, 2, 3.0, 3.0, 3.0)
        out.append(tick)
    return out


def _step_cost(queues: int, ticks: int, warmup: int, busy: bool, repeats: int) -> list[float]:
    """Seconds per queue per tick, one figure per repeat."""
    engine = PolicyEngine(parse_config(), preset="balanced")
    observations = _ticks(queues, warmup + ticks, busy)
    state = engine.start(0.0, observations[0])
    for k in range(warmup):
        state = engine.step(state, observations[k], k * INTERVAL).state
    step = engine.step
    timed = list(enumerate(observations[warmup:], start=warmup))

    def go() -> None:
        current = state
        for k, tick in timed:
            current = step(current, tick, k * INTERVAL).state

    return [s / (ticks * queues) for s in _timed(go, repeats)]


# -- (b) replay speed -------------------------------------------------------------


def synthetic_trace(
    path: Path, queues: int, hours: float, seed: int = 5
) -> list[dict[str, Observation]]:
    """Write the trace to ``path``; return the observations the replay will see per tick."""
    rng = random.Random(seed)
    names = [f"queue-{i:02d}" for i in range(queues)]
    ticks = round(hours * 3600 / INTERVAL)
    out: list[dict[str, Observation]] = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        burst = [0.0] * queues
        for k in range(ticks):
            t = k * INTERVAL
            tick: dict[str, Observation] = {}
            for i, name in enumerate(names):
                if rng.random() < 0.0005:
                    burst[i] = rng.uniform(100, 600)  # a drop of files
                burst[i] *= 0.98
                base = 25 + 25 * math.sin(2 * math.pi * (t / 7200 + i / queues))
                ready = int(base + burst[i])
                roll = rng.random()
                if roll < 0.002:  # no row at all
                    tick[name] = ReadFailure(name, t, FailureKind.NO_SAMPLE, "no row")
                    continue
                if roll < 0.004:  # the broker gave no value
                    writer.writerow([t, name, "", 4, 2, "", "", ""])
                    tick[name] = ReadFailure(name, t, FailureKind.NO_SAMPLE, "empty")
                    continue
                writer.writerow([t, name, ready, 4, 2, 3.2, 3.0, 3.0])
                tick[name] = QueueSample(name, t, ready, 4, 2, 3.2, 3.0, 3.0)
            out.append(tick)
    return out


def _engine_alone(observations: list[dict[str, Observation]], repeats: int) -> list[float]:
    engine = PolicyEngine(parse_config(), preset="balanced")
    start = engine.start(0.0, observations[0])
    step = engine.step

    def go() -> None:
        state = start
        for k, tick in enumerate(observations):
            state = step(state, tick, k * INTERVAL).state

    return _timed(go, repeats)


def hotspots(fn: Callable[[], object], top: int = 6) -> list[str]:
    """cProfile ``fn``: the functions with the most own time, as shares of the total."""
    profile = Profile()
    profile.enable()
    fn()
    profile.disable()
    stats = pstats.Stats(profile, stream=StringIO())
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    out = []
    for (filename, line, name), (_, calls, own, _cum, _) in rows[:top]:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else filename
        out.append(f"{name} ({where}) {100 * own / total:.0f}% of own time, {calls:,} calls")
    return out


def run(
    queues: int = 1_000,
    ticks: int = 40,
    warmup: int = 24,
    trace_queues: int = 10,
    trace_hours: float = 24.0,
    repeats: int = 3,
    profile: bool = True,
) -> Section:
    progress(f"engine.step on {queues:,} queues ...")
    busy = _step_cost(queues, ticks, warmup, True, repeats)
    quiet = _step_cost(queues, ticks, warmup, False, repeats)
    evaluations = round(trace_hours * 3600 / INTERVAL) * trace_queues
    progress(f"replay of {trace_hours:g} h x {trace_queues} queues ({evaluations:,}) ...")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.csv"
        observations = synthetic_trace(path, trace_queues, trace_hours)
        reads = _timed(lambda: load_trace(path), repeats)
        trace = load_trace(path)
        replays = _timed(lambda: replay(trace), repeats)
        end_to_end = _timed(lambda: replay(path), repeats)
        engine = _engine_alone(observations, repeats)
        result = replay(trace)
        where = hotspots(lambda: replay(trace)) if profile else []
    us = 1e6
    rows: list[Row] = [
        {
            "measurement": f"engine.step, {queues:,} queues, busy (per queue per tick)",
            "evaluations": queues * ticks,
            "best s": best(busy) * queues * ticks,
            "median s": median(busy) * queues * ticks,
            "us / evaluation": best(busy) * us,
        },
        {
            "measurement": f"engine.step, {queues:,} queues, quiet (per queue per tick)",
            "evaluations": queues * ticks,
            "best s": best(quiet) * queues * ticks,
            "median s": median(quiet) * queues * ticks,
            "us / evaluation": best(quiet) * us,
        },
    ]
    for label, spans in (
        ("read the CSV (load_trace)", reads),
        ("replay, trace loaded", replays),
        ("replay, CSV path to result (end to end)", end_to_end),
        ("engine.step alone, same observations", engine),
    ):
        rows.append(
            {
                "measurement": f"{trace_hours:g} h x {trace_queues} queues: {label}",
                "evaluations": evaluations,
                "best s": best(spans),
                "median s": median(spans),
                "us / evaluation": best(spans) / evaluations * us,
            }
        )
    overhead = best(replays) - best(engine)
    label = f"{trace_hours:g} h x {trace_queues} queues"
    checks = [
        Check(
            f"engine.step us per queue per tick, {queues:,} queues (busy)", best(busy) * us, high=10
        ),
        Check(f"engine.step us per queue per tick, {queues:,} queues (quiet)", best(quiet) * us),
        Check(f"replay {label}, trace loaded (s)", best(replays), high=2),
        Check(f"replay {label}, CSV to result (s)", best(end_to_end), high=2),
        Check("engine.step alone / loaded replay (engine share)", best(engine) / best(replays)),
    ]
    notes = [
        f"The replay found {len(result.transitions)} transitions "
        f"({result.flaps_per_hour:.3g} queue flaps per hour) and "
        f"{len(result.fail_safe_spans)} fail-safe spans on the synthetic trace.",
        f"Replay overhead over the bare engine: {overhead:.3f} s "
        f"({overhead / evaluations * us:.2f} us per evaluation): building observations, "
        "ReadFailures for gaps, recording the timeline.",
    ]
    if where:
        notes.append(
            "Where a loaded replay's time goes (cProfile, own time; cProfile inflates small "
            "calls): " + "; ".join(where) + "."
        )
    return Section(
        key="policy",
        title="5. Policy evaluation cost and trace replay speed",
        method=(
            f"(a) PolicyEngine.step (balanced) with {queues:,} queue samples per tick, "
            f"{ticks} timed ticks after {warmup} warm-up ticks, {repeats} repeats; busy = "
            "signals on a sine through both thresholds, quiet = constant and low. (b) a "
            f"synthetic {trace_hours:g}-hour trace of {trace_queues} queues every 5 s "
            f"({evaluations:,} evaluations, ~0.4% gaps and empty cells) read and replayed "
            f"through balanced, {repeats} repeats.  Best of repeats; GC on, collected before "
            "each run; time.perf_counter."
        ),
        params={
            "queues": queues,
            "ticks": ticks,
            "warmup": warmup,
            "trace_queues": trace_queues,
            "trace_hours": trace_hours,
            "repeats": repeats,
        },
        columns=("measurement", "evaluations", "best s", "median s", "us / evaluation"),
        rows=rows,
        checks=checks,
        notes=notes,
        formats={"best s": ".3f", "median s": ".3f", "us / evaluation": ".2f"},
    )
