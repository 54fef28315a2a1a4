"""Four OS processes, many async workers each, one budget of 200 admissions a second in Redis.

The real-service proof of the shared bucket: it runs its 10 seconds of real
time.  Every admission's wall time comes back from the worker processes; the
per-second counts are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest
from distributed_helpers import REDIS_URL, cleaned, redis_backend

pytestmark = [pytest.mark.anyio, pytest.mark.service]

WORKER = Path(__file__).with_name("distributed_worker.py")
PROCESSES = 4
WORKERS = 25
RATE = 200.0
BURST = 20.0
SECONDS = 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def replicas(command: list[str]) -> list[list[float]]:
    """Run the replicas side by side; each one's admission times."""
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


async def test_four_processes_share_two_hundred_a_second_for_ten_seconds() -> None:
    async with cleaned(redis_backend()) as backend:
        start = time.time() + 3.0  # every process imported and connected by then
        end = start + SECONDS
        command = [
            sys.executable,
            str(WORKER),
            REDIS_URL,
            backend.key_prefix,
            str(RATE),
            str(BURST),
            str(WORKERS),
            repr(start),
            repr(end),
        ]
        outputs = await anyio.to_thread.run_sync(replicas, command)
    stamps = sorted(stamp for output in outputs for stamp in output)
    within = [stamp for stamp in stamps if start <= stamp <= end]
    per_second = Counter(int(stamp - start) for stamp in within)
    print(f"\nadmissions per second over {PROCESSES} processes x {WORKERS} workers:")
    for second in range(SECONDS):
        print(f"  second {second}: {per_second.get(second, 0)}")
    print(f"  per process: {[len(output) for output in outputs]}; total {len(within)}")
    assert all(len(output) > 0 for output in outputs)  # every replica took part
    assert len(within) <= BURST + RATE * SECONDS
    assert len(within) >= 0.95 * RATE * SECONDS
    # the tail (admissions granted just after the end) conforms too
    assert len(stamps) <= BURST + RATE * (stamps[-1] - stamps[0]) + 1
