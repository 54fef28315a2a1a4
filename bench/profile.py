"""``python -m bench.profile NAME [--size N] [--top K]``: cProfile admission's side of a benchmark.

- ``fastpath``: the ``async with`` loop on the benchmark's AdaptiveLimiter;
- ``contended``: one contended run of N tasks (default 100,000), creation included;
- ``waiters``: the one-second window of grants with N waiters queued (default 100,000).
- ``policy``: 40 ticks of ``PolicyEngine.step`` on N busy queues (default 1,000);
- ``replay``: ``replay()`` of a loaded synthetic trace of 10 queues over N hours (default 24).

cProfile's per-call overhead inflates small functions and slows the run (which
changes how many tasks queue in ``contended``): read it for where time goes, not
for how much.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import sys
import tempfile
from cProfile import Profile
from pathlib import Path

from admission.policy import PolicyEngine, parse_config
from admission.simulate import load_trace, replay
from bench import contended, fastpath, policy, waiters


def profile(name: str, size: int) -> Profile:
    prof = Profile()
    if name == "fastpath":
        limiter = fastpath.CONTENDERS[fastpath.OURS]()
        asyncio.run(fastpath._loop(limiter, 2_000))
        prof.enable()
        asyncio.run(fastpath._loop(limiter, size))
        prof.disable()
    elif name == "contended":
        asyncio.run(contended._one(contended.OURS, 20, 0.01))
        prof.enable()
        asyncio.run(contended._one(contended.OURS, size, 1.0))
        prof.disable()
    elif name == "policy":
        engine = PolicyEngine(parse_config(), preset="balanced")
        ticks = policy._ticks(size, 40, True)
        state = engine.start(0.0, ticks[0])
        prof.enable()
        for k, tick in enumerate(ticks):
            state = engine.step(state, tick, k * policy.INTERVAL).state
        prof.disable()
    elif name == "replay":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.csv"
            policy.synthetic_trace(path, 10, size)
            trace = load_trace(path)
            prof.enable()
            replay(trace)
            prof.disable()
    else:
        asyncio.run(waiters._one(waiters.OURS, size, 2_000.0, 20, 1.0, profile=prof))
    return prof


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("name", choices=("fastpath", "contended", "waiters", "policy", "replay"))
    parser.add_argument("--size", type=int, default=None, help="iterations, tasks, queues, hours")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", help="pstats sort key")
    args = parser.parse_args(argv)
    defaults = {"fastpath": 200_000, "policy": 1_000, "replay": 24}
    size = args.size or defaults.get(args.name, 100_000)
    stats = pstats.Stats(profile(args.name, size), stream=sys.stdout)
    stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
