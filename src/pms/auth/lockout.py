"""Account lockout after repeated failed sign-ins: a pure policy over (consecutive failures, locked until).

After `threshold` consecutive failures the account locks for the first cool-down; once it has been
reached, every further consecutive failure locks it again for the next, longer cool-down (1, 5, 15, 15...
minutes by default). So a guesser gets `threshold` tries, then one try per cool-down, while a person who
mistypes a few times waits a minute. A success resets the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DEFAULT_COOLDOWNS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15))


@dataclass(frozen=True, slots=True)
class LockoutState:
    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int = 5
    cooldowns: Sequence[timedelta] = field(default=DEFAULT_COOLDOWNS)

    def __post_init__(self) -> None:
        if self.threshold < 1 or not self.cooldowns:
            raise ValueError("a lockout policy needs a threshold >= 1 and at least one cool-down")

    def is_locked(self, state: LockoutState, now: datetime) -> bool:
        return state.locked_until is not None and now < state.locked_until

    def cooldown_after(self, failures: int) -> timedelta | None:
        """How long the account locks after its `failures`-th consecutive failure (None: no lock)."""
        if failures < self.threshold:
            return None
        index = min(failures - self.threshold, len(self.cooldowns) - 1)
        return self.cooldowns[index]

    def after_failure(self, state: LockoutState, now: datetime) -> LockoutState:
        failures = state.failed_logins + 1
        cooldown = self.cooldown_after(failures)
        if cooldown is None:
            return LockoutState(failures, state.locked_until)
        return LockoutState(failures, now + cooldown)

    def after_success(self) -> LockoutState:
        return LockoutState(0, None)


DEFAULT_POLICY = LockoutPolicy()
