"""The pool watch's decision, with a fake clock: scenarios for every branch, the stored record, and simulated
properties.

The simulation drives a fake pool through decide() scan after scan, with Batch outcomes drawn by hypothesis, and checks
the invariants the watch promises: no resize unless steady and not backing off, never more than the attempt bound, a
give-up within the episode's time bound, and at most one alert of each type per episode.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from shared.core import pool_metadata as md
from shared.core.clock import iso
from shared.watch.backoff import BackoffState, ExponentialBackoff
from shared.watch.episodes import MAX_NEXT_TICK_RETRIES, Action, Decision, Episode, decide, note_stop_resize
from shared.watch.pool_policy import DesiredTarget, PoolView, WatchPolicy
from shared.watch.resize_errors import GENERIC_RESIZE_MESSAGE, AlertType, Cause, parse_errors

ACCOUNT = "/subscriptions/s/resourceGroups/batch-rg/providers/Microsoft.Batch/batchAccounts/acct"
IMAGE = "/subscriptions/s/resourceGroups/img-rg/providers/Microsoft.Compute/galleries/g/images/def/versions/1.0.0"
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
POLICY = WatchPolicy()
D800 = DesiredTarget(800, 0)

SHORT = "Desired number of dedicated nodes could not be allocated"
TIMEOUT = {"code": "AllocationTimedout", "message": SHORT + " as the resize timeout was reached"}
CAPACITY = {"code": "AllocationFailed", "message": SHORT, "values": [
    {"name": "Reason",
     "value": "Deployment allocation failed due to insufficient capacity for the requested VM size in the region."}]}
INTERNAL = {"code": "AllocationFailed", "message": SHORT,
            "values": [{"name": "Reason", "value": "The server encountered an internal error."}]}
SUBNET = {"code": "AllocationFailed", "message": SHORT,
          "values": [{"name": "Reason", "value": "Allocation failed as subnet has delegation to external resources."}]}
GEN2 = {"code": "AllocationFailed", "message": SHORT, "values": [
    {"name": "Provider Error Json",
     "value": '{"error":{"code":"BadRequest","message":"The selected VM size \'STANDARD_A1_V2\' cannot boot Hypervisor '
              'Generation \'2\'."}}'},
    {"name": "Provider Error Json Truncated", "value": "False"}]}
QUOTA = {"code": "AccountCoreQuotaReached", "message": "The specified account has reached VM core quota"}
SPOT_QUOTA = {"code": "AccountSpotCoreQuotaReached", "message": "The specified account has reached Spot core quota"}
GENERIC = {"code": "AllocationFailed", "message": GENERIC_RESIZE_MESSAGE}
STOPPED = {"code": "ResizeStopped", "message": SHORT + " as the resize was stopped"}


def pool(**kw: object) -> PoolView:
    base = PoolView(account_id=ACCOUNT, pool_id="render", allocation_state="steady",
                    allocation_state_transition_time=T0 - HOUR,
                    metadata={md.MANAGED: "true"}, image_id=IMAGE)
    if "resize_errors" in kw:
        kw["resize_errors"] = parse_errors(kw["resize_errors"])  # type: ignore[arg-type]
    return replace(base, **kw)  # type: ignore[arg-type]


def types(decision: Decision) -> list[AlertType]:
    return [a.type for a in decision.alerts]


class FakeBatch:
    """Just enough of a Batch pool: a resize goes to resizing, then to steady with an outcome at a given time."""

    def __init__(self, p: PoolView) -> None:
        self.pool = p

    def resize(self, decision: Decision, now: datetime) -> None:
        assert decision.action is Action.RESIZE and decision.step is not None
        self.pool = replace(self.pool, allocation_state="resizing", allocation_state_transition_time=now,
                            target_dedicated=decision.step.target_dedicated, target_spot=decision.step.target_spot,
                            resize_errors=())

    def finish(self, at: datetime, *, dedicated: int | None = None, spot: int | None = None,
               errors: tuple = ()) -> None:
        self.pool = replace(self.pool, allocation_state="steady", allocation_state_transition_time=at,
                            current_dedicated=self.pool.target_dedicated if dedicated is None else dedicated,
                            current_spot=self.pool.target_spot if spot is None else spot,
                            resize_errors=parse_errors(errors))


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


def test_unmanaged_and_autoscale_pools_are_never_resized() -> None:
    d = decide(pool(), None, None, T0)
    assert (d.action, d.episode) == (Action.NOTHING, None)
    d = decide(pool(enable_auto_scale=True, resize_errors=[CAPACITY]), D800, None, T0)
    assert d.action is Action.REPORT_AUTOSCALE and d.step is None and "autoscale" in d.reason


def test_staged_growth_to_target_without_failures_raises_no_alert() -> None:
    batch, ep, now = FakeBatch(pool()), None, T0
    targets = []
    for _ in range(10):
        d = decide(batch.pool, D800, ep, now)
        if d.action is Action.NOTHING:
            break
        assert d.action is Action.RESIZE and not d.alerts
        targets.append(d.step.target_dedicated)  # type: ignore[union-attr]
        batch.resize(d, now)
        ep = d.episode
        assert ep is not None and ep.awaiting_outcome and ep.last_request_time == now
        # While Batch resizes, the watch waits and keeps the record.
        assert decide(batch.pool, D800, ep, now + 5 * MIN) == Decision(Action.NOTHING, d2_reason(batch.pool), ep)
        batch.finish(now + 15 * MIN)
        now += 20 * MIN
    assert targets == [300, 600, 800]
    assert d.action is Action.NOTHING and d.episode is None and not d.alerts


def d2_reason(p: PoolView) -> str:
    return f"the pool is {p.allocation_state}; Batch accepts a resize only when steady"


def test_stale_steady_waits_for_batch_then_counts_a_lost_request() -> None:
    d = decide(pool(), D800, None, T0)
    ep = d.episode
    # Batch has not moved yet: the pool still shows the steady state from before the request.
    waiting = decide(pool(), D800, ep, T0 + 5 * MIN)
    assert waiting.action is Action.NOTHING and "waiting for Batch" in waiting.reason and waiting.episode == ep
    lost = decide(pool(), D800, ep, T0 + 10 * MIN)
    assert lost.action is Action.WAIT
    assert lost.diagnosis is not None and lost.diagnosis.cause is Cause.NOT_APPLIED
    assert lost.episode is not None and lost.episode.attempts == 1 and not lost.episode.awaiting_outcome


def test_retryable_failure_backs_off_alerts_once_then_recovers() -> None:
    batch = FakeBatch(pool(current_dedicated=120, target_dedicated=300, resize_errors=[CAPACITY]))
    d = decide(batch.pool, D800, None, T0)
    assert d.action is Action.WAIT and d.retry_at == T0 + 5 * MIN
    [alert] = d.alerts
    assert (alert.type, alert.details["attempt"], alert.details["maxAttempts"], alert.details["nextTryTime"],
            alert.details["reason"]) == (
        AlertType.ALLOCATION_FAILED, 1, 12, iso(T0 + 5 * MIN), "capacity")
    assert "render" in alert.title and "insufficient capacity" in alert.diagnosis and alert.fix
    ep = d.episode
    assert ep is not None and ep.failing_since == T0

    # Same failure, seen again while backing off: no second count, no second alert.
    again = decide(batch.pool, D800, ep, T0 + 3 * MIN)
    assert again.action is Action.WAIT and not again.alerts and again.episode.attempts == 1  # type: ignore[union-attr]

    retry = decide(batch.pool, D800, again.episode, T0 + 5 * MIN)
    assert retry.action is Action.RESIZE and retry.step.target_dedicated == 420  # type: ignore[union-attr]
    batch.resize(retry, T0 + 5 * MIN)
    batch.finish(T0 + 25 * MIN, dedicated=200, errors=(TIMEOUT,))
    second = decide(batch.pool, D800, retry.episode, T0 + 30 * MIN)
    assert second.action is Action.WAIT and second.retry_at == T0 + 40 * MIN and not second.alerts
    assert second.episode.attempts == 2 and second.episode.last_error_code == "AllocationTimedout"  # type: ignore[union-attr]

    ep = second.episode
    now = T0 + 40 * MIN
    for _ in range(5):
        d = decide(batch.pool, D800, ep, now)
        if d.action is not Action.RESIZE:
            break
        batch.resize(d, now)
        batch.finish(now + 15 * MIN)
        ep, now = d.episode, now + 20 * MIN
    assert d.action is Action.NOTHING
    [recovered] = d.alerts
    assert recovered.type is AlertType.POOL_RECOVERED and "800 dedicated" in recovered.title
    closed = d.episode
    assert closed is not None and closed.is_closed  # kept for the cooldown
    assert decide(batch.pool, D800, closed, now + 2 * HOUR).episode == closed  # backoff not yet forgotten
    assert decide(batch.pool, D800, closed, now + 4 * HOUR).episode is None


def test_internal_errors_are_re_issued_at_once_a_bounded_number_of_times_then_back_off() -> None:
    batch = FakeBatch(pool(current_dedicated=120, target_dedicated=300, resize_errors=[INTERNAL]))
    ep, now = None, T0
    for n in range(1, MAX_NEXT_TICK_RETRIES + 1):
        d = decide(batch.pool, D800, ep, now)
        assert d.action is Action.RESIZE and not d.alerts  # re-issued in the look that sees it: no backoff, no alert
        assert d.episode is not None and d.episode.attempts == n and d.episode.next_tick_retries == n
        assert d.episode.backoff.backoff_until is None  # the backoff's failure count is left to capacity and timeouts
        assert d.diagnosis is not None and d.diagnosis.cause is Cause.INTERNAL_ERROR and "re-issued at once" in d.reason
        # the stall handler, deciding again from the stored record, agrees
        assert decide(batch.pool, D800, ep, now) == d
        batch.resize(d, now)
        batch.finish(now + MIN, dedicated=120, errors=(INTERNAL,))
        ep, now = d.episode, now + MIN
    # One more in a row: the cap is reached, so it backs off (5 minutes) and a person hears of it.
    d = decide(batch.pool, D800, ep, now)
    assert d.action is Action.WAIT and d.retry_at == now + 5 * MIN and types(d) == [AlertType.ALLOCATION_FAILED]
    assert (d.episode is not None and d.episode.next_tick_retries == 0
            and d.episode.attempts == MAX_NEXT_TICK_RETRIES + 1)
    # A capacity failure always backs off.
    cap = decide(pool(current_dedicated=120, target_dedicated=300, resize_errors=[CAPACITY]), D800, None, T0)
    assert cap.action is Action.WAIT and cap.retry_at == T0 + 5 * MIN and cap.episode.next_tick_retries == 0  # type: ignore[union-attr]


def test_a_capacity_failure_after_progress_is_re_issued_at_once_one_that_granted_nothing_backs_off() -> None:
    """Issue 18: a resize that was being granted nodes when capacity ran short is re-issued by the look that sees it
    (counted with the internal errors' run); a capacity failure that granted nothing waits out the backoff."""
    batch = FakeBatch(pool(current_dedicated=120, target_dedicated=120))
    d = decide(batch.pool, D800, None, T0)
    assert d.action is Action.RESIZE and d.episode is not None
    assert (d.episode.requested_from_dedicated, d.episode.requested_from_spot) == (120, 0)
    batch.resize(d, T0)
    batch.finish(T0 + 3 * MIN, dedicated=270, errors=(CAPACITY,))  # granted 150 of 300, then the region ran short
    grew = decide(batch.pool, D800, d.episode, T0 + 3 * MIN)
    assert grew.action is Action.RESIZE and not grew.alerts and "re-issued at once" in grew.reason
    assert grew.episode is not None and grew.episode.next_tick_retries == 1 and grew.episode.attempts == 1
    # the failure counts (its first delay is waived), so a shortage that lasts waits the second delay next
    assert grew.episode.backoff.failures == 1 and grew.episode.backoff.backoff_until == T0 + 3 * MIN
    assert grew.episode.requested_from_dedicated == 270
    # the next resize is granted nothing: a shortage that lasts, so the backoff (and its alert) after all
    batch.resize(grew, T0 + 3 * MIN)
    batch.finish(T0 + 4 * MIN, dedicated=270, errors=(CAPACITY,))
    nothing = decide(batch.pool, D800, grew.episode, T0 + 4 * MIN)
    assert nothing.action is Action.WAIT and nothing.retry_at == T0 + 14 * MIN  # 10 minutes: the second delay
    assert types(nothing) == [AlertType.ALLOCATION_FAILED] and nothing.episode.next_tick_retries == 0  # type: ignore[union-attr]


def test_capacity_failures_with_progress_meet_the_backoff_after_the_run_of_quick_retries() -> None:
    batch, ep, now, nodes = FakeBatch(pool(current_dedicated=0)), None, T0, 0
    for n in range(1, MAX_NEXT_TICK_RETRIES + 2):
        d = decide(batch.pool, D800, ep, now)
        if n > 1:  # the previous resize failed for capacity after progress: re-issued at once
            assert d.action is Action.RESIZE and d.episode.next_tick_retries == n - 1  # type: ignore[union-attr]
        batch.resize(d, now)
        nodes += 50  # every resize is granted some nodes, then fails for capacity
        batch.finish(now + MIN, dedicated=nodes, errors=(CAPACITY,))
        ep, now = d.episode, now + MIN
    d = decide(batch.pool, D800, ep, now)
    # a run of MAX_NEXT_TICK_RETRIES, then the backoff: its delay counts every capacity failure of the run (0, 0, 20)
    assert d.action is Action.WAIT and d.retry_at == now + POLICY.backoff.delay(MAX_NEXT_TICK_RETRIES + 1)
    assert d.retry_at == now + 20 * MIN


def test_a_record_without_the_request_baseline_claims_no_progress() -> None:
    """An episode stored before requested_from_* existed: its capacity failure backs off, as it did then."""
    p = pool(current_dedicated=270, target_dedicated=420, resize_errors=[CAPACITY], allocation_state_transition_time=T0)
    ep = Episode(ACCOUNT, "render", started=T0 - HOUR, requests=1, last_request_time=T0 - 5 * MIN,
                 requested_dedicated=420, requested_spot=0, awaiting_outcome=True)
    d = decide(p, D800, ep, T0 + MIN)
    assert d.action is Action.WAIT and d.retry_at == T0 + 6 * MIN


def test_quota_stops_with_one_alert_and_resumes_when_a_person_acts() -> None:
    p = pool(current_dedicated=100, target_dedicated=300, resize_errors=[QUOTA],
             allocation_state_transition_time=T0 - MIN)
    d = decide(p, D800, None, T0)
    assert d.action is Action.STOP and d.step is None
    [alert] = d.alerts
    assert alert.type is AlertType.QUOTA_REACHED and "Quotas" in alert.fix and "two business days" in alert.fix
    ep = d.episode
    assert ep is not None and ep.is_halted and ep.stopped_reason and ep.last_error_code == "AccountCoreQuotaReached"

    later = decide(p, D800, ep, T0 + 3 * HOUR)
    assert later.action is Action.NOTHING and not later.alerts and later.episode == ep and "resumes" in later.reason

    # The operator raised the quota and changed the target: go again at once.
    resumed = decide(p, DesiredTarget(700, 0), ep, T0 + 4 * HOUR)
    assert resumed.action is Action.RESIZE and resumed.episode.attempts == 0 and not resumed.episode.is_halted  # type: ignore[union-attr]

    # Or resized the pool by hand: the new outcome is judged afresh.
    by_hand = replace(p, allocation_state_transition_time=T0 + 4 * HOUR, current_dedicated=300, resize_errors=())
    assert decide(by_hand, D800, ep, T0 + 5 * HOUR).action is Action.RESIZE


def test_spot_quota_alerts_quota_reached() -> None:
    d = decide(pool(resize_errors=[SPOT_QUOTA]), DesiredTarget(0, 50), None, T0)
    assert d.action is Action.STOP and types(d) == [AlertType.QUOTA_REACHED]


@pytest.mark.parametrize(("payload", "cause", "fix_words"),
                         [(SUBNET, Cause.SUBNET_DELEGATION, "delegation"), (GEN2, Cause.HYPERV_GENERATION, "Gen2")])
def test_configuration_failures_stop(payload: dict, cause: Cause, fix_words: str) -> None:
    d = decide(pool(resize_errors=[payload]), D800, None, T0)
    assert d.action is Action.STOP and d.diagnosis is not None and d.diagnosis.cause is cause
    [alert] = d.alerts
    assert alert.type is AlertType.ALLOCATION_FAILED and fix_words in alert.fix


def test_generic_failure_verifies_the_image_first() -> None:
    p = pool(current_dedicated=10, target_dedicated=300, resize_errors=[GENERIC])
    d = decide(p, D800, None, T0)
    assert d.action is Action.VERIFY_IMAGE and d.image_id == IMAGE and not d.alerts and d.step is None

    gone = decide(p, D800, None, T0, image_exists=False)
    assert gone.action is Action.STOP
    [alert] = gone.alerts
    assert alert.type is AlertType.IMAGE_MISSING and IMAGE in alert.diagnosis and IMAGE in alert.title

    there = decide(p, D800, None, T0, image_exists=True)
    assert there.action is Action.WAIT and there.diagnosis.cause is Cause.GENERIC_RETRY  # type: ignore[union-attr]
    assert types(there) == [AlertType.ALLOCATION_FAILED]

    # A Marketplace pool has no image of ours to check: retry.
    assert decide(replace(p, image_id=None), D800, None, T0).action is Action.WAIT


DEPENDENT = {"code": "DependentResourceNotFound", "message": "The specified image reference was not found."}


def test_dependent_resource_not_found_reads_the_image_image_missing_when_gone_configuration_when_there() -> None:
    p = pool(current_dedicated=10, target_dedicated=300, resize_errors=[DEPENDENT])
    d = decide(p, D800, None, T0)
    assert d.action is Action.VERIFY_IMAGE and d.image_id == IMAGE
    gone = decide(p, D800, None, T0, image_exists=False)
    assert gone.action is Action.STOP and types(gone) == [AlertType.IMAGE_MISSING]
    there = decide(p, D800, None, T0, image_exists=True)
    assert there.action is Action.STOP and there.diagnosis.cause is Cause.DEPENDENT_RESOURCE_MISSING  # type: ignore[union-attr]
    [alert] = there.alerts
    assert ("DependentResourceNotFound" in alert.diagnosis
            and "The specified image reference was not found." in alert.diagnosis)


@pytest.mark.parametrize("code", ["IncompatibleVMSize", "DiskEncryptionFailure", "FailedIdentityOperation",
                                  "CommunicationEnabledPoolReachedMaxVMCount"])
def test_configuration_codes_stop_at_once_quoting_batch(code: str) -> None:
    d = decide(pool(resize_errors=[{"code": code, "message": f"Batch's words about {code}"}]), D800, None, T0)
    assert d.action is Action.STOP
    [alert] = d.alerts
    assert (alert.type is AlertType.ALLOCATION_FAILED and code in alert.diagnosis
            and f"Batch's words about {code}" in alert.diagnosis)
    assert alert.details["codes"] == [code]


def test_an_unknown_code_is_retried_at_most_twice_then_a_person_hears_of_it() -> None:
    unknown = {"code": "SomethingBatchAddsNext", "message": "a new kind of failure"}
    batch = FakeBatch(pool(current_dedicated=0, target_dedicated=300, resize_errors=[unknown]))
    ep, now, actions = None, T0, []
    for _ in range(6):
        d = decide(batch.pool, D800, ep, now)
        actions.append(d.action)
        ep = d.episode
        if d.action is Action.STOP:
            break
        assert not d.alerts  # silent while retrying
        if d.action is Action.WAIT:
            now = d.retry_at  # type: ignore[assignment]
            continue
        batch.resize(d, now)
        batch.finish(now + 2 * MIN, dedicated=0, errors=(unknown,))
        now += 3 * MIN
    assert actions.count(Action.RESIZE) == 2 and actions[-1] is Action.STOP
    [alert] = d.alerts
    assert (alert.type is AlertType.ALLOCATION_FAILED and "SomethingBatchAddsNext" in alert.diagnosis
            and "a new kind of failure" in alert.diagnosis)
    assert not any(a.type is AlertType.RESIZE_GAVE_UP for a in d.alerts)


def test_a_new_image_resumes_an_image_missing_stop() -> None:
    p = pool(resize_errors=[GENERIC])
    stopped = decide(p, D800, None, T0, image_exists=False).episode
    fixed = replace(p, image_id=IMAGE.replace("1.0.0", "1.0.1"))
    assert decide(fixed, D800, stopped, T0 + HOUR).action is Action.RESIZE


def test_resize_stopped_by_someone_else_is_left_alone() -> None:
    d = decide(pool(current_dedicated=50, target_dedicated=300, resize_errors=[STOPPED]), D800, None, T0)
    assert d.action is Action.STOP and not d.alerts and "someone else" in d.reason


def test_resize_stopped_by_us_is_not_a_failure() -> None:
    p = pool(current_dedicated=50, target_dedicated=300, allocation_state="resizing")
    ep = note_stop_resize(None, p, T0)
    stopped = replace(p, allocation_state="steady", allocation_state_transition_time=T0 + MIN,
                      resize_errors=parse_errors([STOPPED]))
    d = decide(stopped, D800, ep, T0 + 5 * MIN)
    assert d.action is Action.RESIZE and not d.alerts and d.episode.attempts == 0  # type: ignore[union-attr]


def test_gives_up_after_the_attempt_bound() -> None:
    policy = WatchPolicy(max_resize_attempts=3)
    batch, ep, now = FakeBatch(pool(resize_errors=[CAPACITY])), None, T0
    actions = []
    for _ in range(20):
        d = decide(batch.pool, D800, ep, now, policy)
        actions.append(d.action)
        if d.action is Action.RESIZE:
            batch.resize(d, now)
            batch.finish(now + 20 * MIN, dedicated=0, errors=(CAPACITY,))
        ep, now = d.episode, now + 30 * MIN
    assert actions.count(Action.RESIZE) == 2  # attempts 1 and 2 failed and were re-issued; the 3rd failure ends it
    assert Action.GIVE_UP in actions and actions[-1] is Action.NOTHING
    gave_up = decide(batch.pool, D800, ep, now, policy)
    assert gave_up.episode.gave_up and gave_up.episode.attempts == 3  # type: ignore[union-attr]


def test_give_up_alert_says_why_and_how_to_resume() -> None:
    policy = WatchPolicy(max_resize_attempts=1)
    d = decide(pool(resize_errors=[INTERNAL]), D800, None, T0, policy)
    assert d.action is Action.GIVE_UP
    [alert] = d.alerts
    assert (alert.type is AlertType.RESIZE_GAVE_UP and "1 failed attempts" in alert.title
            and "internal error" in alert.diagnosis)
    assert "resumes" in alert.fix


def test_gives_up_after_the_episode_time_bound() -> None:
    ep = Episode(ACCOUNT, "render", started=T0 - 30 * HOUR, attempts=2, failing_since=T0 - 24 * HOUR,
                 desired_dedicated=800, desired_spot=0,
                 image_id=IMAGE, last_seen_transition=T0 - HOUR)
    d = decide(pool(), D800, ep, T0)
    assert d.action is Action.GIVE_UP and types(d) == [AlertType.RESIZE_GAVE_UP] and "24 h" in d.reason


def test_scheduled_shrink_goes_out_at_once_even_while_backing_off() -> None:
    p = pool(current_dedicated=300, target_dedicated=600, resize_errors=[CAPACITY])
    waiting = decide(p, D800, None, T0)
    assert waiting.action is Action.WAIT
    evening = DesiredTarget(50, 0, "schedule", T0 + MIN)
    d = decide(p, evening, waiting.episode, T0 + 2 * MIN)
    assert d.action is Action.RESIZE and d.step is not None
    assert (d.step.target_dedicated, d.step.node_deallocation_option) == (50, "taskcompletion")


def test_alert_cooldown_spans_episodes() -> None:
    policy = WatchPolicy(alert_cooldown=HOUR)
    first = decide(pool(resize_errors=[CAPACITY], allocation_state_transition_time=T0 - MIN), D800, None, T0, policy)
    assert types(first) == [AlertType.ALLOCATION_FAILED]
    recovered = decide(pool(current_dedicated=800), D800, first.episode, T0 + 10 * MIN, policy)
    assert types(recovered) == [AlertType.POOL_RECOVERED] and recovered.episode is not None
    # It fails again 20 minutes later: inside the cooldown, no second page...
    flap = decide(pool(resize_errors=[CAPACITY], allocation_state_transition_time=T0 + 25 * MIN), D800,
                  recovered.episode, T0 + 30 * MIN, policy)
    assert flap.action is Action.WAIT and not flap.alerts
    # ... and since nobody was told it failed, nobody is told it recovered.
    assert not decide(pool(current_dedicated=800), D800, flap.episode, T0 + 40 * MIN, policy).alerts
    # Past the cooldown a new episode alerts again.
    late = decide(pool(resize_errors=[CAPACITY], allocation_state_transition_time=T0 + 2 * HOUR), D800,
                  recovered.episode, T0 + 2 * HOUR, policy)
    assert types(late) == [AlertType.ALLOCATION_FAILED]


def test_old_errors_are_not_counted_twice_across_episodes() -> None:
    p = pool(resize_errors=[CAPACITY], allocation_state_transition_time=T0 - MIN)
    first = decide(p, D800, None, T0)
    closed = decide(pool(current_dedicated=800, allocation_state_transition_time=T0 - MIN), D800, first.episode,
                    T0 + MIN).episode
    assert closed is not None and closed.is_closed
    # The schedule now asks for more; the pool still carries the errors already handled: resize, do not count them
    # again.
    d = decide(replace(p, current_dedicated=800, target_dedicated=800), DesiredTarget(900, 0), closed, T0 + 2 * MIN)
    assert d.action is Action.RESIZE and d.episode.attempts == 0  # type: ignore[union-attr]


def test_not_steady_keeps_the_record_as_it_is() -> None:
    ep = decide(pool(resize_errors=[CAPACITY]), D800, None, T0).episode
    assert decide(pool(allocation_state="Resizing"), D800, ep, T0 + MIN).episode is ep
    assert decide(pool(allocation_state="stopping"), D800, None, T0).episode is None


# --------------------------------------------------------------------------------------------
# The stored record
# --------------------------------------------------------------------------------------------


def test_record_round_trip_and_flat_types() -> None:
    d = decide(pool(resize_errors=[QUOTA]), D800, None, T0)
    ep = d.episode
    assert ep is not None
    flat = ep.to_dict()
    assert all(isinstance(v, str | int | float | bool) for v in flat.values())
    assert flat["started"] == "2026-11-02T06:00:00Z" and flat["alerted"] == "QuotaReached"
    assert flat["last_alert_type"] == "QuotaReached" and flat["alert_time_QuotaReached"] == flat["last_alert_time"]
    assert Episode.from_dict(flat) == ep
    # Table storage hands datetimes back as datetime objects and adds its own keys.
    table = {**flat, "PartitionKey": "acct", "RowKey": "render", "Timestamp": T0, "started": T0, "gave_up": "false"}
    assert Episode.from_dict(table) == ep


def test_record_errors_are_actionable() -> None:
    with pytest.raises(ValueError, match="newer than this app"):
        Episode.from_dict({"schema": 99, "started": T0.isoformat()})
    with pytest.raises(ValueError, match="delete the record"):
        Episode.from_dict({"pool_id": "render"})


aware = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC))
maybe_time = st.none() | aware
records = st.builds(
    Episode,
    account_id=st.just(ACCOUNT), pool_id=st.text("abc-_1", min_size=1, max_size=10), started=aware,
    attempts=st.integers(0, 20), requests=st.integers(0, 50), failing_since=maybe_time,
    backoff=st.builds(BackoffState, failures=st.integers(0, 30), last_failure=maybe_time, backoff_until=maybe_time),
    last_request_time=maybe_time, requested_dedicated=st.none() | st.integers(0, 3000),
    requested_spot=st.none() | st.integers(0, 1000),
    awaiting_outcome=st.booleans(), last_seen_transition=maybe_time, desired_dedicated=st.none() | st.integers(0, 3000),
    desired_spot=st.none() | st.integers(0, 1000), image_id=st.none() | st.just(IMAGE),
    last_error_code=st.none() | st.sampled_from(["AllocationFailed", "AccountCoreQuotaReached"]),
    last_error_cause=st.none() | st.sampled_from(list(Cause)),
    last_diagnosis=st.none() | st.text(min_size=1, max_size=40), last_fix=st.none() | st.text(min_size=1, max_size=40),
    alerted=st.frozensets(st.sampled_from(list(AlertType))),
    alert_times=st.dictionaries(st.sampled_from(list(AlertType)), aware),
    gave_up=st.booleans(), stopped_reason=st.none() | st.text(min_size=1, max_size=20), stopped_at=maybe_time,
    recovered_at=maybe_time, stop_resize_time=maybe_time, next_tick_retries=st.integers(0, 3),
)


