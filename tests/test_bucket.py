"""The pure token bucket: refill, take, delay and retune arithmetic, told ``now`` each time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from admission.bucket import TOLERANCE, TokenBucket, check_burst, check_rate


def test_starts_full_by_default() -> None:
    bucket = TokenBucket(2, 5, now=10.0)
    assert bucket.tokens == 5.0
    assert bucket.updated_at == 10.0
    assert bucket.rate == 2.0
    assert bucket.burst == 5.0


def test_initial_tokens_are_respected_and_clamped_to_burst() -> None:
    assert TokenBucket(1, 5, now=0, tokens=0).tokens == 0.0
    assert TokenBucket(1, 5, now=0, tokens=2.5).tokens == 2.5
    assert TokenBucket(1, 5, now=0, tokens=50).tokens == 5.0


@pytest.mark.parametrize("tokens", [-1.0, math.nan, math.inf])
def test_bad_initial_tokens_are_refused(tokens: float) -> None:
    with pytest.raises(ValueError, match="initial_tokens") as info:
        TokenBucket(1, 5, now=0, tokens=tokens)
    assert repr(tokens) in str(info.value)


def test_refill_is_linear_and_capped_at_burst() -> None:
    bucket = TokenBucket(0.5, 4, now=0, tokens=0)
    assert bucket.refill(2.0) == pytest.approx(1.0)
    assert bucket.refill(6.0) == pytest.approx(3.0)
    assert bucket.refill(100.0) == 4.0
    assert bucket.updated_at == 100.0


def test_refill_on_a_clock_that_stepped_back_earns_nothing() -> None:
    bucket = TokenBucket(1, 10, now=5.0, tokens=2)
    assert bucket.refill(3.0) == 2.0
    # Refill resumes from the earlier reading instead of freezing until 5.0.
    assert bucket.updated_at == 3.0
    assert bucket.refill(4.0) == pytest.approx(3.0)


def test_peek_does_not_change_the_bucket() -> None:
    bucket = TokenBucket(1, 10, now=0, tokens=0)
    assert bucket.peek(3.0) == pytest.approx(3.0)
    assert bucket.tokens == 0.0
    assert bucket.updated_at == 0.0
    assert bucket.peek(-1.0) == 0.0
    assert bucket.peek(50.0) == 10.0


def test_has_and_take() -> None:
    bucket = TokenBucket(1, 3, now=0)
    assert bucket.has(3, 0)
    bucket.take(3)
    assert bucket.tokens == 0.0
    assert not bucket.has(1, 0.5)
    assert bucket.has(1, 1.0)


def test_has_allows_only_a_relative_float_slack() -> None:
    bucket = TokenBucket(1, 10, now=0, tokens=5 - 5 * TOLERANCE / 2)
    assert bucket.has(5, 0)
    bucket = TokenBucket(1, 10, now=0, tokens=5 - 1e-6)
    assert not bucket.has(5, 0)


def test_delay_until_is_exact() -> None:
    bucket = TokenBucket(0.1, 1, now=0, tokens=0)
    assert bucket.delay_until(1, 0.0) == pytest.approx(10.0)
    assert bucket.delay_until(1, 4.0) == pytest.approx(6.0)
    assert bucket.delay_until(1, 10.0) == 0.0
    assert bucket.delay_until(0.5, 20.0) == 0.0


def test_give_back_is_clamped_to_burst() -> None:
    bucket = TokenBucket(1, 3, now=0)
    bucket.take(2)
    bucket.give_back(2)
    assert bucket.tokens == 3.0
    bucket.give_back(5)
    assert bucket.tokens == 3.0


@pytest.mark.parametrize(("new_rate", "due"), [(0.2, 7.0), (0.05, 16.0), (0.1, 10.0)])
def test_retune_counts_tokens_earned_so_far_at_the_old_rate(new_rate: float, due: float) -> None:
    bucket = TokenBucket(0.1, 1, now=0)
    bucket.take(1)
    bucket.retune(4.0, rate=new_rate)
    assert bucket.tokens == pytest.approx(0.4)
    assert bucket.rate == new_rate
    assert 4.0 + bucket.delay_until(1, 4.0) == pytest.approx(due)


def test_retune_clamps_tokens_to_a_lower_burst_and_never_adds_any() -> None:
    bucket = TokenBucket(1, 10, now=0)
    bucket.retune(0, burst=4)
    assert bucket.tokens == 4.0
    assert bucket.burst == 4.0
    bucket.retune(0, burst=20)
    assert bucket.tokens == 4.0
    assert bucket.refill(100) == 20.0


def test_retune_with_nothing_leaves_the_limits() -> None:
    bucket = TokenBucket(2, 6, now=0, tokens=1)
    bucket.retune(1.0)
    assert (bucket.rate, bucket.burst) == (2.0, 6.0)
    assert bucket.tokens == pytest.approx(3.0)


def test_retune_validates() -> None:
    bucket = TokenBucket(2, 6, now=0)
    with pytest.raises(ValueError, match="rate"):
        bucket.retune(0, rate=-1)
    with pytest.raises(ValueError, match="burst"):
        bucket.retune(0, burst=0.5)
    assert (bucket.rate, bucket.burst) == (2.0, 6.0)


@pytest.mark.parametrize("rate", [0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_check_rate_refuses_and_names_the_value(rate: float) -> None:
    with pytest.raises(ValueError, match="rate") as info:
        check_rate(rate)
    assert repr(rate) in str(info.value)


@pytest.mark.parametrize("burst", [0, 0.5, -1, math.nan, math.inf])
def test_check_burst_refuses_and_names_the_value(burst: float) -> None:
    with pytest.raises(ValueError, match="burst") as info:
        check_burst(burst)
    assert repr(burst) in str(info.value)


@pytest.mark.parametrize("value", [True, "1", None])
def test_checks_refuse_non_numbers(value: object) -> None:
    with pytest.raises(TypeError):
        check_rate(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_burst(value)  # type: ignore[arg-type]


def test_checks_name_the_field_and_return_floats() -> None:
    with pytest.raises(ValueError, match=r"classes\['x'\]\.rate"):
        check_rate(0, field="classes['x'].rate")
    assert check_rate(3) == 3.0
    assert isinstance(check_rate(3), float)
    assert check_burst(1) == 1.0


def test_repr_shows_the_limits() -> None:
    assert repr(TokenBucket(2, 6, now=0)) == "TokenBucket(rate=2.0, burst=6.0, tokens=6.000)"


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.1, 50),
    burst=st.floats(1, 20),
    steps=st.lists(
        st.tuples(st.floats(0, 3), st.floats(0.01, 1)),
        min_size=1,
        max_size=60,
    ),
)
def test_greedy_takes_conform_over_every_window(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    """Take whenever ``has`` says so: any window admits at most burst + rate * T."""
    bucket = TokenBucket(rate, burst, now=0)
    now = 0.0
    taken: list[tuple[float, float]] = []
    for dt, fraction in steps:
        now += dt
        cost = max(1e-3, fraction * burst)
        if bucket.has(cost, now):
            bucket.take(cost)
            taken.append((now, cost))
        assert -TOLERANCE * burst <= bucket.tokens <= burst
    for i, (start, _) in enumerate(taken):
        total = 0.0
        for at, cost in taken[i:]:
            total += cost
            assert total <= burst + rate * (at - start) + 1e-6
