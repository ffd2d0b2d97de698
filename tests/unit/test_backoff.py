"""Exponential backoff with a fake clock: the cluster-autoscaler ladder, the cap, and the quiet-period reset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config.settings import Settings
from shared.watch import backoff
from shared.watch.backoff import BackoffState, ExponentialBackoff

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_defaults_are_cluster_autoscalers() -> None:
    policy = ExponentialBackoff()
    assert (policy.initial, policy.maximum, policy.reset_after) == (5 * MIN, 30 * MIN, timedelta(hours=3))


def test_ladder_5_10_20_30_30() -> None:
    policy = ExponentialBackoff()
    state, now, delays = BackoffState(), T0, []
    for _ in range(5):
        state = policy.record_failure(state, now)
        assert state.backoff_until is not None
        delays.append(state.backoff_until - now)
        now = state.backoff_until + 20 * MIN  # the retry itself takes a resize timeout
    assert delays == [5 * MIN, 10 * MIN, 20 * MIN, 30 * MIN, 30 * MIN]
    assert state.failures == 5


def test_backing_off_until_the_deadline() -> None:
    state = backoff.record_failure(BackoffState(), T0)
    assert backoff.is_backing_off(state, T0)
    assert backoff.is_backing_off(state, T0 + 5 * MIN - timedelta(seconds=1))
    assert not backoff.is_backing_off(state, T0 + 5 * MIN)
    assert not backoff.is_backing_off(BackoffState(), T0)


def test_retry_at() -> None:
    policy = ExponentialBackoff()
    state = policy.record_failure(BackoffState(), T0)
    assert policy.retry_at(state, T0 + MIN) == T0 + 5 * MIN
    assert policy.retry_at(state, T0 + 6 * MIN) == T0 + 6 * MIN


def test_failures_are_forgotten_after_the_quiet_period() -> None:
    policy = ExponentialBackoff()
    state = BackoffState()
    for i in range(4):
        state = policy.record_failure(state, T0 + i * 40 * MIN)
    assert state.failures == 4
    almost = policy.record_failure(state, state.last_failure + timedelta(hours=3) - MIN)  # type: ignore[operator]
    assert almost.failures == 5 and almost.backoff_until - almost.last_failure == 30 * MIN  # type: ignore[operator]
    quiet = policy.record_failure(state, state.last_failure + timedelta(hours=3))  # type: ignore[operator]
    assert quiet.failures == 1 and quiet.backoff_until - quiet.last_failure == 5 * MIN  # type: ignore[operator]
    assert policy.reset_if_quiet(state, state.last_failure + timedelta(hours=3)) == BackoffState()  # type: ignore[operator]
    assert policy.reset_if_quiet(state, state.last_failure + MIN) == state  # type: ignore[operator]


def test_success_removes_the_backoff_and_the_count() -> None:
    # cluster-autoscaler: RemoveBackoff after a successful scale-up (issue 14 aligned the app with it).
    policy = ExponentialBackoff()
    state = policy.record_failure(policy.record_failure(BackoffState(), T0), T0 + 10 * MIN)
    after = policy.record_success(state)
    assert after.failures == 0 and after.backoff_until is None
    assert not policy.is_backing_off(after, T0 + 11 * MIN)
    again = policy.record_failure(after, T0 + 40 * MIN)  # within the quiet period: still the first delay
    assert again.failures == 1 and again.backoff_until == T0 + 45 * MIN


def test_a_failure_during_an_active_backoff_does_not_double_the_delay() -> None:
    # cluster-autoscaler: "Multiple concurrent scale-ups failing shouldn't cause backoff duration to increase".
    policy = ExponentialBackoff()
    first = policy.record_failure(BackoffState(), T0)  # 5 min, until T0+5
    during = policy.record_failure(first, T0 + 2 * MIN)
    assert during.failures == 1 and during.backoff_until == T0 + 7 * MIN  # same length, from now
    after = policy.record_failure(during, T0 + 8 * MIN)  # the wait ran out: doubles
    assert after.failures == 2 and after.backoff_until == T0 + 18 * MIN


def test_from_settings() -> None:
    s = Settings(subscription_id="s", batch_accounts=(), backoff_initial_minutes=2, backoff_max_minutes=8,
                 backoff_reset_hours=1)
    policy = ExponentialBackoff.from_settings(s)
    assert (policy.initial, policy.maximum, policy.reset_after) == (2 * MIN, 8 * MIN, timedelta(hours=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": timedelta(0)}, "must be positive"),
        ({"initial": 10 * MIN, "maximum": 5 * MIN}, "below the initial delay"),
        ({"multiplier": 0.5}, "at least 1"),
        ({"reset_after": timedelta(0)}, "reset period"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExponentialBackoff(**kwargs)


def test_huge_failure_counts_stay_at_the_cap() -> None:
    assert ExponentialBackoff().delay(10**6) == 30 * MIN
    assert ExponentialBackoff().delay(0) == timedelta(0)


policies = st.builds(
    lambda initial, factor, reset: ExponentialBackoff(initial=initial * MIN, maximum=initial * factor * MIN,
                                                      reset_after=reset * MIN),
    st.integers(1, 30), st.integers(1, 20), st.integers(5, 600),
)


@settings(max_examples=200, deadline=None)
@given(policies, st.lists(st.integers(0, 900), min_size=1, max_size=30))
def test_delays_never_shrink_never_exceed_the_cap_and_reset_after_quiet(
        policy: ExponentialBackoff, gaps: list[int]) -> None:
    state, now = BackoffState(), T0
    previous: timedelta | None = None
    for gap in gaps:
        now += gap * MIN
        quiet = policy.is_quiet(state, now)
        waiting = policy.is_backing_off(state, now)
        state = policy.record_failure(state, now)
        delay = state.backoff_until - now  # type: ignore[operator]
        assert policy.initial <= delay <= policy.maximum
        if quiet:
            assert delay == policy.initial and state.failures == 1
        elif waiting:  # a failure during an active backoff keeps the delay (cluster-autoscaler)
            assert delay == previous
        else:
            assert previous is not None and delay >= previous
            assert delay == min(previous * 2, policy.maximum)
        assert policy.is_backing_off(state, now)
        assert not policy.is_backing_off(state, now + delay)
        previous = delay