@settings(max_examples=150, deadline=None)
@given(records)
def test_any_record_round_trips(ep: Episode) -> None:
    assert Episode.from_dict(ep.to_dict()) == ep


# --------------------------------------------------------------------------------------------
# Properties of decide over arbitrary inputs
# --------------------------------------------------------------------------------------------

ERRORS = [TIMEOUT, CAPACITY, INTERNAL, SUBNET, GEN2, QUOTA, SPOT_QUOTA, GENERIC, STOPPED,
          {"code": "RemoveNodesFailed", "message": "m"}]
views = st.builds(
    lambda state, transition_min, cd, cs, td, ts, errs, auto, image: pool(
        allocation_state=state, allocation_state_transition_time=T0 + transition_min * MIN, current_dedicated=cd,
        current_spot=cs,
        target_dedicated=td, target_spot=ts, resize_errors=errs, enable_auto_scale=auto, image_id=image),
    st.sampled_from(["steady", "Steady", "resizing", "stopping"]), st.integers(-3000, 100), st.integers(0, 1000),
    st.integers(0, 200),
    st.integers(0, 1000), st.integers(0, 200), st.lists(st.sampled_from(ERRORS), max_size=2), st.booleans(),
    st.sampled_from([IMAGE, None]),
)
targets = st.none() | st.builds(DesiredTarget, st.integers(0, 1000), st.integers(0, 200))
policies = st.builds(
    lambda attempts, hours, step, cooldown: WatchPolicy(max_resize_attempts=attempts, max_episode=hours * HOUR,
                                                        growth_step_nodes=step,
                                                        alert_cooldown=cooldown * MIN),
    st.integers(1, 12), st.integers(1, 48), st.integers(10, 500), st.integers(0, 120),
)


