"""Lockout after consecutive failures, with growing cool-downs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pms.auth.lockout import DEFAULT_POLICY, LockoutPolicy, LockoutState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FRESH = LockoutState(0, None)


def fail(times: int, state: LockoutState = FRESH, now: datetime = NOW) -> LockoutState:
    for _ in range(times):
        state = DEFAULT_POLICY.after_failure(state, now)
    return state


class TestLockout:
    def test_four_failures_do_not_lock(self) -> None:
        state = fail(4)
        assert state == LockoutState(4, None)
        assert not DEFAULT_POLICY.is_locked(state, NOW)

    def test_the_fifth_failure_locks_for_a_minute(self) -> None:
        state = fail(5)
        assert state.locked_until == NOW + timedelta(minutes=1)
        assert DEFAULT_POLICY.is_locked(state, NOW + timedelta(seconds=59))
        assert not DEFAULT_POLICY.is_locked(state, NOW + timedelta(minutes=1))

    def test_cooldowns_grow_with_each_further_failure_then_stay_at_the_longest(self) -> None:
        state = fail(5)
        later = NOW + timedelta(hours=1)
        lengths = []
        for _ in range(4):
            state = DEFAULT_POLICY.after_failure(state, later)
            assert state.locked_until is not None
            lengths.append(state.locked_until - later)
        assert lengths == [timedelta(minutes=m) for m in (5, 15, 15, 15)]

    def test_success_resets(self) -> None:
        assert DEFAULT_POLICY.after_success() == LockoutState(0, None)
        assert not DEFAULT_POLICY.is_locked(DEFAULT_POLICY.after_success(), NOW)

    def test_a_custom_policy(self) -> None:
        policy = LockoutPolicy(threshold=2, cooldowns=(timedelta(seconds=30),))
        assert policy.cooldown_after(1) is None
        assert policy.cooldown_after(2) == timedelta(seconds=30)
        assert policy.cooldown_after(50) == timedelta(seconds=30)

    @pytest.mark.parametrize("threshold, cooldowns", [(0, (timedelta(minutes=1),)), (3, ())])
    def test_nonsense_policies_are_refused(self, threshold: int, cooldowns: tuple[timedelta, ...]) -> None:
        with pytest.raises(ValueError):
            LockoutPolicy(threshold=threshold, cooldowns=cooldowns)
