"""AdaptiveLimiter bad input: settings, costs, classes and timeouts refused at once."""

from __future__ import annotations

import math

import pytest

from admission import AdaptiveLimiter, WorkloadClass
from admission.testing import VirtualClock

pytestmark = pytest.mark.anyio


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": math.nan, "burst": 1}, "rate.*nan"),
        ({"rate": math.inf, "burst": 1}, "rate.*inf"),
        ({"rate": -1, "burst": 1}, "rate.*-1"),
        ({"rate": 0, "burst": 1}, "rate.*0"),
        ({"rate": 1, "burst": 0.5}, "burst.*0.5"),
        ({"rate": 1, "burst": math.nan}, "burst.*nan"),
        ({"rate": 1, "burst": 1, "max_concurrency": 0}, "max_concurrency.*0"),
        ({"rate": 1, "burst": 1, "initial_tokens": -1}, "initial_tokens.*-1"),
        ({"rate": 1, "burst": 1, "classes": ["a", "a"]}, "duplicate.*'a'"),
        (
            {
                "rate": 1,
                "burst": 1,
                "max_concurrency": 2,
                "classes": [
                    WorkloadClass("a", minimum_floor=2),
                    WorkloadClass("b", minimum_floor=1),
                ],
            },
            r"max_concurrency=2.*minimum_floor \(3\)",
        ),
    ],
)
def test_bad_limiter_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveLimiter("bad", **kwargs)  # type: ignore[arg-type]


def test_bad_name() -> None:
    with pytest.raises(ValueError, match="name"):
        AdaptiveLimiter("", rate=1, burst=1)
    with pytest.raises(TypeError, match="WorkloadClass"):
        AdaptiveLimiter("x", rate=1, burst=1, classes=[3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("cost", "match"),
    [
        (0, "cost.*0"),
        (-1, "cost.*-1"),
        (math.nan, "cost.*nan"),
        (math.inf, "cost.*inf"),
        (2.5, "cost=2.5.*burst=2.0"),
    ],
)
async def test_bad_costs_fail_at_once(
    admission_clock: VirtualClock, cost: float, match: str
) -> None:
    limiter = AdaptiveLimiter("costs", rate=1, burst=2)
    with pytest.raises(ValueError, match=match):
        await limiter.acquire(cost)
    with pytest.raises(ValueError, match=match):
        limiter.try_acquire(cost)
    with pytest.raises(ValueError, match=match):
        limiter.admit(cost)
    with pytest.raises(ValueError, match=match):
        limiter.limit(cost)
    assert limiter.waiting == 0
    assert limiter.snapshot().tokens == 2.0


async def test_a_cost_above_a_class_burst_fails_at_once(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter(
        "class-burst", rate=10, burst=10, classes=[WorkloadClass("slow", rate=1, burst=2)]
    )
    with pytest.raises(ValueError, match=r"cost=3.*class 'slow'"):
        await limiter.acquire(3, "slow")


async def test_cost_must_be_a_number(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("types", rate=1, burst=2)
    with pytest.raises(TypeError):
        limiter.try_acquire(True)
    with pytest.raises(TypeError):
        limiter.try_acquire("1")  # type: ignore[arg-type]


async def test_unknown_class_names_the_known_ones(admission_clock: VirtualClock) -> None:
    limiter = AdaptiveLimiter("known", rate=1, burst=1, classes=["a", "b"])
    with pytest.raises(ValueError, match=r"unknown workload_class 'c' \(known: 'a', 'b'\)"):
        await limiter.acquire(workload_class="c")
    with pytest.raises(ValueError, match="'c'"):
        limiter.try_acquire(workload_class="c")
    with pytest.raises(ValueError, match="'c'"):
        limiter.retune_class("c", rate=1)


@pytest.mark.parametrize(("timeout", "match"), [(-1, "-1"), (math.nan, "nan")])
async def test_bad_timeouts(admission_clock: VirtualClock, timeout: float, match: str) -> None:
    limiter = AdaptiveLimiter("timeouts", rate=1, burst=1)
    with pytest.raises(ValueError, match=f"timeout.*{match}"):
        await limiter.acquire(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        limiter.admit(timeout=timeout)
    assert limiter.snapshot().tokens == 1.0