def matching(ep: Episode, desired: DesiredTarget, p: PoolView) -> Episode:
    """The record as it would be for this pool and target (so that no 'something changed' resume applies)."""
    return replace(ep, desired_dedicated=desired.dedicated, desired_spot=desired.spot, image_id=p.image_id,
                   recovered_at=None)


@settings(max_examples=400, deadline=None)
@given(views, targets, st.none() | records, policies, st.sampled_from([None, True, False]))
def test_decide_never_resizes_a_pool_that_is_not_steady_or_autoscaled(p: PoolView, desired: DesiredTarget | None,
                                                                      ep: Episode | None,
                                                                      policy: WatchPolicy,
                                                                      image_exists: bool | None) -> None:
    d = decide(p, desired, ep, T0, policy, image_exists)
    if d.action is Action.RESIZE:
        assert p.is_steady and not p.enable_auto_scale and desired is not None and d.step is not None
    else:
        assert d.step is None
    if d.episode is not None:
        assert Episode.from_dict(d.episode.to_dict()) == d.episode


@settings(max_examples=400, deadline=None)
@given(views, st.builds(DesiredTarget, st.integers(0, 1000), st.integers(0, 200)), policies,
       st.sampled_from([None, True, False]))
def test_a_pool_with_no_record_that_is_resizing_or_at_target_needs_nothing(p: PoolView, desired: DesiredTarget,
                                                                          policy: WatchPolicy,
                                                                          image_exists: bool | None) -> None:
    """What the tick's fast path (shared/watch/tick.py, _Scan.consider) skips decide() for: no episode record, no
    autoscale, and the pool not steady or at its target. decide() must say nothing, store nothing and alert nobody."""
    p = replace(p, enable_auto_scale=False)
    if p.is_steady:
        p = replace(p, current_dedicated=desired.dedicated, current_spot=desired.spot)
    d = decide(p, desired, None, T0, policy, image_exists)
    assert (d.action, d.episode, d.alerts, d.step) == (Action.NOTHING, None, (), None)


