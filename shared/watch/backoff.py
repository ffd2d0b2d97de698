"""Per-pool exponential backoff for re-issuing failed resizes, after Kubernetes cluster-autoscaler.

cluster-autoscaler backs a node group off after a failed scale-up: 5 minutes at first, doubling on
each further failure, never more than 30 minutes, and forgotten after 3 hours without a failure
(utils/backoff/exponential_backoff.go). Two rules follow it exactly: a failure seen while a backoff
is still running does not double the delay (concurrent failures of one attempt count once; the wait
restarts from now at the same length), and a success removes the backoff altogether (RemoveBackoff
after a successful scale-up), so the next failure starts again at the first delay.
Those numbers carry over well to Batch: a resize attempt itself lasts a resize timeout (15-30
minutes), capacity shortages in a region typically clear on the scale of tens of minutes, and a
pool that has been quiet for hours deserves a fresh, fast first retry.

The policy is a small frozen object with no clock of its own: every call takes ``now``. The state
is a plain frozen dataclass that the caller stores (Table storage) and hands back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from shared.config.settings import DEFAULTS

if TYPE_CHECKING:
    from shared.config.settings import Settings

# First delay after a failure: cluster-autoscaler's initialNodeGroupBackoffDuration. Only capacity
# shortages and timeouts wait it (a transient internal error is re-issued at the next tick:
# resize_errors.NEXT_TICK_CAUSES), and a capacity shortage is a state of the region that lasts
# (Karpenter on Azure keeps an out-of-capacity offering unavailable for 3 minutes: Azure/karpenter-provider-azure
# pkg/cache/cache.go UnavailableOfferingsTTL). The one capacity failure whose delay is waived is that of a resize
# that had been granted nodes (shared/watch/episodes.py, _grew): the region had capacity minutes ago.
# A 1-minute first delay for every failure was measured (issue 18): in the sustained outage of
# scenarios/capacity-crunch.json it sent 8 resizes before capacity returned where 5 minutes sent 6. So 5 minutes
# stays; AUTOPILOT_BACKOFF_INITIAL_MINUTES changes it per deployment.
DEFAULT_INITIAL = timedelta(minutes=DEFAULTS.backoff_initial_minutes)  # 5 min (the value: shared/config/settings.py)
# Ceiling of the delay: cluster-autoscaler's maxNodeGroupBackoffDuration. Matches the top of the
# 20-30 minute resizeTimeout band Batch recommends, so a stalled pool is retried about once per
# resize-timeout at worst.
DEFAULT_MAX = timedelta(minutes=DEFAULTS.backoff_max_minutes)  # 30 min
# Quiet period after which past failures are forgotten: cluster-autoscaler's
# nodeGroupBackoffResetTimeout. A pool that has not failed for 3 h starts again at the first delay.
DEFAULT_RESET = timedelta(hours=DEFAULTS.backoff_reset_hours)  # 3 h
# Each further failure after the wait ran out doubles the delay, as in cluster-autoscaler.
DEFAULT_MULTIPLIER = 2.0


@dataclass(frozen=True)
class BackoffState:
    """What the backoff remembers about one pool. All times are aware UTC datetimes."""

    failures: int = 0  # failures since the last quiet period
    last_failure: datetime | None = None
    backoff_until: datetime | None = None


@dataclass(frozen=True)
class ExponentialBackoff:
    """``initial`` × ``multiplier``^(failures-1), capped at ``maximum``, reset after ``reset_after`` quiet."""

    initial: timedelta = DEFAULT_INITIAL
    maximum: timedelta = DEFAULT_MAX
    reset_after: timedelta = DEFAULT_RESET
    multiplier: float = DEFAULT_MULTIPLIER

    def __post_init__(self) -> None:
        if self.initial <= timedelta(0):
            raise ValueError(f"backoff initial delay must be positive, got {self.initial}")
        if self.maximum < self.initial:
            raise ValueError(f"backoff maximum {self.maximum} is below the initial delay {self.initial}: the cap must "
                             "be at least the first delay")
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be at least 1, got {self.multiplier}")
        if self.reset_after <= timedelta(0):
            raise ValueError(f"backoff reset period must be positive, got {self.reset_after}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ExponentialBackoff:
        return cls(
            initial=timedelta(minutes=settings.backoff_initial_minutes),
            maximum=timedelta(minutes=settings.backoff_max_minutes),
            reset_after=timedelta(hours=settings.backoff_reset_hours),
        )

    def delay(self, failures: int) -> timedelta:
        """The wait after the ``failures``-th consecutive failure (1 → initial)."""
        if failures <= 0:
            return timedelta(0)
        seconds = self.initial.total_seconds()
        cap = self.maximum.total_seconds()
        for _ in range(failures - 1):  # stops as soon as the cap is reached, so huge counts cost nothing
            seconds *= self.multiplier
            if seconds >= cap:
                return self.maximum
        return min(timedelta(seconds=seconds), self.maximum)

    def is_quiet(self, state: BackoffState, now: datetime) -> bool:
        """True when there was no failure for ``reset_after``: earlier failures no longer count."""
        return state.last_failure is None or now - state.last_failure >= self.reset_after

    def reset_if_quiet(self, state: BackoffState, now: datetime) -> BackoffState:
        return BackoffState() if self.is_quiet(state, now) else state

    def record_failure(self, state: BackoffState, now: datetime) -> BackoffState:
        """The state after a failure observed at ``now``: backing off until now + delay.

        One more failure once the previous wait has run out (the delay doubles); a failure seen while still backing off
        keeps the count and so the delay (cluster-autoscaler: "multiple concurrent scale-ups failing shouldn't cause
        backoff duration to increase"). After a quiet period the count starts again at 1.
        """
        if self.is_quiet(state, now):
            failures = 1
        elif self.is_backing_off(state, now):
            failures = max(state.failures, 1)
        else:
            failures = state.failures + 1
        return BackoffState(failures=failures, last_failure=now, backoff_until=now + self.delay(failures))

    def record_failure_retried_at_once(self, state: BackoffState, now: datetime) -> BackoffState:
        """A failure that counts like any other, so the next one waits the delay after it, but whose own delay is
        waived: the next attempt may go out now (a capacity failure after the resize was granted nodes,
        shared/watch/episodes.py)."""
        return replace(self.record_failure(state, now), backoff_until=now)

    def record_success(self, state: BackoffState) -> BackoffState:
        """A success removes the backoff, count included (cluster-autoscaler's RemoveBackoff after a scale-up succeeds):
        the next failure waits the first delay again. When the last failure happened stays recorded, as a fact."""
        return BackoffState(failures=0, last_failure=state.last_failure, backoff_until=None)

    def is_backing_off(self, state: BackoffState, now: datetime) -> bool:
        return state.backoff_until is not None and now < state.backoff_until

    def retry_at(self, state: BackoffState, now: datetime) -> datetime:
        """When the next attempt may go out: ``now`` if not backing off."""
        return state.backoff_until if self.is_backing_off(state, now) and state.backoff_until else now


# Module-level shortcuts with the default policy, for callers that need nothing else.
DEFAULT_BACKOFF = ExponentialBackoff()


def record_failure(state: BackoffState, now: datetime, policy: ExponentialBackoff = DEFAULT_BACKOFF) -> BackoffState:
    return policy.record_failure(state, now)


def is_backing_off(state: BackoffState, now: datetime, policy: ExponentialBackoff = DEFAULT_BACKOFF) -> bool:
    return policy.is_backing_off(state, now)
