"""Smoke test of the Redis benchmark: it runs in quick mode and reports every contender.

Timing is never asserted (a shared machine makes it noise).
"""

from __future__ import annotations

import pytest
from distributed_helpers import redis_backend

from bench import redis as redis_bench

pytestmark = pytest.mark.service


def test_the_redis_benchmark_reports_every_contender_and_ratio() -> None:
    redis_backend()  # skips, or fails in CI, without Redis
    section = redis_bench.run(n=100, workers=(1, 4), repeats=1)
    assert section.key == "redis"
    assert [(row["workers"], row["contender"]) for row in section.rows] == [
        (workers, name)
        for workers in (1, 4)
        for name in ("PING", "admission", "limits (redis-py)", "limits (coredis)")
    ]
    assert all(isinstance(row["ops/s"], float) and row["ops/s"] > 0 for row in section.rows)
    assert [check.low for check in section.checks] == [0.8, None, 1.0, 1.0]