@settings(max_examples=400, deadline=None)
@given(views, st.builds(DesiredTarget, st.integers(0, 1000), st.integers(0, 200)), records, policies,
       st.sampled_from([None, True, False]))
def test_decide_respects_backoff_attempts_time_bound_and_alert_rules(p: PoolView, desired: DesiredTarget, ep: Episode,
                                                                     policy: WatchPolicy,
                                                                     image_exists: bool | None) -> None:
    ep = matching(ep, desired, p)
    d = decide(p, desired, ep, T0, policy, image_exists)
    t = p.allocation_state_transition_time
    # A halted episode resumes (afresh) only when the pool went through a resize since it stopped: a person acted.
    resumed = ep.is_halted and ep.last_seen_transition is not None and t is not None and t > ep.last_seen_transition
    if d.action is Action.RESIZE and not resumed:
        assert not ep.is_halted
        assert not policy.backoff.is_backing_off(ep.backoff, T0)  # never while backing off
        assert ep.attempts < policy.max_resize_attempts  # never past the attempt bound
    steady_below = (p.is_steady and not p.enable_auto_scale
                    and (p.current_dedicated, p.current_spot) != (desired.dedicated, desired.spot))
    if (steady_below and not ep.is_halted and ep.failing_since is not None
        and T0 - ep.failing_since >= policy.max_episode):
        assert d.action is Action.GIVE_UP  # always gives up once the time bound is spent
    for alert in d.alerts:
        if alert.type is AlertType.POOL_RECOVERED:
            assert ep.alerted - {AlertType.POOL_RECOVERED}  # only after a failure alert in this episode
            continue
        # once per type per episode (a resumed episode keeps what it already raised)
        assert alert.type not in ep.alerted
        last = ep.alert_times.get(alert.type)
        assert last is None or T0 - last >= policy.alert_cooldown  # never within the cooldown
        assert d.episode is not None and d.episode.alert_times[alert.type] == T0


