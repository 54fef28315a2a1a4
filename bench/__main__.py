"""``python -m bench [--quick] [--only NAME ...] [--out DIR]``: run, print, write the results."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import contended, fastpath, load, monitor, policy, redis, retune, telemetry, waiters
from bench._common import Section
from bench.report import machine, render, to_json

HERE = Path(__file__).resolve().parent

FULL: dict[str, Callable[[], Section]] = {
    "fastpath": lambda: fastpath.run(iterations=200_000, repeats=7),
    "contended": lambda: contended.run(sizes=(1_000, 10_000, 100_000), repeats=3),
    "waiters": lambda: waiters.run(sizes=(5_000, 100_000), repeats=3),
    "retune": lambda: retune.run(
        latency_sizes=(1, 1_000, 10_000), cpu_sizes=(0, 1_000, 10_000), repeats=7
    ),
    "policy": lambda: policy.run(),
    "monitor": lambda: monitor.run(),
    "telemetry": lambda: telemetry.run(),
    "redis": lambda: redis.run(),
    "load": lambda: load.run(),
}

QUICK: dict[str, Callable[[], Section]] = {
    "fastpath": lambda: fastpath.run(iterations=2_000, repeats=2),
    "contended": lambda: contended.run(sizes=(20, 200), repeats=1, span=0.1),
    "waiters": lambda: waiters.run(sizes=(50, 200), repeats=1, rate=100.0, burst=2, window=0.05),
    "retune": lambda: retune.run(latency_sizes=(1, 50), cpu_sizes=(0, 50), repeats=2),
    "policy": lambda: policy.run(
        queues=50, ticks=4, warmup=2, trace_queues=3, trace_hours=0.1, repeats=1, profile=False
    ),
    "monitor": lambda: monitor.run(
        tick_queues=10, ticks=8, rabbit_queues=0, workers=2, seconds=0.05, interval=0.01, repeats=1
    ),
    "telemetry": lambda: telemetry.run(sizes=(1, 3), ticks=3, warmup=1, background=5, settle=0.0),
    "redis": lambda: redis.run(n=200, workers=(1, 8), repeats=1),
    "load": lambda: load.run(
        clients=(2, 4),
        pollers=4,
        poll_interval=0.02,
        rate=2_000.0,
        workers=2,
        warmup=0.05,
        seconds=0.1,
        repeats=1,
        max_requests=200,
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", action="append", choices=list(FULL), help="run only these")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where RESULTS.md and results.json go (default: bench/ for a full run; "
        "a quick run writes nothing unless given)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.only or list(plan)
    info = machine()
    sections: list[Section] = []
    started = time.perf_counter()
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        sections.append(plan[name]())
    print(f"all done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report = render(sections, info, args.quick)
    print(report)
    out: Path | None = args.out if args.out is not None or args.quick else HERE
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "RESULTS.md").write_text(report.rstrip("\n") + "\n", encoding="utf-8")
        (out / "results.json").write_text(to_json(sections, info, args.quick), encoding="utf-8")
        print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
