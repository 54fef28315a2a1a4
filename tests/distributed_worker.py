"""One replica for the multi-process test: many async workers on one shared budget.

``python distributed_worker.py URL PREFIX RATE BURST WORKERS START END`` admits as
fast as the budget allows from wall time START to END and prints the wall time
of every admission, one JSON list on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from admission import AdaptiveLimiter
from admission.distributed import RedisBackend


async def main(
    url: str, prefix: str, rate: float, burst: float, workers: int, start: float, end: float
) -> list[float]:
    backend = RedisBackend(url, key_prefix=prefix, timeout=2.0)
    limiter = AdaptiveLimiter("fleet", rate=rate, burst=burst, backend=backend)
    stamps: list[float] = []

    async def worker() -> None:
        while time.time() < end:
            async with limiter:
                stamps.append(time.time())

    await asyncio.sleep(max(0.0, start - time.time()))
    await asyncio.gather(*(worker() for _ in range(workers)))
    if limiter.snapshot().shared_budget != "shared":
        raise SystemExit(f"the shared budget was lost: {limiter.snapshot().shared_budget_reason}")
    await backend.aclose()
    return stamps


if __name__ == "__main__":
    url, prefix, rate, burst, workers, start, end = sys.argv[1:8]
    result = asyncio.run(
        main(url, prefix, float(rate), float(burst), int(workers), float(start), float(end))
    )
    print(json.dumps(result))