# --------------------------------------------------------------------------------------------
# Simulation: the watch loop against a fake pool with random Batch outcomes
# --------------------------------------------------------------------------------------------

OUTCOMES = ["ok", "ok", "partial_timeout", "capacity", "internal", "silent"]


@settings(max_examples=250, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=30),
    durations=st.lists(st.integers(2, 40), min_size=1, max_size=10),
    scan_minutes=st.integers(3, 15),
    desired=st.builds(DesiredTarget, st.integers(1, 2500), st.integers(0, 300)),
    policy=st.builds(
        lambda attempts, hours, step, cooldown, initial: WatchPolicy(
            backoff=ExponentialBackoff(initial=initial * MIN, maximum=max(initial, 30) * MIN),
            max_resize_attempts=attempts,
            max_episode=hours * HOUR, growth_step_nodes=step, alert_cooldown=cooldown * MIN),
        st.integers(1, 12), st.integers(1, 24), st.integers(100, 500), st.integers(0, 120), st.integers(1, 10)),
)
def test_simulated_watch_loop_keeps_its_promises(outcomes: list[str], durations: list[int], scan_minutes: int,
                                                 desired: DesiredTarget,
                                                 policy: WatchPolicy) -> None:
    batch = FakeBatch(pool())
    ep: Episode | None = None
    now, done_at, requests = T0, None, 0
    alerts: dict[AlertType, int] = {}
    gave_up_at = None
    first_failure = None
    horizon = T0 + policy.max_episode + 3 * 24 * HOUR
    scans_after_give_up = 0
    reached = False
    while now < horizon and scans_after_give_up < 10:
        if batch.pool.allocation_state == "resizing" and done_at is not None and now >= done_at:
            outcome = outcomes[requests % len(outcomes)]
            p = batch.pool
            if outcome == "ok":
                batch.finish(done_at)
            elif outcome == "partial_timeout":
                batch.finish(done_at, dedicated=p.current_dedicated + (p.target_dedicated - p.current_dedicated) // 2,
                             spot=p.current_spot,
                             errors=(TIMEOUT,))
            elif outcome == "silent":
                batch.finish(done_at, dedicated=min(p.current_dedicated, p.target_dedicated),
                             spot=min(p.current_spot, p.target_spot))
            else:
                batch.finish(done_at, dedicated=min(p.current_dedicated, p.target_dedicated),
                             spot=min(p.current_spot, p.target_spot),
                             errors=(CAPACITY if outcome == "capacity" else INTERNAL,))
        before = ep
        d = decide(batch.pool, desired, ep, now, policy)
        if d.action is Action.RESIZE:
            assert batch.pool.is_steady and d.step is not None
            if before is not None:
                assert not policy.backoff.is_backing_off(before.backoff, now)
            added = (max(0, d.step.target_dedicated - batch.pool.current_dedicated)
                     + max(0, d.step.target_spot - batch.pool.current_spot))
            assert added <= policy.growth_step_nodes
            assert gave_up_at is None  # nothing after giving up, while nothing changes
            batch.resize(d, now)
            done_at = now + durations[requests % len(durations)] * MIN
            requests += 1
        for alert in d.alerts:
            alerts[alert.type] = alerts.get(alert.type, 0) + 1
            assert alerts[alert.type] == 1  # one alert per type per episode (the target never changes here)
        ep = d.episode
        if ep is not None and not ep.is_closed:
            assert ep.attempts <= policy.max_resize_attempts
            if ep.failing_since is not None and first_failure is None:
                first_failure = ep.failing_since
        if d.action is Action.GIVE_UP:
            assert gave_up_at is None
            gave_up_at = now
            assert first_failure is not None
            # Within the time bound (plus at most one resize in flight and one scan), and loudly.
            assert now <= first_failure + policy.max_episode + 40 * MIN + scan_minutes * MIN
            assert AlertType.RESIZE_GAVE_UP in [a.type for a in d.alerts]
        if gave_up_at is not None:
            scans_after_give_up += 1
        if d.action is Action.NOTHING and batch.pool.is_steady and \
                (batch.pool.current_dedicated, batch.pool.current_spot) == (desired.dedicated, desired.spot):
            # Reached: a recovery notice if and only if a failure alert went out.
            assert gave_up_at is None
            failure_alerts = {t for t in alerts if t is not AlertType.POOL_RECOVERED}
            assert (AlertType.POOL_RECOVERED in alerts) == bool(failure_alerts)
            reached = True
            break
        now += scan_minutes * MIN
    assert reached or gave_up_at is not None, "the watch neither reached the target nor gave up"
    event("reached the target" if reached else "gave up")
    event(f"alerts: {sorted(alerts)}")


def test_a_quota_stop_resumes_only_when_a_fresh_quota_count_allows_more_than_at_the_stop() -> None:
    from shared.watch import pool_limits

    def quota(dedicated: int, *, fresh: bool = True) -> tuple[pool_limits.Ceiling, ...]:
        return (pool_limits.Ceiling(pool_limits.QUOTA, dedicated, 1000, "counted", "fix", fresh=fresh),)

    p = pool(current_dedicated=25, target_dedicated=60, resize_errors=[QUOTA],
             allocation_state_transition_time=T0 - MIN)
    stop = decide(p, DesiredTarget(60, 0), None, T0, ceilings=quota(25))
    assert stop.action is Action.STOP and "counted" in stop.alerts[0].diagnosis
    ep = stop.episode
    assert ep is not None and (ep.quota_dedicated_at_stop, ep.quota_spot_at_stop) == (25, 0)
    # nothing changed
    assert decide(p, DesiredTarget(60, 0), ep, T0 + HOUR, ceilings=quota(25)).action is Action.NOTHING
    # not re-read
    assert decide(p, DesiredTarget(60, 0), ep, T0 + HOUR, ceilings=quota(100, fresh=False)).action is Action.NOTHING
    resumed = decide(p, DesiredTarget(60, 0), ep, T0 + HOUR, ceilings=quota(100))  # the quota was raised
    assert resumed.action is Action.RESIZE and resumed.step.target_dedicated == 60  # type: ignore[union-attr]

    # Batch reports a quota the app's own count does not see: stopped once, and never looping on it.
    blind = decide(p, DesiredTarget(60, 0), None, T0, ceilings=quota(5000))
    assert blind.action is Action.STOP
    assert decide(p, DesiredTarget(60, 0), blind.episode, T0 + HOUR, ceilings=quota(5000)).action is Action.NOTHING
